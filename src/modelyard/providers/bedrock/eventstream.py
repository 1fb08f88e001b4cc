"""ConverseStream's body, the AWS event-stream framing (`application/vnd.amazon.eventstream`),
read with botocore's maintained parser: each frame's prelude and message CRC32 are checked, and
a corrupt frame ends the stream as broken, never as a shorter success."""

from __future__ import annotations

import struct
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from typing import NamedTuple

from botocore.eventstream import EventStreamBuffer, ParserError  # type: ignore[import-untyped]

from modelyard.errors import UpstreamStreamBroken

# What botocore raises on frames it cannot read: a bad checksum or length (ParserError), a
# header of an unknown type (KeyError), truncated or undecodable header bytes.
_UNREADABLE = (ParserError, struct.error, KeyError, IndexError, ValueError)


class StreamMessage(NamedTuple):
    # `event`, `exception` (a modelled error: `name` is its type) or `error` (`name` is its code)
    kind: str
    # The event type (`contentBlockDelta`), exception type or error code.
    name: str
    payload: bytes


async def stream_messages(
    first: bytes | None, chunks: AsyncIterator[bytes], deployment_id: str
) -> AsyncGenerator[StreamMessage, None]:
    """The messages of a stream whose first body chunk (already read) is `first`."""
    buffer = EventStreamBuffer()
    if first:
        buffer.add_data(first)
        for message in _complete(buffer, deployment_id):
            yield message
    async for chunk in chunks:
        buffer.add_data(chunk)
        for message in _complete(buffer, deployment_id):
            yield message


def _complete(buffer: EventStreamBuffer, deployment_id: str) -> Iterator[StreamMessage]:
    """The messages complete in `buffer` so far; those before a corrupt frame come first."""
    while True:
        try:
            message = next(buffer)
        except StopIteration:
            return
        except _UNREADABLE:
            raise UpstreamStreamBroken(
                f"Deployment '{deployment_id}' sent a corrupt event-stream frame."
            ) from None
        headers = message.headers
        kind = str(headers.get(":message-type", ""))
        if kind == "exception":
            name = str(headers.get(":exception-type", ""))
        elif kind == "error":
            name = str(headers.get(":error-code", ""))
        else:
            name = str(headers.get(":event-type", ""))
        yield StreamMessage(kind, name, bytes(message.payload))
