"""The fixed bytes every measured server exchanges: one request body, one completion, one stream.

The fake upstream and the bare app answer with exactly these bytes, so a proxy in front of the
upstream returns what the bare app returns. Invariant: the completion carries `usage` (the
ledger needs it) and a stream has `chunks` content events, each with a non-empty delta, between
a role event and a finish event, then a usage event and `[DONE]`.
"""

from __future__ import annotations

from typing import Any

import orjson

MODEL = "acme-small"
DEFAULT_CHUNKS = 100
USAGE = {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16}


def request_body(stream: bool) -> bytes:
    body: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 8,
    }
    if stream:
        body["stream"] = True
    return orjson.dumps(body)


def completion() -> bytes:
    return orjson.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 1700000000,
            "model": "upstream-model",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Hello from upstream."},
                    "finish_reason": "stop",
                }
            ],
            "usage": USAGE,
        }
    )


def stream_events(chunks: int) -> list[bytes]:
    """Complete SSE events (with their blank-line terminator), in order."""

    def event(choices: list[Any], **extra: Any) -> bytes:
        body = {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": "upstream-model",
            "choices": choices,
            **extra,
        }
        return b"data: " + orjson.dumps(body) + b"\n\n"

    events = [event([{"index": 0, "delta": {"role": "assistant", "content": ""}}])]
    events += [
        event([{"index": 0, "delta": {"content": f" tok{i}"}, "finish_reason": None}])
        for i in range(chunks)
    ]
    events.append(event([{"index": 0, "delta": {}, "finish_reason": "stop"}]))
    usage = {"prompt_tokens": 11, "completion_tokens": chunks, "total_tokens": 11 + chunks}
    events.append(event([], usage=usage))
    events.append(b"data: [DONE]\n\n")
    return events


def wants_stream(body: bytes) -> bool:
    """Whether a request body asks for a stream, without a full parse (the upstream's hot path)."""
    return b'"stream":true' in body or b'"stream": true' in body
