"""A small, fast fake OpenAI-compatible server for scripts/bench-peers.sh.

    python fake_server.py [--port PORT] [--delay-ms 10]

Serves, on 127.0.0.1 only:

- `POST /v1/chat/completions`: waits `--delay-ms` (a fixed delay per call, measured from the
  moment the request body has been read), then answers with a short fixed text and a `usage`
  object; with `"stream": true` the answer comes as server-sent events (a role chunk, two
  content chunks, a finish chunk, a usage chunk when `stream_options.include_usage` is set,
  then `data: [DONE]`), as the Chat Completions API does.
- `GET /v1/models`: one model, `fake`.
- `GET /stats`: JSON counters since the last reset: `requests` (completed calls), `streamed`,
  `peak_in_flight` (most calls in their delay at once), `in_flight`, `first_start` and
  `last_end` (the server's monotonic clock, seconds), so that `last_end - first_start` is the
  makespan as the server saw it, independent of each client's start-up time.
- `POST /reset`: zeroes the counters.

Nothing here is specific to one client: orch, LangGraph and the asyncio floor all call it the
same way. Prints `ready PORT` on stdout once it listens (`--port 0`, the default, takes a free port).
"""

import argparse
import asyncio
import json
import time

from aiohttp import web

ANSWER = ["Done: ", "ok."]
PROMPT_TOKENS = 12
COMPLETION_TOKENS = 3


class Stats:
    def __init__(self):
        self.reset()

    def reset(self):
        self.requests = 0
        self.streamed = 0
        self.in_flight = 0
        self.peak_in_flight = 0
        self.first_start = None
        self.last_end = None

    def as_json(self):
        return {
            "requests": self.requests,
            "streamed": self.streamed,
            "in_flight": self.in_flight,
            "peak_in_flight": self.peak_in_flight,
            "first_start": self.first_start,
            "last_end": self.last_end,
        }


def usage():
    return {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": COMPLETION_TOKENS,
        "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
    }


def chunk(cid, model, delta, finish=None):
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def make_app(delay):
    stats = Stats()
    counter = [0]

    async def completions(request):
        body = await request.json()
        now = time.monotonic()
        if stats.first_start is None:
            stats.first_start = now
        stats.in_flight += 1
        stats.peak_in_flight = max(stats.peak_in_flight, stats.in_flight)
        try:
            await asyncio.sleep(delay)
        finally:
            stats.in_flight -= 1
        counter[0] += 1
        cid = f"chatcmpl-{counter[0]}"
        model = body.get("model") or "fake"
        if body.get("stream"):
            resp = web.StreamResponse(
                headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
            )
            await resp.prepare(request)
            events = [chunk(cid, model, {"role": "assistant", "content": ""})]
            events += [chunk(cid, model, {"content": part}) for part in ANSWER]
            events.append(chunk(cid, model, {}, "stop"))
            if (body.get("stream_options") or {}).get("include_usage"):
                last = chunk(cid, model, {})
                last["choices"] = []
                last["usage"] = usage()
                events.append(last)
            data = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
            await resp.write(data.encode())
            await resp.write_eof()
            stats.streamed += 1
        else:
            resp = web.json_response(
                {
                    "id": cid,
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": "".join(ANSWER)},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": usage(),
                }
            )
        stats.requests += 1
        stats.last_end = time.monotonic()
        return resp

    async def models(_request):
        return web.json_response({"object": "list", "data": [{"id": "fake", "object": "model"}]})

    async def get_stats(_request):
        return web.json_response(stats.as_json())

    async def reset(_request):
        stats.reset()
        return web.json_response(stats.as_json())

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/chat/completions", completions)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/stats", get_stats)
    app.router.add_post("/reset", reset)
    return app


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="0: a free port, printed")
    parser.add_argument("--delay-ms", type=float, default=10.0)
    args = parser.parse_args()
    runner = web.AppRunner(make_app(args.delay_ms / 1000.0), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", args.port, backlog=1024)
    await site.start()
    port = runner.addresses[0][1]
    print(f"ready {port}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
