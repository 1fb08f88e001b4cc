"""Tool calls out of a local model's text: `ToolCallStream` wraps a local generation when tools
are in play, turning each choice's text into either content or complete tool calls (the engine
only ever produces text; the grammar guarantees its calls parse).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from modelyard.protocol.generation import ChatEvent, ChoiceFinished, TextDelta, ToolCallDelta, Usage
from modelyard.providers.base import ChatStream
from modelyard.providers.llamacpp.tool_format import ToolCallExtractor


class ToolCallStream:
    """Content or tool calls, per choice, from a local stream of text."""

    def __init__(self, inner: ChatStream, forced_name: str | None = None) -> None:
        self._inner = inner
        # The one tool a request forces: its calls are returned even when cut short.
        self._forced_name = forced_name

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
                text, calls = extractor.finish(
                    cut_short=event.finish_reason == "length", forced_name=self._forced_name
                )
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
