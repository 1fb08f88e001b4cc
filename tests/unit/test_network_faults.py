"""The socket-level fault servers and the byte-counting proxy, over real loopback sockets:
refused connections, resets before the first byte, silence past a read timeout, and a proxy
whose counts match the bytes on the wire exactly, across kept-alive and concurrent connections,
half-closes and resets."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import httpx
import orjson
import pytest

from modelyard.testing.fake_upstream import FakeUpstream, StreamReply, stream_events
from tests.support.network_faults import (
    ByteCountingProxy,
    ResettingServer,
    SilentServer,
    closed_port,
)
from tests.support.raw_http import read_raw_response


def wire_request(request: httpx.Request) -> bytes:
    """The bytes httpx writes for `request` over HTTP/1.1."""
    head = b"%s %s HTTP/1.1\r\n" % (request.method.encode(), request.url.raw_path)
    head += b"".join(b"%s: %s\r\n" % (name, value) for name, value in request.headers.raw)
    return head + b"\r\n" + request.content


def wire_response(response: httpx.Response) -> bytes:
    """The bytes an HTTP/1.1 server wrote for `response` (a content-length body, not encoded)."""
    reason: bytes = response.extensions["reason_phrase"]
    head = b"HTTP/1.1 %d %s\r\n" % (response.status_code, reason)
    head += b"".join(b"%s: %s\r\n" % (name, value) for name, value in response.headers.raw)
    return head + b"\r\n" + response.content


def raw_chat_request(port: int, text: str) -> bytes:
    body = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": text}]})
    return (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1:%d\r\n"
        b"content-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (port, len(body), body)
    )


def chat(text: str) -> dict[str, object]:
    return {"model": "m", "messages": [{"role": "user", "content": text}]}


@pytest.fixture()
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream().running() as running:
        yield running


def test_closed_port_refuses_connections() -> None:
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{closed_port()}/v1/models", timeout=5)


def test_resetting_server_resets_after_reading_the_request_head() -> None:
    with ResettingServer() as server, httpx.Client(timeout=5) as client:
        request = client.build_request("GET", f"{server.base_url}/models")
        with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
            client.send(request)
        assert server.connections == 1
        assert server.bytes_received == len(wire_request(request))


def test_resetting_server_sends_a_reset_not_an_end_of_stream() -> None:
    head = b"GET /v1/models HTTP/1.1\r\nhost: x\r\n\r\n"
    with ResettingServer() as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(head)
            with pytest.raises(ConnectionResetError):
                sock.recv(1)
        assert server.bytes_received == len(head)


def test_silent_server_outlasts_a_read_timeout() -> None:
    timeout = httpx.Timeout(5.0, read=0.5)
    with SilentServer() as server, httpx.Client(timeout=timeout) as client:
        with pytest.raises(httpx.ReadTimeout):
            client.post(f"{server.base_url}/chat/completions", json=chat("hello"))
        assert server.connections == 1


def test_proxy_counts_every_byte_both_ways_on_a_kept_alive_connection(
    upstream: FakeUpstream,
) -> None:
    with ByteCountingProxy(upstream.port) as proxy:
        assert (proxy.connections, proxy.bytes_received, proxy.bytes_sent) == (0, 0, 0)
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
            first = raw_chat_request(proxy.port, "first")
            sock.sendall(first)
            first_reply = read_raw_response(sock)
            assert first_reply.startswith(b"HTTP/1.1 200 ")
            assert proxy.bytes_received == len(first)
            assert proxy.bytes_sent == len(first_reply)

            second = raw_chat_request(proxy.port, "a longer second message")
            sock.sendall(second)
            second_reply = read_raw_response(sock)
            assert proxy.bytes_received == len(first) + len(second)
            assert proxy.bytes_sent == len(first_reply) + len(second_reply)
        assert proxy.connections == 1
    contents = [r.body["messages"][0]["content"] for r in upstream.requests]
    assert contents == ["first", "a longer second message"]


def test_proxy_relays_httpx_chat_requests_and_counts_them(upstream: FakeUpstream) -> None:
    with ByteCountingProxy(upstream.port) as proxy, httpx.Client(timeout=5) as client:
        responses = [
            client.post(f"{proxy.base_url}/chat/completions", json=chat(text))
            for text in ("one", "two", "three")
        ]
        for response in responses:
            assert response.status_code == 200
            assert response.json()["choices"][0]["message"]["content"] == "Hello from upstream."
        assert proxy.connections == 1  # kept alive
        assert proxy.bytes_received == sum(len(wire_request(r.request)) for r in responses)
        assert proxy.bytes_sent == sum(len(wire_response(r)) for r in responses)
    assert [r.body["messages"][0]["content"] for r in upstream.requests] == ["one", "two", "three"]


@pytest.mark.anyio
async def test_proxy_carries_32_concurrent_requests(upstream: FakeUpstream) -> None:
    texts = [f"request {n}" for n in range(32)]
    with ByteCountingProxy(upstream.port) as proxy:
        async with httpx.AsyncClient(timeout=10) as client:
            responses = await asyncio.gather(
                *(client.post(f"{proxy.base_url}/chat/completions", json=chat(t)) for t in texts)
            )
        assert [r.status_code for r in responses] == [200] * 32
        assert proxy.connections == 32  # all in flight at once, none waited for another
        assert proxy.bytes_received == sum(len(wire_request(r.request)) for r in responses)
        assert proxy.bytes_sent == sum(len(wire_response(r)) for r in responses)
    assert sorted(r.body["messages"][0]["content"] for r in upstream.requests) == sorted(texts)


def test_proxy_passes_a_half_close_on_and_relays_the_answer() -> None:
    """The target answers only once it has read the end of the client's stream."""
    with socket.create_server(("127.0.0.1", 0)) as target:

        def drain_then_answer() -> None:
            conn, _ = target.accept()
            with conn:
                received = b""
                while chunk := conn.recv(65536):
                    received += chunk
                conn.sendall(b"got:" + received)

        thread = threading.Thread(target=drain_then_answer, daemon=True)
        thread.start()
        with ByteCountingProxy(target.getsockname()[1]) as proxy:
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
                sock.sendall(b"hello")
                sock.shutdown(socket.SHUT_WR)
                answer = b""
                while chunk := sock.recv(65536):
                    answer += chunk
            thread.join(5)
            assert answer == b"got:hello"
            assert (proxy.bytes_received, proxy.bytes_sent) == (5, 9)


