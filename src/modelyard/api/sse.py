"""Server-sent events for streamed answers, framed the way each surface's SDKs accept.

Chat completions: only `data: <json>\n\n` lines, `\n` endings, no comments and no `event:` lines
(the Azure SDK raises on anything else), then `data: [DONE]`. The Anthropic and Responses
surfaces name each event (`event: <type>`) and send no `[DONE]`. A client that disconnects
cancels the producer, which stops generation. An error after the first byte is sent as one
error event (where the surface allows it) and then the connection is dropped without the
stream's normal end, the one ending every SDK reports as a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.types import Receive, Scope, Send

from modelyard.api.errors import error_body
from modelyard.errors import InternalError, ModelyardError
from modelyard.streams import close_stream

log = logging.getLogger(__name__)

DONE = b"data: [DONE]\n\n"


def _openai_error_event(error: ModelyardError) -> bytes:
    return b"data: " + error_body(error) + b"\n\n"


@dataclass(frozen=True)
class Framing:
    """How one surface frames its stream."""

    # An `event: <payload type>` line before each data line (the Anthropic SDK skips events
    # without one; the Responses SDK accepts both).
    named: bool = False
    # Sent after the last event of a stream that ended well; empty for none.
    done: bytes = DONE
    # The in-band event for a failure after the first byte; None where the surface's SDK
    # raises on anything unexpected (the stream then just ends without `done`).
    error_event: Callable[[ModelyardError], bytes] | None = _openai_error_event

    def encode(self, payload: Mapping[str, Any]) -> bytes:
        if self.named:
            name = str(payload["type"]).encode()
            return b"event: " + name + b"\ndata: " + orjson.dumps(payload) + b"\n\n"
        return b"data: " + orjson.dumps(payload) + b"\n\n"


CHAT_COMPLETIONS = Framing()
# Azure AI Inference's SDK raises on any event that is not a chunk.
AZURE_INFERENCE = Framing(error_event=None)


# What a surface's producer yields: one event, or several made at once (sent in one write).
Payload = Mapping[str, Any]
Batch = Payload | Sequence[Payload]


class EventStreamResponse:
    def __init__(
        self,
        events: AsyncIterator[Batch],
        headers: Mapping[str, str] | None = None,
        *,
        framing: Framing = CHAT_COMPLETIONS,
        on_disconnect: Callable[[], None] | None = None,
    ) -> None:
        self._events = events
        self._headers = [
            (k.encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()
        ]
        self._framing = framing
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
            await close_stream(self._events)
        # Returning without the final empty body (after an error) makes the server drop the
        # connection, which is how a failed stream must end.

    async def _pump(self, send: Send) -> None:
        try:
            encode = self._framing.encode
            async for batch in self._events:
                if isinstance(batch, list):
                    if not batch:
                        continue
                    body = b"".join([encode(payload) for payload in batch])
                else:
                    body = encode(batch)  # type: ignore[arg-type]
                await send({"type": "http.response.body", "body": body, "more_body": True})
        except OSError:
            return  # the client went away mid-write
        except ModelyardError as exc:
            await self._send_error(send, exc)
            return
        except Exception:
            log.exception("stream producer failed")
            await self._send_error(send, InternalError("The stream failed inside the gateway."))
            return
        done = self._framing.done
        if done:
            await send({"type": "http.response.body", "body": done, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _send_error(self, send: Send, error: ModelyardError) -> None:
        if self._framing.error_event is not None:
            with contextlib.suppress(OSError):
                await send(
                    {
                        "type": "http.response.body",
                        "body": self._framing.error_event(error),
                        "more_body": True,
                    }
                )


async def _wait_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
