"""One request's events from an engine process, as the serving layer consumes them.

The engine process (see `engine_process.py`) hands each event of a request to its stream; the
stream turns them into `ChatEvent`s, keeps the count of what was evaluated and generated, and
reports usage exactly once, however the request ends: finished, cancelled, failed, or lost with
the process.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from modelyard.errors import ModelyardError
from modelyard.protocol.generation import (
    ChatEvent,
    ChoiceFinished,
    Failed,
    Finished,
    TextDelta,
    Usage,
)


class Canceller(Protocol):
    def cancel(self, request_id: int) -> None: ...


class EngineStream:
    def __init__(self, request_id: int, engine: Canceller) -> None:
        self.request_id = request_id
        self._engine = engine
        self._events: asyncio.Queue[ChatEvent] = asyncio.Queue()
        self.admission: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._prompt_tokens = 0
        self.started = False
        self.generated = 0
        self.done = False
        self.cancelled = False
        self._usage: Usage | None = None
        self._usage_callback: Callable[[Usage], None] | None = None
        # When it was sent, admitted and given a slot (ns since the epoch), for traces; told
        # once when the wait for a slot ends (a slot, or the end without one).
        self.sent_ns = time.time_ns()
        self.admitted_ns = 0
        self.started_ns = 0
        self.on_started: Callable[[], None] | None = None

    # -- from the engine process ---------------------------------------------------------------

    def admitted(self, prompt_tokens: int) -> None:
        self.admitted_ns = time.time_ns()
        self._prompt_tokens = prompt_tokens
        if not self.admission.done():
            self.admission.set_result(prompt_tokens)

    def slot_taken(self) -> None:
        self.started = True
        self.started_ns = time.time_ns()
        self._waited()

    def _waited(self) -> None:
        if self.on_started is not None:
            told, self.on_started = self.on_started, None
            told()

    def rejected(self, error: ModelyardError) -> None:
        self.done = True
        if not self.admission.done():
            self.admission.set_exception(error)

    def text(self, choice: int, text: str, tokens: int) -> None:
        self.generated += tokens
        if text:
            self._events.put_nowait(TextDelta(choice, text))

    def choice_finished(self, choice: int, finish_reason: str) -> None:
        self._events.put_nowait(ChoiceFinished(choice, finish_reason))

    def finished(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int) -> None:
        usage = Usage(prompt_tokens, completion_tokens, cached_prompt_tokens=cached_tokens)
        self._end(usage, Finished(usage))

    def failed(self, error: ModelyardError, prompt_tokens: int, completion_tokens: int) -> None:
        self._end(Usage(prompt_tokens, completion_tokens), Failed(error))

    def lost(self, error: ModelyardError) -> None:
        """The process died: bill what was generated, and its prompt only if generation began."""
        prompt = self._prompt_tokens if self.generated else 0
        if not self.admission.done():
            self.done = True
            self.admission.set_exception(error)
            return
        self._end(Usage(prompt, self.generated), Failed(error))

    def _end(self, usage: Usage, last: ChatEvent) -> None:
        if self.done:
            return
        self.done = True
        self._usage = usage
        self._waited()
        if self._usage_callback is not None:
            self._usage_callback(usage)
        self._events.put_nowait(last)

    # -- the ChatStream protocol ----------------------------------------------------------------

    @property
    def prompt_tokens(self) -> int:
        return self._prompt_tokens

    async def __aiter__(self) -> AsyncIterator[ChatEvent]:
        while True:
            event = await self._events.get()
            yield event
            if isinstance(event, Finished | Failed):
                return

    def cancel(self) -> None:
        if not self.done and not self.cancelled:
            self.cancelled = True
            self._engine.cancel(self.request_id)

    def on_usage(self, callback: Callable[[Usage], None]) -> None:
        self._usage_callback = callback
        if self._usage is not None:
            callback(self._usage)
