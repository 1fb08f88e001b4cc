"""Connections that never finish their request are closed: idle ones, heads dribbled in, heads
too large, bodies that stop. Ordinary requests on the same server are unaffected."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from modelyard.testing.fake_upstream import FakeUpstream
from tests.remote.fixtures import remote_gateway_at
from tests.support.gateway import GatewayProcess
from tests.support.raw_http import read_raw_response

HEAD_TIMEOUT_S = 1.0
BODY_IDLE_TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def bounded_gateway(
    tmp_path_factory: pytest.TempPathFactory, upstream_server: FakeUpstream
) -> Iterator[GatewayProcess]:
    gateway = remote_gateway_at(
        tmp_path_factory.mktemp("bounded"),
        upstream_server.base_url,
        {
            "MODELYARD_REQUEST_HEAD_TIMEOUT_S": str(HEAD_TIMEOUT_S),
            "MODELYARD_BODY_IDLE_TIMEOUT_S": str(BODY_IDLE_TIMEOUT_S),
        },
    )
    yield gateway
    gateway.stop()


def closed_within(sock: socket.socket, seconds: float) -> bytes:
    """What the server sent before closing the connection; fails if it stays open longer."""
    sock.settimeout(seconds)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except TimeoutError:
        pytest.fail(f"the connection was still open after {seconds} s")
    return received


def connect(gateway: GatewayProcess) -> socket.socket:
    return socket.create_connection(("127.0.0.1", gateway.port))


def test_a_connection_that_never_sends_a_request_is_closed(bounded_gateway: GatewayProcess) -> None:
    with connect(bounded_gateway) as sock:
        started = time.monotonic()
        assert closed_within(sock, HEAD_TIMEOUT_S * 5) == b""
        assert time.monotonic() - started >= HEAD_TIMEOUT_S * 0.9


def test_a_request_head_sent_too_slowly_is_closed(bounded_gateway: GatewayProcess) -> None:
    with connect(bounded_gateway) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        for _ in range(3):  # a header line now and then, never the blank line
            time.sleep(HEAD_TIMEOUT_S / 3)
            try:
                sock.sendall(b"X-Slow: 1\r\n")
            except OSError:
                break
        assert closed_within(sock, HEAD_TIMEOUT_S * 5) == b""


def test_request_headers_over_the_limit_get_431_and_a_closed_connection(
    bounded_gateway: GatewayProcess,
) -> None:
    with connect(bounded_gateway) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n")
        answer = closed_within(sock, 5)
    assert answer.startswith(b"HTTP/1.1 431 ")


def test_a_body_that_stops_arriving_ends_the_request(bounded_gateway: GatewayProcess) -> None:
    with connect(bounded_gateway) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
            b"Authorization: Bearer " + str(bounded_gateway.admin_key).encode() + b"\r\n"
            b'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"model": '
        )
        assert closed_within(sock, BODY_IDLE_TIMEOUT_S * 5) == b""


def test_ordinary_requests_are_served_as_before(bounded_gateway: GatewayProcess) -> None:
    with httpx.Client(base_url=bounded_gateway.base_url) as client:
        for _ in range(3):
            assert client.get("/healthz").status_code == 200
            time.sleep(HEAD_TIMEOUT_S / 2)  # within the keep-alive time, on one connection
    big_but_allowed = {"x-fine": "a" * 30_000}
    assert (
        httpx.get(f"{bounded_gateway.base_url}/healthz", headers=big_but_allowed).status_code == 200
    )


def test_an_idle_kept_alive_connection_outlives_the_clients_own_expiry(
    bounded_gateway: GatewayProcess,
) -> None:
    """The server must not close a kept-alive connection before its clients would stop reusing
    it (httpx, under the openai and anthropic SDKs, keeps one 5 s): the two closing at once
    resets the request sent on it."""
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    with connect(bounded_gateway) as sock:
        sock.settimeout(5)
        sock.sendall(request)
        assert read_raw_response(sock).startswith(b"HTTP/1.1 200 ")
        time.sleep(6)  # idle past httpx's expiry, and past uvicorn's default keep-alive
        sock.sendall(request)
        assert read_raw_response(sock).startswith(b"HTTP/1.1 200 ")


def test_the_limits_are_settings(tmp_path: Path) -> None:
    from modelyard.settings import Settings

    settings = Settings(data_dir=tmp_path, max_header_bytes=2048, request_head_timeout_s=3)
    assert (settings.max_header_bytes, settings.request_head_timeout_s) == (2048, 3)
