"""Event streams of local generations, as the serving layer consumes them.

`LocalChatStream` carries events from the worker thread to the event loop. `ToolCallStream`
wraps it when tools are in play, turning each choice's text into either content or complete
tool calls (the worker only ever sees text).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
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
        self._usage: Usage | None = None
        self._usage_callback: Callable[[Usage], None] | None = None

    @property
    def prompt_tokens(self) -> int:
        return self._prompt_tokens

    def emit(self, event: ChatEvent) -> None:
        """Called on the worker thread; a cancelled job still ends with Finished(usage)."""
        # After the loop has closed nobody is listening any more.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._deliver, event)

    def _deliver(self, event: ChatEvent) -> None:
        if isinstance(event, Finished):
            self._usage = event.usage
            if self._usage_callback is not None:
                self._usage_callback(event.usage)
        self._events.put_nowait(event)

    def on_usage(self, callback: Callable[[Usage], None]) -> None:
        self._usage_callback = callback
        if self._usage is not None:
            callback(self._usage)

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

    def on_usage(self, callback: Callable[[Usage], None]) -> None:
        self._inner.on_usage(callback)

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