def test_proxy_resets_clients_when_the_target_refuses() -> None:
    with ByteCountingProxy(closed_port()) as proxy:
        # The reset can come back before connect() returns, or after.
        with (
            pytest.raises(ConnectionResetError),
            socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock,
        ):
            sock.recv(1)
        assert proxy.connections == 1
        assert proxy.bytes_received == 0


def test_proxy_passes_a_reset_on() -> None:
    head = b"GET /v1/models HTTP/1.1\r\nhost: x\r\n\r\n"
    with ResettingServer() as server, ByteCountingProxy(server.port) as proxy:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
            sock.sendall(head)
            with pytest.raises(ConnectionResetError):
                sock.recv(1)
        assert (proxy.bytes_received, proxy.bytes_sent) == (len(head), 0)
        assert server.bytes_received == len(head)


def test_proxy_passes_a_mid_stream_cut_on(upstream: FakeUpstream) -> None:
    pieces = ["one", " two", " three", " four"]
    upstream.enqueue(StreamReply(stream_events(pieces), reset_after=3))
    with ByteCountingProxy(upstream.port) as proxy, httpx.Client(timeout=5) as client:
        lines: list[str] = []
        body = {**chat("stream please"), "stream": True}
        with (
            pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)),
            client.stream("POST", f"{proxy.base_url}/chat/completions", json=body) as response,
        ):
            lines.extend(line for line in response.iter_lines() if line)
        assert len(lines) == 3
        assert proxy.bytes_sent > 0


def test_leaving_the_proxy_closes_its_connections(upstream: FakeUpstream) -> None:
    with ByteCountingProxy(upstream.port) as proxy:
        sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        sock.sendall(raw_chat_request(proxy.port, "stay open"))
        read_raw_response(sock)
    with sock:
        assert sock.recv(1) == b""  # the idle kept-alive connection was closed, not left open
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=5).close()


def test_counts_read_after_leaving_cover_everything_sent_before() -> None:
    """Connections still queued and bytes not yet read when the proxy stops count too: a
    residency check made after leaving cannot miss a connection that came just before."""
    with SilentServer() as target:
        with ByteCountingProxy(target.port) as proxy:
            socks = [socket.create_connection(("127.0.0.1", proxy.port)) for _ in range(64)]
            for sock in socks:
                sock.sendall(b"x" * 100)
        for sock in socks:
            sock.close()
    assert proxy.connections == 64
    assert proxy.bytes_received == 6400
