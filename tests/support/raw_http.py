"""HTTP/1.1 read off a raw socket, for tests that must see the bytes or keep one connection."""

from __future__ import annotations

import socket


def read_raw_response(sock: socket.socket) -> bytes:
    """One HTTP/1.1 response with a content-length body, exactly as it came off the socket, however
    the server split its writes: the next read starts at the next response."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed mid-head: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed mid-body"
        body += chunk
    assert len(body) == length, "more bytes than one response"
    return head + b"\r\n\r\n" + body
