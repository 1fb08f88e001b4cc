"""A small pooled HTTP/1.1 client for calling upstreams: keep-alive connections per origin,
asyncio protocols for the I/O and httptools (llhttp, which uvicorn serves with) for parsing.

Why not httpx: on the request path it cost about 1 ms of CPU per call, and its pool checks every
idle connection's socket on every request, so the cost grew with concurrency
(`python -m bench.upstream_clients` measures the candidates side by side). This client does only
what a gateway needs: POST a body that is already in memory, read the answer whole or as it
arrives, with connect, read and idle deadlines, and reuse the connection when the answer ended
cleanly. No redirects, no cookies, no proxies, no compression (none is asked for).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import ssl
from collections.abc import Mapping
from typing import NamedTuple, cast
from urllib.parse import urlsplit

import httptools

# A body larger than this, buffered and unread, stops reading from the socket until it is read.
READ_HIGH_WATER = 1 << 20
# The largest non-streamed answer read into memory.
MAX_BODY_BYTES = 64 << 20
# Connections idle for longer are closed rather than reused: servers commonly close theirs after
# 5 s (uvicorn's default), and reusing one they are closing would fail the request.
IDLE_TTL_S = 4.0


class HttpError(Exception):
    """Any failure to get an answer; the message names what failed, never a credential."""


class ConnectFailed(HttpError):
    pass


class ConnectTimeout(HttpError):
    pass


class PoolTimeout(HttpError):
    pass


class ReadTimeout(HttpError):
    pass


class ConnectionBroken(HttpError):
    """The connection closed or the answer was not HTTP before the answer ended."""


class Origin(NamedTuple):
    scheme: str
    host: str
    port: int


class Target(NamedTuple):
    origin: Origin
    path: bytes  # the request target: path and query
    host_header: bytes


@functools.lru_cache(maxsize=1024)
def parse_target(url: str) -> Target:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    default_port = 443 if parts.scheme == "https" else 80
    port = parts.port or default_port
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host = parts.hostname
    shown = f"[{host}]" if ":" in host else host
    host_header = shown if port == default_port else f"{shown}:{port}"
    return Target(Origin(parts.scheme, host, port), path.encode("ascii"), host_header.encode())


def encode_request(target: Target, headers: Mapping[str, str], body: bytes) -> bytes:
    lines = [
        b"POST ", target.path, b" HTTP/1.1\r\nhost: ", target.host_header,
        b"\r\ncontent-length: ", str(len(body)).encode(), b"\r\n",
    ]  # fmt: skip
    for name, value in headers.items():
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            raise ValueError(f"header {name!r} contains a line break")
        lines += (name.encode("latin-1"), b": ", value.encode("latin-1"), b"\r\n")
    lines += (b"\r\n", body)
    return b"".join(lines)


class Connection(asyncio.Protocol):
    """One keep-alive connection, reading one answer at a time."""

    def __init__(self, origin: Origin) -> None:
        self.origin = origin
        self.idle_since = 0.0
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._closed = False
        self._reset()

    def _reset(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._status = 0
        self._raw_headers: list[tuple[bytes, bytes]] = []
        self._headers_done = False
        self._keep_alive = False
        self._body: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._complete = False
        self._received_any = False
        self._error: HttpError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def data_received(self, data: bytes) -> None:
        self._received_any = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self._fail(ConnectionBroken("the upstream's answer is not valid HTTP/1.1"))
            self.abort()
        self._wake()

    def eof_received(self) -> bool | None:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        if self._headers_done and not self._complete and self._ends_at_close():
            self._complete = True  # a body delimited by the connection's end
        elif not self._complete:
            self._fail(ConnectionBroken("the upstream closed the connection before answering"))
        self._wake()

    # -- httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self._raw_headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()
        self._keep_alive = self._parser.should_keep_alive()  # llhttp forgets it once complete
        self._headers_done = True

    def on_body(self, body: bytes) -> None:
        self._body.append(body)
        self._buffered += len(body)
        if self._buffered > READ_HIGH_WATER and not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()

    def on_message_complete(self) -> None:
        self._complete = True

    # -- used by Response and the pool
    @property
    def closed(self) -> bool:
        return self._closed

    def send(self, request: bytes) -> None:
        assert self._transport is not None
        self._reset()
        self._transport.write(request)

    def reusable(self) -> bool:
        return (
            self._complete
            and not self._closed
            and self._error is None
            and not self._body
            and self._keep_alive
        )

    def abort(self) -> None:
        self._closed = True
        if self._transport is not None:
            self._transport.abort()

    async def head(self, deadline: float) -> tuple[int, dict[str, str]]:
        while not self._headers_done:
            self._raise_if_failed()
            await self._wait(deadline)
        headers: dict[str, str] = {}
        for raw_name, raw_value in self._raw_headers:
            name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        return self._status, headers

    async def next_chunk(self, deadline: float) -> bytes | None:
        """What arrived of the body since the last call (waiting until `deadline` if nothing
        has), or None once it has ended."""
        while not self._body:
            if self._complete:
                return None
            self._raise_if_failed()
            await self._wait(deadline)
        chunk = self._body.popleft() if len(self._body) == 1 else b"".join(self._body)
        self._body.clear()
        self._buffered = 0
        if self._paused and self._transport is not None:
            self._paused = False
            self._transport.resume_reading()
        return chunk

    @property
    def answered_nothing(self) -> bool:
        return not self._received_any

    def _ends_at_close(self) -> bool:
        names = {name.lower() for name, _ in self._raw_headers}
        return b"content-length" not in names and b"transfer-encoding" not in names

    def _fail(self, error: HttpError) -> None:
        if self._error is None:
            self._error = error

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self, deadline: float) -> None:
        waiter = self._waiter = self._loop.create_future()
        timer = self._loop.call_at(deadline, _expire, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(ReadTimeout("the upstream did not answer in time"))


class Response:
    """An answer whose head has arrived. Read it whole or chunk by chunk, then `close()` it:
    the connection goes back to the pool only if the answer was read to its end."""

    def __init__(
        self, pool: ConnectionPool, connection: Connection, status: int, headers: dict[str, str]
    ) -> None:
        self.status = status
        self.headers = headers
        self._pool = pool
        self._connection: Connection | None = connection

    async def read(self, deadline: float) -> bytes:
        """The rest of the body, which must end by `deadline` (loop time)."""
        parts = []
        size = 0
        while (chunk := await self.next_chunk(deadline)) is not None:
            parts.append(chunk)
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise ConnectionBroken(f"the upstream's answer is larger than {MAX_BODY_BYTES}")
        return b"".join(parts)

    async def next_chunk(self, deadline: float) -> bytes | None:
        """The next bytes of the body, or None at its end; `deadline` is in loop time."""
        if self._connection is None:
            return None
        return await self._connection.next_chunk(deadline)

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            self._pool.release(connection)


class ConnectionPool:
    """Keep-alive connections per origin: at most `max_connections` open to one origin, at most
    `max_idle` of them kept idle (newest reused first)."""

    def __init__(
        self,
        max_connections: int = 512,
        max_idle: int = 128,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._max_connections = max_connections
        self._max_idle = max_idle
        self._ssl_context = ssl_context
        self._idle: dict[Origin, list[Connection]] = {}
        self._open: collections.Counter[Origin] = collections.Counter()
        self._waiters: dict[Origin, collections.deque[asyncio.Future[None]]] = {}
        self._closed = False

    async def post(
        self,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        connect_timeout_s: float,
        read_timeout_s: float,
    ) -> Response:
        """POST `body` and wait for the answer's head (at most `read_timeout_s`)."""
        target = parse_target(url)
        request = encode_request(target, headers, body)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + read_timeout_s
        while True:
            connection, reused = await self._acquire(target.origin, connect_timeout_s, deadline)
            try:
                connection.send(request)
                status, response_headers = await connection.head(deadline)
            except ConnectionBroken:
                self._discard(connection)
                # A kept-alive connection the server closed as we reused it: the request never
                # reached it, so sending it once more on a new connection is safe.
                if reused and connection.answered_nothing:
                    continue
                raise
            except BaseException:
                self._discard(connection)
                raise
            return Response(self, connection, status, response_headers)

    def release(self, connection: Connection) -> None:
        origin = connection.origin
        idle = self._idle.setdefault(origin, [])
        if connection.reusable() and not self._closed and len(idle) < self._max_idle:
            connection.idle_since = asyncio.get_running_loop().time()
            idle.append(connection)
            self._notify(origin)
        else:
            self._discard(connection)

    async def aclose(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            for connection in idle:
                connection.abort()
        self._idle.clear()

    async def _acquire(
        self, origin: Origin, connect_timeout_s: float, deadline: float
    ) -> tuple[Connection, bool]:
        loop = asyncio.get_running_loop()
        while True:
            idle = self._idle.get(origin)
            now = loop.time()
            while idle:
                connection = idle.pop()
                if not connection.closed and now - connection.idle_since < IDLE_TTL_S:
                    return connection, True
                self._discard(connection)
            if self._open[origin] < self._max_connections:
                self._open[origin] += 1
                try:
                    return await self._connect(origin, connect_timeout_s), False
                except BaseException:
                    self._open[origin] -= 1
                    self._notify(origin)
                    raise
            await self._wait_for_slot(origin, deadline)

    async def _connect(self, origin: Origin, timeout_s: float) -> Connection:
        loop = asyncio.get_running_loop()
        context = self._context() if origin.scheme == "https" else None
        try:
            async with asyncio.timeout(timeout_s):
                _, connection = await loop.create_connection(
                    lambda: Connection(origin),
                    origin.host,
                    origin.port,
                    ssl=context,
                    server_hostname=origin.host if context is not None else None,
                )
        except TimeoutError:
            raise ConnectTimeout("could not connect to the upstream in time") from None
        except (OSError, ssl.SSLError) as exc:
            raise ConnectFailed(
                f"could not connect to the upstream ({type(exc).__name__})"
            ) from None
        return connection

    def _context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = default_ssl_context()
        return self._ssl_context

    def _discard(self, connection: Connection) -> None:
        connection.abort()
        self._open[connection.origin] -= 1
        self._notify(connection.origin)

    async def _wait_for_slot(self, origin: Origin, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.setdefault(origin, collections.deque()).append(waiter)
        timer = loop.call_at(deadline, _expire_slot, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            waiters = self._waiters.get(origin)
            if waiters is not None and waiter in waiters:
                waiters.remove(waiter)

    def _notify(self, origin: Origin) -> None:
        waiters = self._waiters.get(origin)
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


def _expire_slot(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(PoolTimeout("no connection to the upstream became free in time"))


def default_ssl_context() -> ssl.SSLContext:
    """The system's trust store (and SSL_CERT_FILE/SSL_CERT_DIR), plus certifi's when present."""
    context = ssl.create_default_context()
    try:
        import certifi
    except ImportError:
        return context
    context.load_verify_locations(certifi.where())
    return context
