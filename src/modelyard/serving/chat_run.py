"""One admitted chat generation, shaped as a chat.completion or as chunks, and checked against
its output contract before anything leaves the gateway.

Validation is provider-agnostic: every tool call must name a declared tool with arguments that
match its parameters, and JSON content must match the response schema. A non-streamed answer
that fails gets one more generation, then a 502 `invalid_model_output`; a streamed one gets the
error in-band (its content has already left). Outputs cut by `max_tokens` are not checked:
`finish_reason: length` already tells the client they are incomplete.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from modelyard.catalog.cards import Deployment, ModelCard
from modelyard.errors import InvalidModelOutput, ModelyardError, NotReady
from modelyard.observability.usage_meter import UsageMeter
from modelyard.protocol import chat_response
from modelyard.protocol.chat import ChatCompletionRequest
from modelyard.protocol.chat_response import ChoiceResult, JsonObject
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
from modelyard.serving.admission import Admission
from modelyard.structured.contract import OutputContract
from modelyard.structured.validation import validate_content, validate_tool_call

REPAIR_ATTEMPTS = 1


@dataclass
class ChatRun:
    completion_id: str
    created: int
    card: ModelCard
    deployment: Deployment
    route_reason: str
    request: ChatCompletionRequest
    contract: OutputContract
    stream: ChatStream
    # Opens a fresh generation of the same request, for the repair attempt.
    reopen: Callable[[], Awaitable[ChatStream]] = field(repr=False)
    meter: UsageMeter = field(repr=False)
    # Budgets, limits and the usage record of this request.
    admission: Admission = field(repr=False)
    # Set when the client went away before the answer was complete.
    client_left: bool = False
    # Receives the finished outputs, only for projects that opted in to content logging.
    keep_content: Callable[[list[JsonObject]], None] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._watch_usage(self.stream)

    def _watch_usage(self, stream: ChatStream) -> None:
        """Every generation is counted once, however it ends (a repair attempt is another)."""

        def record(usage: Usage) -> None:
            self.meter.record(self.deployment.id, self.card.id, usage, self.client_left)
            self.admission.usage_reported(usage)

        self.admission.generation_opened()
        stream.on_usage(record)

    def abandon(self) -> None:
        """The client left: stop generating; what was generated is still counted."""
        self.client_left = True
        self.stream.cancel()

    async def complete(self) -> JsonObject:
        """Wait for the whole generation and shape it as one chat.completion."""
        status = 500
        try:
            completion = await self._complete()
            status = 200
            return completion
        except ModelyardError as error:
            status = error.status
            raise
        except asyncio.CancelledError:
            status = 499  # the client left (its watcher cancelled this task)
            raise
        finally:
            self.admission.over(status, self.client_left)

    async def _complete(self) -> JsonObject:
        for attempt in range(REPAIR_ATTEMPTS + 1):
            choices, usage = await self._collect()
            try:
                for choice in choices:
                    self._validate_choice(choice)
            except InvalidModelOutput:
                if attempt == REPAIR_ATTEMPTS:
                    raise
                self.stream = await self.reopen()
                self._watch_usage(self.stream)
                continue
            self._keep([(choice.text, choice.tool_calls) for choice in choices])
            return chat_response.completion(
                self.completion_id, self.created, self.card.id, choices, usage
            )
        raise AssertionError("unreachable")

    async def _collect(self) -> tuple[list[ChoiceResult], Usage]:
        count = self.request.choice_count()
        texts: list[list[str]] = [[] for _ in range(count)]
        calls: list[list[ToolCallDelta]] = [[] for _ in range(count)]
        finish_reasons = ["stop"] * count
        events = aiter(self.stream)
        try:
            async for event in events:
                if isinstance(event, TextDelta):
                    texts[event.choice].append(event.text)
                elif isinstance(event, ToolCallDelta):
                    calls[event.choice].append(event)
                elif isinstance(event, ChoiceFinished):
                    finish_reasons[event.choice] = event.finish_reason
                elif isinstance(event, Finished):
                    choices = [
                        ChoiceResult("".join(texts[i]), tuple(calls[i]), finish_reasons[i])
                        for i in range(count)
                    ]
                    return choices, event.usage
                elif isinstance(event, Failed):
                    raise event.error
        finally:
            await _aclose(events)
        raise NotReady("the generation ended without a result")

    def _validate_choice(self, choice: ChoiceResult) -> None:
        if choice.finish_reason == "length":
            return
        for call in choice.tool_calls:
            validate_tool_call(call.name, call.arguments, self.contract)
        if not choice.tool_calls:
            validate_content(choice.text, self.contract)

    async def chunks(self) -> AsyncIterator[JsonObject]:
        """The stream as chat.completion.chunk objects; cancels generation if abandoned."""
        ids = (self.completion_id, self.created, self.card.id)
        started: set[int] = set()
        texts: dict[int, list[str]] = {}
        called: dict[int, list[ToolCallDelta]] = {}
        held_finish: ChoiceFinished | None = None
        last_choice = self.request.choice_count() - 1

        def opening(choice: int, delta: JsonObject) -> JsonObject:
            if choice not in started:
                started.add(choice)
                return {"role": "assistant", **delta}
            return delta

        finished = False
        status = 499
        events = aiter(self.stream)
        try:
            async for event in events:
                if isinstance(event, TextDelta):
                    texts.setdefault(event.choice, []).append(event.text)
                    delta = opening(event.choice, {"content": event.text})
                    yield chat_response.chunk(*ids, event.choice, delta)
                elif isinstance(event, ToolCallDelta):
                    validate_tool_call(event.name, event.arguments, self.contract)
                    called.setdefault(event.choice, []).append(event)
                    call = chat_response.tool_call_object(event, with_index=True)
                    delta = opening(event.choice, {"content": None, "tool_calls": [call]})
                    yield chat_response.chunk(*ids, event.choice, delta)
                elif isinstance(event, ChoiceFinished):
                    if event.finish_reason != "length" and event.choice not in called:
                        validate_content("".join(texts.get(event.choice, [])), self.contract)
                    if event.choice not in started:
                        yield chat_response.chunk(
                            *ids, event.choice, opening(event.choice, {"content": ""})
                        )
                    if event.choice == last_choice:
                        # Usage rides on the last chunk (Mistral and Azure never ask for it).
                        held_finish = event
                    else:
                        yield chat_response.chunk(*ids, event.choice, {}, event.finish_reason)
                elif isinstance(event, Finished):
                    finished = True
                    status = 200
                    self._keep(
                        [
                            ("".join(texts.get(i, [])), tuple(called.get(i, [])))
                            for i in range(last_choice + 1)
                        ]
                    )
                    for chunk in self._closing_chunks(held_finish, event.usage):
                        yield chunk
                    return
                elif isinstance(event, Failed):
                    raise event.error
        except ModelyardError as error:
            status = error.status
            raise
        except Exception:
            status = 500  # a bug, not a client that left
            raise
        finally:
            if not finished and status == 499:
                self.client_left = True
            self.stream.cancel()
            await _aclose(events)
            self.admission.over(status, self.client_left)

    def _keep(self, outputs: list[tuple[str, tuple[ToolCallDelta, ...]]]) -> None:
        if self.keep_content is None:
            return
        self.keep_content(
            [
                {
                    "content": text,
                    "tool_calls": [{"name": c.name, "arguments": c.arguments} for c in calls],
                }
                for text, calls in outputs
            ]
        )

    def _closing_chunks(self, finish: ChoiceFinished | None, usage: Usage) -> list[JsonObject]:
        ids = (self.completion_id, self.created, self.card.id)
        index = finish.choice if finish else 0
        reason = finish.finish_reason if finish else "stop"
        if self.request.wants_stream_usage():
            return [
                chat_response.chunk(*ids, index, {}, reason),
                chat_response.usage_chunk(*ids, usage),
            ]
        return [chat_response.chunk(*ids, index, {}, reason, usage=usage)]


async def _aclose(events: AsyncIterator[ChatEvent]) -> None:
    """Close a stream's iterator however iteration ended, so that abandoning an answer closes
    the upstream connection (or stops the local job) at once, not when it is collected."""
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        await aclose()
