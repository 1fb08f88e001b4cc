"""An upstream's answer as a `ChatStream`, shared by every remote provider: events come from a
provider's own parser, usage is reported once however the answer ends, and closing it (the
client left) closes the upstream connection."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from modelyard.errors import ModelyardError
from modelyard.protocol.generation import ChatEvent, Usage
from modelyard.streams import close_stream

# How long to wait for a stream's body to end after its last event before giving up on reuse.
DRAIN_TIMEOUT_S = 1.0


class RemoteChatStream:
    """An upstream answer as events; closing it (client gone) closes the upstream connection."""

    def __init__(self) -> None:
        self.events: AsyncIterator[ChatEvent] | None = None
        self._cancelled = False
        self._usage: Usage | None = None
        self._usage_callback: Callable[[Usage], None] | None = None

    @property
    def prompt_tokens(self) -> int:
        return 0

    def cancel(self) -> None:
        self._cancelled = True

    def report(self, usage: Usage) -> None:
        if self._usage is None:
            self._usage = usage
            if self._usage_callback is not None:
                self._usage_callback(usage)

    def on_usage(self, callback: Callable[[Usage], None]) -> None:
        self._usage_callback = callback
        if self._usage is not None:
            callback(self._usage)

    async def __aiter__(self) -> AsyncIterator[ChatEvent]:
        assert self.events is not None
        try:
            async for event in self.events:
                if self._cancelled:
                    return
                yield event
        finally:
            await close_stream(self.events)


async def drain(lines: AsyncIterator[bytes]) -> None:
    """Read the body's end after the stream's last event, so the connection goes back to the
    pool instead of being closed (with TLS, a new handshake for every stream)."""
    with contextlib.suppress(TimeoutError, ModelyardError):
        async with asyncio.timeout(DRAIN_TIMEOUT_S):
            async for _ in lines:
                pass
