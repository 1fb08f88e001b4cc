"""A fake OpenAI-compatible upstream on 127.0.0.1, with scripted answers and faults.

Tests queue replies (`enqueue`) and read back what the gateway sent (`requests`). With an empty
queue it answers every chat request with a small canned completion, fast enough to stand in for
a real upstream in benchmarks. Faults it can play: any status with any headers (429 with
Retry-After, 500, 503), streams cut mid-way (connection reset, no `[DONE]`), slow or silent
streams, malformed SSE, answers without usage.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send


@dataclass(frozen=True)
class JsonReply:
    body: Any
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass(frozen=True)
class StreamReply:
    """Raw SSE lines (without the blank separators), sent one event at a time."""

    events: Sequence[bytes]
    delay_s: float = 0.0  # before each event
    # Drop the connection (no terminating chunk) after this many events.
    reset_after: int | None = None


@dataclass(frozen=True)
class RecordedRequest:
    path: str
    headers: dict[str, str]
    body: Any
    query: dict[str, str] = field(default_factory=dict)


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


class FakeUpstream:
    def __init__(self) -> None:
        self.replies: deque[JsonReply | StreamReply] = deque()
        self.requests: list[RecordedRequest] = []
        self.port = _free_port()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def root_url(self) -> str:
        """Where Azure-style paths hang (an Azure resource endpoint)."""
        return f"http://127.0.0.1:{self.port}"

    def enqueue(self, *replies: JsonReply | StreamReply) -> None:
        self.replies.extend(replies)

    @contextlib.contextmanager
    def running(self) -> Iterator[FakeUpstream]:
        # OpenAI paths, and the Azure OpenAI and Azure AI Inference ones.
        app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/v1/embeddings", self._embeddings, methods=["POST"]),
                Route("/openai/deployments/{name}/chat/completions", self._chat, methods=["POST"]),
                Route("/openai/deployments/{name}/embeddings", self._embeddings, methods=["POST"]),
                Route("/models/chat/completions", self._chat, methods=["POST"]),
                Route("/models/embeddings", self._embeddings, methods=["POST"]),
            ]
        )
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise TimeoutError("fake upstream did not start")
            time.sleep(0.01)
        try:
            yield self
        finally:
            self._server.should_exit = True
            self._thread.join(10)

    async def _record(self, request: Request) -> tuple[Any, JsonReply | StreamReply | None]:
        """Keep what the gateway sent; return its body and the next scripted reply, if any."""
        body = orjson.loads(await request.body())
        self.requests.append(
            RecordedRequest(
                request.url.path, dict(request.headers), body, dict(request.query_params)
            )
        )
        return body, self.replies.popleft() if self.replies else None

    async def _chat(self, request: Request) -> Response | _StreamResponse:
        body, reply = await self._record(request)
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
            return _StreamResponse(reply)
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        return Response(
            orjson.dumps(reply.body),
            status_code=reply.status,
            headers=dict(reply.headers),
            media_type="application/json",
        )

    async def _embeddings(self, request: Request) -> Response:
        body, reply = await self._record(request)
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
        return Response(
            orjson.dumps(reply.body),
            status_code=reply.status,
            headers=dict(reply.headers),
            media_type="application/json",
        )


class _StreamResponse:
    def __init__(self, reply: StreamReply) -> None:
        self._reply = reply

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        for count, event in enumerate(self._reply.events):
            if self._reply.reset_after is not None and count >= self._reply.reset_after:
                raise ConnectionResetError("scripted reset")  # uvicorn drops the connection
            if self._reply.delay_s:
                await asyncio.sleep(self._reply.delay_s)
            await send({"type": "http.response.body", "body": event + b"\n\n", "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
