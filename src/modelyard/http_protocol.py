"""uvicorn's httptools protocol with the bounds an exposed server needs and uvicorn lacks.

uvicorn closes a kept-alive connection that stays idle after a response, but nothing else: a
connection that never sends a request, a request head dribbled in a byte at a time (slowloris),
a body that stops arriving, and header lines of any size stay open and buffered for ever. Here:

- the request line and headers must arrive within `head_timeout_s` of the connection (or of the
  request's first byte), else the connection is closed;
- they may take at most `max_head_bytes` (URL, names and values), else 431 and close;
- between two pieces of a body at most `body_idle_timeout_s` may pass, else the connection is
  closed and the request sees the client gone.

A proxy in front should still limit connections per client and the rate of new ones.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


@dataclass(frozen=True)
class ConnectionBounds:
    max_head_bytes: int = 64 * 1024
    head_timeout_s: float = 10.0
    body_idle_timeout_s: float = 30.0


def bounded_protocol(bounds: ConnectionBounds) -> type[HttpToolsProtocol]:
    """The protocol class uvicorn instantiates per connection, with `bounds` applied."""

    class BoundedHttpToolsProtocol(HttpToolsProtocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            self._head_bytes = 0
            self._refused = False
            self._timer: asyncio.TimerHandle | None = None
            super().connection_made(transport)
            self._arm(bounds.head_timeout_s)

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if not self._refused:
                super().data_received(data)

        def on_message_begin(self) -> None:
            self._head_bytes = 0
            self._arm(bounds.head_timeout_s)
            super().on_message_begin()

        def on_url(self, url: bytes) -> None:
            self._count_head(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count_head(len(name) + len(value))
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._arm(bounds.body_idle_timeout_s)
            super().on_headers_complete()

        def on_body(self, body: bytes) -> None:
            self._arm(bounds.body_idle_timeout_s)
            super().on_body(body)

        def on_message_complete(self) -> None:
            self._disarm()
            super().on_message_complete()

        def send_400_response(self, msg: str) -> None:
            if not self._refused:  # after a 431 the parser's complaint has nobody to go to
                super().send_400_response(msg)

        def _count_head(self, size: int) -> None:
            self._head_bytes += size
            if self._head_bytes > bounds.max_head_bytes:
                self._refuse()
                # Stops the parser: uvicorn takes it for a malformed request, and says nothing.
                raise HeadTooLarge

        def _refuse(self) -> None:
            self._refused = True
            self._disarm()
            body = b"request headers too large"
            self.transport.write(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                b"content-type: text/plain; charset=utf-8\r\n"
                b"content-length: " + str(len(body)).encode() + b"\r\n"
                b"connection: close\r\n\r\n" + body
            )
            self.transport.close()

        def _arm(self, seconds: float) -> None:
            self._disarm()
            self._timer = self.loop.call_later(seconds, self._expire)

        def _disarm(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

        def _expire(self) -> None:
            self._timer = None
            if not self.transport.is_closing():
                self.transport.close()

    return BoundedHttpToolsProtocol


class HeadTooLarge(Exception):
    """Raised inside a parser callback to stop parsing a request head over the limit."""
