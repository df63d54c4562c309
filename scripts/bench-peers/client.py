"""One chat completion over aiohttp, the same for the asyncio floor and the LangGraph nodes."""

import json


async def chat(session, url, prompt, stream):
    """POST {url}/chat/completions; returns (answer text, completion tokens from `usage`)."""
    body = {
        "model": "fake",
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": 16,
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    async with session.post(url + "/chat/completions", json=body) as resp:
        resp.raise_for_status()
        if not stream:
            data = await resp.json()
            return data["choices"][0]["message"]["content"], data["usage"]["completion_tokens"]
        parts, tokens = [], 0
        async for raw in resp.content:
            line = raw.strip()
            if not line.startswith(b"data: "):
                continue
            payload = line[6:]
            if payload == b"[DONE]":
                break
            event = json.loads(payload)
            for choice in event.get("choices") or []:
                content = choice.get("delta", {}).get("content")
                if content:
                    parts.append(content)
            if event.get("usage"):
                tokens = event["usage"]["completion_tokens"]
        return "".join(parts), tokens


def connector(aiohttp, cap):
    """A connection pool of `cap` connections, kept alive between calls."""
    return aiohttp.TCPConnector(limit=cap, force_close=False)
