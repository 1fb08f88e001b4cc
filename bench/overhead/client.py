"""The lean load-generator client: one keep-alive HTTP/1.1 connection on raw asyncio streams.

Owns the wire for the load generator: it writes a prebuilt request and reads the answer's head,
then a `content-length`, chunked or read-to-close body. It checks the status and, for streams,
counts tokens with `StreamTally`; it does not follow redirects, decompress, or pipeline. A
failure raises `RequestFailed`; after any failure, or when the server said `connection: close`,
`closed` is true and the caller opens a new connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

from bench.overhead.sse import SURFACES, StreamTally


class RequestFailed(Exception):
    pass


@dataclass(frozen=True)
class Exchange:
    """What every request of a run sends: where, with which headers, which two bodies."""

    host: str
    port: int
    path: str
    headers: Mapping[str, str]
    plain_body: bytes
    stream_body: bytes
    surface: str = "chat"  # a key of `sse.SURFACES`

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{self.path}"

    def wire(self, body: bytes) -> bytes:
        """The whole HTTP/1.1 request carrying `body`."""
        lines = [
            f"POST {self.path} HTTP/1.1",
            f"host: {self.host}:{self.port}",
            "content-type: application/json",
        ]
        lines += [f"{name}: {value}" for name, value in self.headers.items()]
        lines.append(f"content-length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Head:
    __slots__ = ("chunked", "close", "length", "status")

    def __init__(self, raw: bytes) -> None:
        try:
            self.status = int(raw[9:12])
        except ValueError:
            raise RequestFailed(f"not an HTTP answer: {raw[:40]!r}") from None
        lowered = raw.lower()
        self.chunked = b"\r\ntransfer-encoding: chunked" in lowered
        self.close = b"\r\nconnection: close" in lowered
        self.length: int | None = None
        start = lowered.find(b"\r\ncontent-length:")
        if start >= 0:
            start += len(b"\r\ncontent-length:")
            stop = lowered.find(b"\r\n", start)
            self.length = int(lowered[start : stop if stop >= 0 else None].strip())


class RawConnection:
    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        wires: tuple[bytes, bytes],
        surface: str = "chat",
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._plain, self._stream = wires
        self._surface = surface
        self._answer_mark = SURFACES[surface].answer
        self.closed = False

    @classmethod
    async def open(cls, exchange: Exchange) -> RawConnection:
        reader, writer = await asyncio.open_connection(exchange.host, exchange.port, limit=1 << 20)
        wires = (exchange.wire(exchange.plain_body), exchange.wire(exchange.stream_body))
        return cls(reader, writer, wires, exchange.surface)

    def close(self) -> None:
        self.closed = True
        self._writer.transport.abort()

    async def complete(self) -> None:
        """Send a non-streamed request and read its whole answer, which must be a 200 with
        a chat completion."""
        head = await self._send(self._plain)
        if head.length is not None and not head.chunked:  # the common case, without a generator
            try:
                body = await self._reader.readexactly(head.length)
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                self.close()
                raise RequestFailed(f"answer cut short: {exc!r}") from None
        else:
            body = b"".join([piece async for piece in self._body(head)])
        self._check(head, body)
        if self._answer_mark not in body:
            self.close()
            raise RequestFailed(f"no {self._answer_mark.decode()} in {body[:120]!r}")

    async def stream(self, stop_after: int | None = None) -> StreamTally:
        """Send a streamed request and read it to its end, or drop the connection once
        `stop_after` tokens have arrived (a client that went away mid-stream)."""
        head = await self._send(self._stream)
        tally = StreamTally(self._surface)
        if head.status != 200:
            self._check(head, b"".join([piece async for piece in self._body(head)]))
        async for piece in self._body(head):
            tally.feed(piece)
            if stop_after is not None and tally.tokens >= stop_after:
                self.close()
                return tally
        return tally

    async def _send(self, request: bytes) -> Head:
        self._writer.write(request)
        try:
            raw = await self._reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            self.close()
            raise RequestFailed(f"connection lost before the answer: {exc!r}") from None
        head = Head(raw)
        if head.close:
            self.closed = True
        return head

    def _check(self, head: Head, body: bytes) -> None:
        if head.status != 200:
            self.close()
            raise RequestFailed(f"HTTP {head.status}: {body[:160]!r}")

    async def _body(self, head: Head) -> AsyncIterator[bytes]:
        reader = self._reader
        try:
            if head.chunked:
                while True:
                    line = await reader.readuntil(b"\r\n")
                    size = int(line.split(b";", 1)[0], 16)
                    if size == 0:
                        await reader.readuntil(b"\r\n")  # no trailers expected
                        return
                    data = await reader.readexactly(size + 2)
                    yield data[:-2]
            elif head.length is not None:
                if head.length:
                    yield await reader.readexactly(head.length)
            else:
                self.closed = True
                yield await reader.read()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError) as exc:
            self.close()
            raise RequestFailed(f"answer cut short: {exc!r}") from None
