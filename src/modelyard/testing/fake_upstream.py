"""A fake OpenAI-compatible upstream on 127.0.0.1, with scripted answers and faults.

Tests queue replies (`enqueue`) and read back what the gateway sent (`requests`). With an empty
queue it answers every chat request with a small canned completion, fast enough to stand in for
a real upstream in benchmarks. Faults it can play: any status with any headers (429 with
Retry-After, 500, 503), streams cut mid-way (connection reset, no `[DONE]`), slow or silent
streams, malformed SSE, answers without usage.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelyard.testing.scripted_server import (
    JsonReply,
    RecordedRequest,
    ScriptedServer,
    StreamReply,
    StreamResponse,
    json_response,
)

__all__ = ["FakeUpstream", "JsonReply", "RecordedRequest", "StreamReply"]


def completion_body(
    text: str = "Hello from upstream.", model: str = "upstream-model", **extra: Any
) -> dict[str, Any]:
    return {
        "id": "chatcmpl-upstream",
        "object": "chat.completion",
        "created": 1700000000,
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16},
        **extra,
    }


def stream_events(
    pieces: Sequence[str],
    usage: Mapping[str, int] | None = None,
    finish_reason: str = "stop",
    done: bool = True,
) -> list[bytes]:
    """OpenAI-style chunks for `pieces`, a finish chunk, an optional usage chunk, and [DONE]."""

    def chunk(choices: list[Any], **extra: Any) -> bytes:
        body = {
            "id": "chatcmpl-up",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": "upstream-model",
            "choices": choices,
            **extra,
        }
        return b"data: " + orjson.dumps(body)

    events = [
        chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
    ]
    events += [
        chunk([{"index": 0, "delta": {"content": piece}, "finish_reason": None}])
        for piece in pieces
    ]
    events.append(chunk([{"index": 0, "delta": {}, "finish_reason": finish_reason}]))
    if usage is not None:
        events.append(chunk([], usage=dict(usage)))
    if done:
        events.append(b"data: [DONE]")
    return events


class FakeUpstream(ScriptedServer):
    """OpenAI's paths, and the Azure OpenAI and Azure AI Inference ones (Azure paths hang on
    `root_url`, an Azure resource endpoint)."""

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def routes(self) -> list[Route]:
        return [
            Route("/v1/chat/completions", self._chat, methods=["POST"]),
            Route("/v1/embeddings", self._embeddings, methods=["POST"]),
            Route("/openai/deployments/{name}/chat/completions", self._chat, methods=["POST"]),
            Route("/openai/deployments/{name}/embeddings", self._embeddings, methods=["POST"]),
            Route("/models/chat/completions", self._chat, methods=["POST"]),
            Route("/models/embeddings", self._embeddings, methods=["POST"]),
        ]

    async def _chat(self, request: Request) -> Response | StreamResponse:
        body, reply = await self.record(request)
        if reply is None:
            if body.get("stream"):
                reply = StreamReply(
                    stream_events(
                        ["Hello", " from", " upstream."],
                        usage={"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14},
                    )
                )
            else:
                reply = JsonReply(completion_body())
        if isinstance(reply, StreamReply):
            return StreamResponse(reply)
        return await json_response(reply)

    async def _embeddings(self, request: Request) -> Response:
        body, reply = await self.record(request)
        if reply is None:
            inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
            data = [
                {"object": "embedding", "index": i, "embedding": [float(i), 0.5, -0.25]}
                for i in range(len(inputs))
            ]
            usage = {"prompt_tokens": 2 * len(inputs), "total_tokens": 2 * len(inputs)}
            reply = JsonReply(
                {"object": "list", "data": data, "model": body["model"], "usage": usage}
            )
        assert isinstance(reply, JsonReply)
        return await json_response(reply)
