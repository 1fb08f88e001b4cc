"""The upstream HTTP/1.1 client against a raw socket server on loopback that answers with
scripted bytes: framing (length, chunked, until close), keep-alive reuse, a kept-alive
connection closed by the server, deadlines, the pool's cap, and TLS."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from modelyard.providers.http_client import (
    ConnectFailed,
    ConnectionBroken,
    ConnectionPool,
    PoolTimeout,
    ReadTimeout,
    Response,
    encode_request,
    parse_target,
)
from tests.support.certificates import self_signed_certificate

pytestmark = pytest.mark.anyio

Answer = Callable[[bytes], bytes | None]  # request bytes -> reply bytes (None: close, no reply)


def ok(body: bytes = b'{"ok": true}', extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n%s\r\n%s" % (len(body), extra, body)


class ScriptedServer:
    """Reads one request at a time (head + content-length body) and writes what `answer` says;
    counts connections and requests."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.connections = 0
        self.requests: list[bytes] = []
        self.writers: list[asyncio.StreamWriter] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                reply = self.answer(request)
                if reply is None:
                    break
                writer.write(reply)
                await writer.drain()
                if b"connection: close" in reply.lower():
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def serve(
    answer: Answer, ssl_context: ssl.SSLContext | None = None
) -> tuple[ScriptedServer, asyncio.Server, int]:
    scripted = ScriptedServer(answer)
    server = await asyncio.start_server(scripted.handle, "127.0.0.1", 0, ssl=ssl_context)
    port = server.sockets[0].getsockname()[1]
    return scripted, server, port


async def post(pool: ConnectionPool, port: int, scheme: str = "http", **kw: float) -> Response:
    return await pool.post(
        f"{scheme}://127.0.0.1:{port}/v1/chat/completions?x=1",
        {"content-type": "application/json", "authorization": "Bearer k"},
        b'{"a": 1}',
        connect_timeout_s=kw.get("connect", 2.0),
        read_timeout_s=kw.get("read", 2.0),
    )


async def read_all(response: Response, seconds: float = 2.0) -> bytes:
    try:
        return await response.read(asyncio.get_running_loop().time() + seconds)
    finally:
        response.close()


async def chunks(response: Response, seconds: float = 2.0) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    while (chunk := await response.next_chunk(loop.time() + seconds)) is not None:
        yield chunk


def test_request_bytes_carry_target_host_length_and_headers() -> None:
    target = parse_target("https://api.example.com/v1/chat/completions?api-version=2024")
    assert target.origin == ("https", "api.example.com", 443)
    request = encode_request(target, {"api-key": "s"}, b"{}")
    assert request == (
        b"POST /v1/chat/completions?api-version=2024 HTTP/1.1\r\nhost: api.example.com\r\n"
        b"content-length: 2\r\napi-key: s\r\n\r\n{}"
    )
    assert parse_target("http://[::1]:8000/v1").host_header == b"[::1]:8000"
    with pytest.raises(ValueError, match="line break"):
        encode_request(target, {"authorization": "Bearer a\r\nx-injected: 1"}, b"")
    with pytest.raises(ValueError, match="not an http"):
        parse_target("ftp://example.com/")


async def test_keep_alive_reuses_one_connection_and_reads_headers() -> None:
    scripted, server, port = await serve(lambda _: ok(extra=b"Retry-After: 3\r\nX-A: 1\r\n"))
    pool = ConnectionPool()
    async with server:
        for _ in range(5):
            response = await post(pool, port)
            assert (response.status, response.headers["retry-after"]) == (200, "3")
            assert await read_all(response) == b'{"ok": true}'
        await pool.aclose()
    assert scripted.connections == 1
    assert len(scripted.requests) == 5
    assert scripted.requests[0].startswith(b"POST /v1/chat/completions?x=1 HTTP/1.1\r\n")
    assert b"authorization: Bearer k\r\n" in scripted.requests[0]


async def test_chunked_and_close_delimited_bodies_are_read_to_their_end() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
        b"5\r\ndata:\r\n7\r\n hello\n\r\n0\r\n\r\n"
    )
    scripted, server, port = await serve(lambda _: chunked)
    pool = ConnectionPool()
    async with server:
        assert await read_all(await post(pool, port)) == b"data: hello\n"
        assert await read_all(await post(pool, port)) == b"data: hello\n"
        assert scripted.connections == 1  # chunked answers keep the connection

    def until_close(_: bytes) -> bytes:
        return b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nall of it"

    scripted, server, port = await serve(until_close)
    async with server:
        for _ in range(2):
            response = await post(pool, port)
            body = b"".join([chunk async for chunk in chunks(response)])
            response.close()
            assert body == b"all of it"
        assert scripted.connections == 2  # `connection: close` is honoured
    await pool.aclose()


