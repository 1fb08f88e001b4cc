"""The fast fake OpenAI-compatible upstream: raw asyncio HTTP/1.1, one process of its own.

Owns answering `POST /v1/chat/completions` as cheaply as Python can: a fixed completion (with
usage), or with `"stream": true` a chunked SSE stream of `--chunks` content events then
`[DONE]`, every byte precomputed. Keep-alive; anything else gets 404. It parses only the request
line, `content-length` and whether the body says `"stream":true`; it does not validate JSON,
pipelining beyond what arrives in order, or `Expect`. Each stream event is its own write (its
own chunk on the wire), as a real upstream sends tokens, but with no delay between them.

Run: `python -m bench.overhead.upstream [--chunks 100]`; prints its port on the first line of
stdout once it listens on 127.0.0.1, and serves until terminated.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from typing import cast

from bench.overhead import fastloop
from bench.overhead.payloads import DEFAULT_CHUNKS, completion, stream_events, wants_stream

PATH = b"/v1/chat/completions"
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"


class Answers:
    """The precomputed bytes of both answers."""

    def __init__(self, chunks: int) -> None:
        body = completion()
        self.plain = (
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n%s" % (len(body), body)
        )
        self.stream_head = (
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n"
        )
        self.stream_chunks = [b"%x\r\n%s\r\n" % (len(e), e) for e in stream_events(chunks)]
        self.stream_end = b"0\r\n\r\n"


class UpstreamProtocol(asyncio.Protocol):
    def __init__(self, answers: Answers) -> None:
        self._answers = answers
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, but have its methods.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self._buffer[:end])
            total = end + 4 + content_length(head)
            if len(self._buffer) < total:
                return
            body = bytes(self._buffer[end + 4 : total])
            del self._buffer[:total]
            self._answer(head, body)

    def _answer(self, head: bytes, body: bytes) -> None:
        transport = self._transport
        assert transport is not None
        request_line = head.split(b"\r\n", 1)[0].split(b" ")
        if len(request_line) < 2 or request_line[0] != b"POST" or request_line[1] != PATH:
            transport.write(NOT_FOUND)
            return
        if not wants_stream(body):
            transport.write(self._answers.plain)
            return
        transport.write(self._answers.stream_head)
        for chunk in self._answers.stream_chunks:
            transport.write(chunk)
        transport.write(self._answers.stream_end)


def content_length(head: bytes) -> int:
    lowered = head.lower()
    start = lowered.find(b"\r\ncontent-length:")
    if start < 0:
        return 0
    start += len(b"\r\ncontent-length:")
    stop = lowered.find(b"\r\n", start)
    return int(lowered[start : stop if stop >= 0 else None].strip())


async def serve(chunks: int) -> None:
    answers = Answers(chunks)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: UpstreamProtocol(answers), "127.0.0.1", 0, backlog=1024
    )
    port = server.sockets[0].getsockname()[1]
    print(port, flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description="Fast fake OpenAI-compatible upstream.")
    parser.add_argument("--chunks", type=int, default=DEFAULT_CHUNKS)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        fastloop.run(serve(args.chunks))


if __name__ == "__main__":
    main()
