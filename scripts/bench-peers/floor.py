"""The floor: plain asyncio + aiohttp, a semaphore for the cap, `asyncio.gather` per layer.

    python floor.py --url URL --workload NAME --cap 16 [--no-stream]

Prints one JSON line: calls made, completion tokens counted from `usage`.
"""

import argparse
import asyncio
import json

import aiohttp

from client import chat, connector
from workloads import all_workloads, prompt


async def run(url, workload, cap, stream):
    sem = asyncio.Semaphore(cap)
    answers, totals = {}, {"calls": 0, "tokens": 0}
    async with aiohttp.ClientSession(connector=connector(aiohttp, cap)) as session:

        async def step(name, deps):
            async with sem:
                text, tokens = await chat(session, url, prompt(workload, name, deps, answers), stream)
            answers[name] = text
            totals["calls"] += 1
            totals["tokens"] += tokens

        for layer in workload.layers:
            await asyncio.gather(*(step(name, deps) for name, deps in layer))
    return totals


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--workload", required=True)
    p.add_argument("--cap", type=int, default=16)
    p.add_argument("--no-stream", action="store_true")
    a = p.parse_args()
    totals = asyncio.run(run(a.url, all_workloads()[a.workload], a.cap, not a.no_stream))
    print(json.dumps(totals))


if __name__ == "__main__":
    main()
