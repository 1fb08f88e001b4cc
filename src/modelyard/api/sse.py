"""Server-sent events for streamed completions, framed the way every SDK accepts.

Only `data: <json>\n\n` lines, `\n` endings, no comments and no `event:` lines (the Azure SDK
raises on anything else). A client that disconnects cancels the producer, which stops
generation. An error after the first byte is sent as one `data: {"error": ...}` event (where the
surface allows it) and then the connection is dropped without `[DONE]`, the one ending every SDK
reports as a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import orjson
from starlette.types import Receive, Scope, Send

from modelyard.api.errors import error_body
from modelyard.errors import InternalError, ModelyardError

log = logging.getLogger(__name__)

DONE = b"data: [DONE]\n\n"


def encode_event(payload: Mapping[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


class EventStreamResponse:
    def __init__(
        self,
        events: AsyncIterator[Mapping[str, Any]],
        headers: Mapping[str, str] | None = None,
        *,
        error_events: bool = True,
        on_disconnect: Callable[[], None] | None = None,
    ) -> None:
        self._events = events
        self._headers = [
            (k.encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()
        ]
        self._error_events = error_events
        self._on_disconnect = on_disconnect

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream"),
                    (b"cache-control", b"no-cache"),
                    (b"x-accel-buffering", b"no"),
                    *self._headers,
                ],
            }
        )
        pump = asyncio.create_task(self._pump(send))
        watch = asyncio.create_task(_wait_for_disconnect(receive))
        try:
            await asyncio.wait({pump, watch}, return_when=asyncio.FIRST_COMPLETED)
            if watch.done() and not pump.done() and self._on_disconnect is not None:
                # Before the producer is cancelled, so the generation is known as abandoned.
                self._on_disconnect()
        finally:
            for task in (pump, watch):
                task.cancel()
            await asyncio.gather(pump, watch, return_exceptions=True)
            await _close(self._events)
        # Returning without the final empty body (after an error) makes the server drop the
        # connection, which is how a failed stream must end.

    async def _pump(self, send: Send) -> None:
        try:
            async for payload in self._events:
                await send(
                    {"type": "http.response.body", "body": encode_event(payload), "more_body": True}
                )
        except OSError:
            return  # the client went away mid-write
        except ModelyardError as exc:
            await self._send_error(send, exc)
            return
        except Exception:
            log.exception("stream producer failed")
            await self._send_error(send, InternalError("The stream failed inside the gateway."))
            return
        await send({"type": "http.response.body", "body": DONE, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _send_error(self, send: Send, error: ModelyardError) -> None:
        if self._error_events:
            with contextlib.suppress(OSError):
                await send(
                    {
                        "type": "http.response.body",
                        "body": b"data: " + error_body(error) + b"\n\n",
                        "more_body": True,
                    }
                )


async def _wait_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _close(events: AsyncIterator[Any]) -> None:
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        await aclose()
