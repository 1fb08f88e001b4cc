"""The base of the shipped fake upstreams: a Starlette app on 127.0.0.1, run by uvicorn in a
thread, that answers with scripted replies (`enqueue`) and records what it was sent
(`requests`). Each fake (OpenAI-compatible, Anthropic, Cohere, Bedrock) adds its routes and the
default answers of its own wire format."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

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
    """Raw events, sent one at a time: SSE lines (without the blank separators, which
    `separator` adds) or binary frames (`separator=b""`)."""

    events: Sequence[bytes]
    delay_s: float = 0.0  # before each event
    # Drop the connection (no terminating chunk) after this many events.
    reset_after: int | None = None
    separator: bytes = b"\n\n"
    content_type: str = "text/event-stream"


@dataclass(frozen=True)
class RecordedRequest:
    path: str
    headers: dict[str, str]
    body: Any
    query: dict[str, str] = field(default_factory=dict)


class ScriptedServer:
    """Subclasses list their routes in `routes()`; handlers call `record` for the body and the
    next scripted reply, and `json_response` or `StreamResponse` to answer."""

    def __init__(self) -> None:
        self.replies: deque[JsonReply | StreamReply] = deque()
        self.requests: list[RecordedRequest] = []
        # Bound now and held until served: a port only looked up here could be taken (by any
        # outgoing connection's ephemeral port) before uvicorn binds it.
        self._socket: socket.socket | None = bound_socket(0)
        self.port: int = self._socket.getsockname()[1]
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def routes(self) -> list[Route]:
        raise NotImplementedError

    def enqueue(self, *replies: JsonReply | StreamReply) -> None:
        self.replies.extend(replies)

    def reset(self) -> None:
        """Forget scripted replies and recorded requests (a test's leftovers)."""
        self.replies.clear()
        self.requests.clear()

    @contextlib.contextmanager
    def running(self) -> Iterator[Self]:
        config = uvicorn.Config(
            Starlette(routes=self.routes()),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="off",
        )
        listening = self._socket or bound_socket(self.port)  # served before: its socket closed
        self._socket = None
        server = self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [listening]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"{type(self).__name__} failed to start on port {self.port}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{type(self).__name__} did not start")
            time.sleep(0.01)
        try:
            yield self
        finally:
            self._server.should_exit = True
            self._thread.join(10)

    async def record(self, request: Request) -> tuple[Any, JsonReply | StreamReply | None]:
        """Keep what the gateway sent; return its body and the next scripted reply, if any."""
        raw = await request.body()
        body = orjson.loads(raw) if raw else None
        self.requests.append(
            RecordedRequest(
                request.url.path, dict(request.headers), body, dict(request.query_params)
            )
        )
        return body, self.replies.popleft() if self.replies else None


async def json_response(reply: JsonReply) -> Response:
    if reply.delay_s:
        await asyncio.sleep(reply.delay_s)
    return Response(
        orjson.dumps(reply.body),
        status_code=reply.status,
        headers=dict(reply.headers),
        media_type="application/json",
    )


class StreamResponse:
    def __init__(self, reply: StreamReply) -> None:
        self._reply = reply

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", self._reply.content_type.encode())],
            }
        )
        for count, event in enumerate(self._reply.events):
            if self._reply.reset_after is not None and count >= self._reply.reset_after:
                raise ConnectionResetError("scripted reset")  # uvicorn drops the connection
            if self._reply.delay_s:
                await asyncio.sleep(self._reply.delay_s)
            body = event + self._reply.separator
            await send({"type": "http.response.body", "body": body, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def bound_socket(port: int) -> socket.socket:
    """A TCP socket bound to 127.0.0.1:`port` (0: any free port), not yet listening."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    return sock
