"""The bare framework: a minimal Starlette app under uvicorn, configured as `modelyard serve`
configures it (httptools, uvloop, no access log), answering the upstream's fixed bytes.

Owns the ceiling a Python gateway on this stack could reach: it reads and parses the request
body (any gateway must) and returns the completion, or the stream one event per body message, with
no authentication, routing, limits, ledger or upstream call.

Run: `python -m bench.overhead.bare_app --port P [--chunks 100]`; serves until terminated.
"""

from __future__ import annotations

import argparse

import orjson
import uvicorn
from bench.overhead.payloads import DEFAULT_CHUNKS, completion, stream_events
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send


class EventStream:
    """An ASGI response sending each SSE event as its own body message."""

    def __init__(self, events: list[bytes]) -> None:
        self._events = events

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        for event in self._events:
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def create_app(chunks: int) -> Starlette:
    body = completion()
    events = stream_events(chunks)

    async def chat(request: Request) -> Response | EventStream:
        payload = orjson.loads(await request.body())
        if payload.get("stream"):
            return EventStream(events)
        return Response(body, media_type="application/json")

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


def main() -> None:
    parser = argparse.ArgumentParser(description="Minimal Starlette app under uvicorn.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunks", type=int, default=DEFAULT_CHUNKS)
    args = parser.parse_args()
    uvicorn.run(
        create_app(args.chunks),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        http="httptools",
        loop="uvloop",
        lifespan="off",
    )


if __name__ == "__main__":
    main()
