"""Socket-level faults and a byte-counting proxy on 127.0.0.1, for routing tests.

`FakeUpstream` plays faults at the HTTP level; these play them below it: a port where nothing
listens (`closed_port`), a server that resets every connection before answering
(`ResettingServer`), one that never answers (`SilentServer`), and a TCP proxy that counts every
byte it relays (`ByteCountingProxy`), to prove that an upstream the gateway must never contact
received nothing.

Each server is a context manager: entering binds a free loopback port and starts its threads,
leaving stops them and closes every socket it opened. Threads, not tasks, so they serve
synchronous tests and asyncio tests alike. Counters are updated under a lock, and a byte is
counted when it is read, before it is relayed: whatever one side has seen is already counted.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Self

_HEAD_END = b"\r\n\r\n"
_CHUNK = 65536
_STOP_S = 5.0  # how long leaving waits for the threads


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens: connecting to it is refused.

    The port was free a moment ago; another process could take it, as with any free port.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _abort(sock: socket.socket) -> None:
    """Make the next close send a TCP RST instead of a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class _LoopbackServer:
    """Accepts on a free 127.0.0.1 port and serves each connection on its own thread.

    Every socket a server opens is tracked; leaving shuts them all down, which wakes any
    thread blocked on them, then waits for the threads and closes what is left. What had
    already arrived by then is still counted, including connections not yet accepted, so that
    counts read after leaving cover everything clients did before it. A server runs once.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._connections = 0
        self._bytes_received = 0
        self._port: int | None = None
        self._listener: socket.socket | None = None
        self._wake_read: socket.socket | None = None
        self._wake_write: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self._workers: list[threading.Thread] = []
        self._open: set[socket.socket] = set()
        self._stopping = False
        self._used = False

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError(f"{type(self).__name__} is not running")
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def connections(self) -> int:
        """Connections accepted so far."""
        with self._lock:
            return self._connections

    @property
    def bytes_received(self) -> int:
        """Bytes read from clients so far."""
        with self._lock:
            return self._bytes_received

    def __enter__(self) -> Self:
        if self._used:
            raise RuntimeError(f"{type(self).__name__} runs once; make a new one")
        self._used = True
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        listener.setblocking(False)  # readiness comes from the selector
        self._listener = listener
        self._port = listener.getsockname()[1]
        self._wake_read, self._wake_write = socket.socketpair()
        self._acceptor = threading.Thread(
            target=self._accept_loop, name=f"{type(self).__name__}-accept", daemon=True
        )
        self._acceptor.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._listener is not None
        assert self._acceptor is not None
        assert self._wake_read is not None
        assert self._wake_write is not None
        with self._lock:
            self._stopping = True
            for sock in self._open:
                with contextlib.suppress(OSError):  # never connected, or already gone
                    sock.shutdown(socket.SHUT_RDWR)
        self._wake_write.send(b"x")
        deadline = time.monotonic() + _STOP_S
        self._acceptor.join(max(0.0, deadline - time.monotonic()))
        self._count_backlog()
        for worker in self._workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        stuck = [t.name for t in [self._acceptor, *self._workers] if t.is_alive()]
        with self._lock:
            for sock in self._open:
                sock.close()
            self._open.clear()
        for sock in (self._listener, self._wake_read, self._wake_write):
            sock.close()
        self._listener = self._acceptor = self._wake_read = self._wake_write = None
        self._workers = []
        if stuck and exc is None:
            raise RuntimeError(f"{type(self).__name__} threads did not stop: {stuck}")

    def _accept_loop(self) -> None:
        assert self._listener is not None
        assert self._wake_read is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            selector.register(self._wake_read, selectors.EVENT_READ)
            while True:
                ready = {key.fileobj for key, _ in selector.select()}
                if self._wake_read in ready:
                    return
                try:
                    conn, _ = self._listener.accept()
                except (BlockingIOError, ConnectionAbortedError):
                    continue  # the client gave up between connecting and being accepted
                with self._lock:
                    stopping = self._stopping
                if stopping:
                    self._count_and_close(conn)
                    return
                conn.setblocking(True)
                with self._lock:
                    self._connections += 1
                    self._open.add(conn)
                    worker = threading.Thread(
                        target=self._serve_and_close,
                        args=(conn,),
                        name=f"{type(self).__name__}-{self._connections}",
                        daemon=True,
                    )
                    self._workers.append(worker)
                worker.start()

    def _serve_and_close(self, conn: socket.socket) -> None:
        try:
            self._serve(conn)
        except OSError:
            pass  # the peer reset, or we are stopping: either way the connection is over
        finally:
            if self._stopping:
                self._count_unread(conn)
            self._close(conn)

    def _count_backlog(self) -> None:
        """Count the connections still waiting to be accepted, and what they sent."""
        assert self._listener is not None
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:  # BlockingIOError: the backlog is empty
                return
            self._count_and_close(conn)

    def _count_and_close(self, conn: socket.socket) -> None:
        with conn:
            with self._lock:
                self._connections += 1
            self._count_unread(conn)

    def _count_unread(self, conn: socket.socket) -> None:
        """Count the bytes that have arrived on `conn` and were not read yet, without waiting."""
        with contextlib.suppress(OSError):  # BlockingIOError: nothing more has arrived
            while data := conn.recv(_CHUNK, socket.MSG_DONTWAIT):
                self._count_received(len(data))

    def _serve(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def _track(self, sock: socket.socket) -> None:
        """Own a socket opened by a worker, so that leaving shuts it down too."""
        with self._lock:
            if self._stopping:
                sock.close()
                raise ConnectionAbortedError("stopping")
            self._open.add(sock)

    def _close(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.discard(sock)
            sock.close()

    def _count_received(self, size: int) -> None:
        with self._lock:
            self._bytes_received += size


class ResettingServer(_LoopbackServer):
    """Reads each request head (up to the blank line, for at most 1 s), then resets the
    connection with a TCP RST before sending a single byte."""

    head_timeout_s = 1.0

    def _serve(self, conn: socket.socket) -> None:
        deadline = time.monotonic() + self.head_timeout_s
        seen = b""
        while _HEAD_END not in seen:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            conn.settimeout(remaining)
            try:
                data = conn.recv(_CHUNK)
            except TimeoutError:
                break
            if not data:
                break
            self._count_received(len(data))
            seen = seen[-3:] + data  # enough to find a head end split across reads
        _abort(conn)


class SilentServer(_LoopbackServer):
    """Reads whatever clients send and never answers; closes a connection when its client
    does."""

    def _serve(self, conn: socket.socket) -> None:
        while data := conn.recv(_CHUNK):
            self._count_received(len(data))


class ByteCountingProxy(_LoopbackServer):
    """A TCP proxy to 127.0.0.1:`target_port` that counts the bytes it relays.

    `bytes_received` counts bytes read from clients (what the gateway sent toward the upstream),
    `bytes_sent` bytes read from the upstream to relay back. Each direction runs on its own
    thread; an end of stream is passed on as a half-close, a reset as a reset. When the target
    refuses the connection, the proxy resets the client's.
    """

    def __init__(self, target_port: int) -> None:
        super().__init__()
        self.target_port = target_port
        self._bytes_sent = 0

    @property
    def bytes_sent(self) -> int:
        """Bytes read from the upstream, to relay back to clients, so far."""
        with self._lock:
            return self._bytes_sent

    def _count_sent(self, size: int) -> None:
        with self._lock:
            self._bytes_sent += size

    def _serve(self, conn: socket.socket) -> None:
        upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._track(upstream)
        try:
            try:
                upstream.connect(("127.0.0.1", self.target_port))
            except OSError:
                _abort(conn)
                return
            with self._lock:
                if self._stopping:  # connected after leaving swept the sockets
                    return
            broken = threading.Event()
            backward = threading.Thread(
                target=self._relay,
                args=(upstream, conn, self._count_sent, broken),
                name=f"{threading.current_thread().name}-back",
                daemon=True,
            )
            backward.start()
            try:
                self._relay(conn, upstream, self._count_received, broken)
            finally:
                backward.join()
        finally:
            self._close(upstream)

    @staticmethod
    def _relay(
        source: socket.socket,
        sink: socket.socket,
        count: Callable[[int], None],
        broken: threading.Event,
    ) -> None:
        """Copy `source` to `sink` until the end of stream, then half-close `sink`. On an error
        either way, arrange for both sockets to reset on close and wake the other direction."""
        try:
            while data := source.recv(_CHUNK):
                count(len(data))
                sink.sendall(data)
        except OSError:
            broken.set()
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    _abort(sock)
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RD)
            return
        if not broken.is_set():
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)
