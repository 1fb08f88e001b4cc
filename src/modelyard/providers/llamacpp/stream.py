"""Event streams of local generations, as the serving layer consumes them.

`LocalChatStream` carries events from the worker thread to the event loop. `ToolCallStream`
wraps it when tools are in play, turning each choice's text into either content or complete
tool calls (the worker only ever sees text).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from modelyard.providers.base import (
    ChatEvent,
    ChatStream,
    ChoiceFinished,
    Failed,
    Finished,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from modelyard.providers.llamacpp.tool_format import ToolCallExtractor
from modelyard.providers.llamacpp.worker import GenerationJob


class LocalChatStream:
    """Events of one local generation, delivered from the worker thread to the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, prompt_tokens: int) -> None:
        self._loop = loop
        self._events: asyncio.Queue[ChatEvent] = asyncio.Queue()
        self._prompt_tokens = prompt_tokens
        self.job: GenerationJob | None = None
        # Set by the worker even if nobody reads the stream any more (client gone).
        self.usage: Usage | None = None

    @property
    def prompt_tokens(self) -> int:
        return self._prompt_tokens

    def emit(self, event: ChatEvent) -> None:
        """Called on the worker thread."""
        if isinstance(event, Finished):
            self.usage = event.usage
        # After the loop has closed nobody is listening; the usage above is all that matters.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._events.put_nowait, event)

    async def __aiter__(self) -> Any:
        while True:
            event = await self._events.get()
            yield event
            if isinstance(event, Finished | Failed):
                return

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancelled.set()


class ToolCallStream:
    """Content or tool calls, per choice, from a local stream of text."""

    def __init__(self, inner: ChatStream) -> None:
        self._inner = inner

    @property
    def prompt_tokens(self) -> int:
        return self._inner.prompt_tokens

    def cancel(self) -> None:
        self._inner.cancel()

    async def __aiter__(self) -> AsyncIterator[ChatEvent]:
        extractors: dict[int, ToolCallExtractor] = {}
        call_counts: dict[int, int] = {}
        async for event in self._inner:
            if isinstance(event, TextDelta):
                extractor = extractors.setdefault(event.choice, ToolCallExtractor())
                text, calls = extractor.push(event.text)
                for item in self._events(event.choice, text, calls, call_counts):
                    yield item
            elif isinstance(event, ChoiceFinished):
                extractor = extractors.setdefault(event.choice, ToolCallExtractor())
                text, calls = extractor.finish()
                for item in self._events(event.choice, text, calls, call_counts):
                    yield item
                called = call_counts.get(event.choice, 0) > 0
                reason = (
                    "tool_calls"
                    if called and event.finish_reason == "stop"
                    else event.finish_reason
                )
                yield ChoiceFinished(event.choice, reason)
            else:
                yield event

    @staticmethod
    def _events(
        choice: int, text: str, calls: list[Any], call_counts: dict[int, int]
    ) -> list[ChatEvent]:
        events: list[ChatEvent] = [TextDelta(choice, text)] if text else []
        for call in calls:
            index = call_counts.get(choice, 0)
            call_counts[choice] = index + 1
            events.append(ToolCallDelta(choice, index, call.id, call.name, call.arguments))
        return events