async def test_a_kept_alive_connection_the_server_closed_is_replaced_transparently() -> None:
    scripted, server, port = await serve(lambda _: ok())
    pool = ConnectionPool()
    async with server:
        await read_all(await post(pool, port))
        for writer in scripted.writers:  # the server ends the idle connection
            writer.transport.abort()
        await asyncio.sleep(0.05)
        assert await read_all(await post(pool, port)) == b'{"ok": true}'
        assert scripted.connections == 2
    await pool.aclose()


async def test_reply_never_sent_on_a_fresh_connection_is_an_error_not_a_retry() -> None:
    scripted, server, port = await serve(lambda _: None)
    pool = ConnectionPool()
    async with server:
        with pytest.raises(ConnectionBroken):
            await post(pool, port)
    assert len(scripted.requests) == 1  # sent once: a POST is not replayed blindly
    await pool.aclose()


async def test_a_stream_cut_mid_body_is_broken_and_its_connection_is_not_reused() -> None:
    cut = b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial"
    scripted, server, port = await serve(lambda _: cut)
    pool = ConnectionPool()
    async with server:
        response = await post(pool, port)
        first = await response.next_chunk(asyncio.get_running_loop().time() + 2)
        assert first == b"partial"
        for writer in scripted.writers:
            writer.transport.abort()
        with pytest.raises(ConnectionBroken):
            await read_all(response)
    await pool.aclose()


async def test_garbage_is_not_http() -> None:
    _, server, port = await serve(lambda _: b"SSH-2.0-OpenSSH\r\n\r\n")
    pool = ConnectionPool()
    async with server:
        with pytest.raises(ConnectionBroken, match="not valid HTTP"):
            await post(pool, port)
    await pool.aclose()


async def test_deadlines_bound_the_head_and_the_silence_between_chunks() -> None:
    slow_started = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n"
    _, server, port = await serve(lambda _: slow_started)
    pool = ConnectionPool()
    loop = asyncio.get_running_loop()
    async with server:
        response = await post(pool, port)
        assert await response.next_chunk(loop.time() + 1) == b"abc"
        started = loop.time()
        with pytest.raises(ReadTimeout):
            await response.next_chunk(loop.time() + 0.2)
        assert 0.15 < loop.time() - started < 1.0
        response.close()

    _, server, port = await serve(lambda _: b"HTTP/1.1 200 OK\r\n")  # head never finishes
    async with server:
        started = loop.time()
        with pytest.raises(ReadTimeout):
            await post(pool, port, read=0.2)
        assert loop.time() - started < 1.0
    await pool.aclose()


async def test_the_pool_caps_connections_and_waiters_time_out() -> None:
    release_body = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
    scripted, server, port = await serve(lambda _: release_body)
    pool = ConnectionPool(max_connections=2)
    async with server:
        first, second = await post(pool, port), await post(pool, port)
        with pytest.raises(PoolTimeout):
            await post(pool, port, read=0.2)
        waiting = asyncio.ensure_future(post(pool, port))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        assert await read_all(first) == b"ok"  # its connection frees a slot
        third = await asyncio.wait_for(waiting, 2)
        assert await read_all(third) == b"ok"
        await read_all(second)
        assert scripted.connections == 2
    await pool.aclose()


async def test_nothing_listening_is_a_connect_failure() -> None:
    _, server, port = await serve(lambda _: ok())
    server.close()
    await server.wait_closed()
    pool = ConnectionPool()
    with pytest.raises(ConnectFailed):
        await post(pool, port)
    await pool.aclose()


async def test_tls_upstream_is_verified_against_the_given_trust(tmp_path: Path) -> None:
    cert, key = self_signed_certificate(tmp_path)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    scripted, server, port = await serve(lambda _: ok(), server_context)
    trusting = ssl.create_default_context(cafile=str(cert))
    async with server:
        pool = ConnectionPool(ssl_context=trusting)
        for _ in range(2):
            assert await read_all(await post(pool, port, scheme="https")) == b'{"ok": true}'
        assert scripted.connections == 1
        await pool.aclose()
        stranger = ConnectionPool()  # default trust store: the self-signed certificate fails
        with pytest.raises(ConnectFailed):
            await post(stranger, port, scheme="https")
        await stranger.aclose()
