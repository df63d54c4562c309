"""The workloads as LangGraph graphs: one node per step, run with `max_concurrency`, no
checkpointer.

    python langgraph_runner.py --url URL --workload NAME --cap 16 [--no-stream]
                               [--client langchain|aiohttp]

A step of layer l has an edge from the step it follows in layer l - 1 (the gather step of the
fan-out waits for all 100 with one multi-source edge), so LangGraph's supersteps give the
same layer-by-layer order as orch and the floor. Each node is an async function that calls
the model either as LangGraph's own examples do, through LangChain's `ChatOpenAI`
(langchain-openai: `--client langchain`, the default, the runner `langgraph` of bench.py), or
with the floor's plain aiohttp call (`--client aiohttp`, the runner `langgraph-aiohttp`: the
framework's own cost without a chat-model client). Answers go into one dict channel whose reducer updates it in
place (a copying reducer would make LangGraph quadratic in the number of steps, which would
measure the reducer, not LangGraph). Prints one JSON line: calls made, completion tokens.
"""

import argparse
import asyncio
import json
from typing import Annotated, TypedDict

import aiohttp
from langgraph.graph import END, START, StateGraph

from client import chat, connector
from workloads import all_workloads, prompt


def merge(current, update):
    current.update(update)
    return current


class State(TypedDict):
    answers: Annotated[dict, merge]


def langchain_call(url, stream):
    """An async `call(prompt) -> (text, completion tokens)` through LangChain's `ChatOpenAI`,
    configured like orch's request (16 tokens, usage asked for when streaming, no retries)."""
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(
        model="fake", base_url=url, api_key="none", max_tokens=16, streaming=stream,
        stream_usage=True, max_retries=0,
    )

    async def call(text):
        msg = await llm.ainvoke(text)
        return msg.content, (msg.usage_metadata or {}).get("output_tokens", 0)

    return call


def build(workload, call, totals):
    g = StateGraph(State)

    def node(name, deps):
        async def run(state):
            text, tokens = await call(prompt(workload, name, deps, state["answers"]))
            totals["calls"] += 1
            totals["tokens"] += tokens
            return {"answers": {name: text}}

        return run

    for layer in workload.layers:
        for name, deps in layer:
            g.add_node(name, node(name, deps))
    for i, layer in enumerate(workload.layers):
        for name, deps in layer:
            if i == 0:
                g.add_edge(START, name)
            elif len(deps) == 1:
                g.add_edge(deps[0], name)
            else:
                g.add_edge(deps, name)
            if i == len(workload.layers) - 1:
                g.add_edge(name, END)
    return g.compile()


async def run(url, workload, cap, stream, client):
    totals = {"calls": 0, "tokens": 0}
    config = {"max_concurrency": cap, "recursion_limit": len(workload.layers) + 10}
    if client == "langchain":
        graph = build(workload, langchain_call(url, stream), totals)
        await graph.ainvoke({"answers": {}}, config=config)
        return totals
    async with aiohttp.ClientSession(connector=connector(aiohttp, cap)) as session:

        async def call(text):
            return await chat(session, url, text, stream)

        graph = build(workload, call, totals)
        await graph.ainvoke({"answers": {}}, config=config)
    return totals


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--workload", required=True)
    p.add_argument("--cap", type=int, default=16)
    p.add_argument("--no-stream", action="store_true")
    p.add_argument("--client", choices=("langchain", "aiohttp"), default="langchain")
    a = p.parse_args()
    totals = asyncio.run(
        run(a.url, all_workloads()[a.workload], a.cap, not a.no_stream, a.client)
    )
    print(json.dumps(totals))


if __name__ == "__main__":
    main()
