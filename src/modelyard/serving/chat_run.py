"""One admitted chat generation, shaped as a chat.completion or as chunks, and checked against
its output contract before anything leaves the gateway.

Validation is provider-agnostic: every tool call must name a declared tool with arguments that
match its parameters, and JSON content must match the response schema. A non-streamed answer
that fails gets one more generation, then a 502 `invalid_model_output`; a streamed one gets the
error in-band (its content has already left). Outputs cut by `max_tokens` are not checked:
`finish_reason: length` already tells the client they are incomplete.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable
from dataclasses import dataclass, field

from modelyard.catalog.cards import Deployment, ModelCard
from modelyard.errors import InvalidModelOutput, ModelyardError, UpstreamStreamBroken
from modelyard.protocol import chat_response
from modelyard.protocol.chat import ChatCompletionRequest
from modelyard.protocol.chat_response import ChoiceResult, JsonObject
from modelyard.protocol.generation import (
    ChatEvent,
    ChoiceFinished,
    Failed,
    Finished,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from modelyard.providers.base import ChatStream
from modelyard.serving.attempts import Attempts, OpenedAttempt
from modelyard.serving.lifecycle import ClientLeft, Completed, Ending, RequestLifecycle, ending_for
from modelyard.streams import close_stream
from modelyard.structured.contract import OutputContract
from modelyard.structured.validation import validate_content, validate_tool_call

REPAIR_ATTEMPTS = 1


@dataclass(frozen=True)
class ChatOutcome:
    """A whole, validated generation: its choices, exact usage and the model that answered."""

    choices: list[ChoiceResult]
    usage: Usage
    model: str


@dataclass
class ChatRun:
    completion_id: str
    created: int
    request: ChatCompletionRequest
    contract: OutputContract
    # The plan's attempts, and the one whose output this answer is.
    attempts: Attempts = field(repr=False)
    current: OpenedAttempt = field(repr=False)
    # Attempts, ending, content and usage record of this request.
    lifecycle: RequestLifecycle = field(repr=False)

    @property
    def card(self) -> ModelCard:
        return self.current.card

    @property
    def deployment(self) -> Deployment:
        return self.current.deployment

    @property
    def stream(self) -> ChatStream:
        return self.current.stream

    def headers(self) -> dict[str, str]:
        """The headers every answer carries (deployment, route, attempts, rate limits)."""
        return self.lifecycle.response_headers()

    def cost_header(self) -> dict[str, str]:
        """What the answer cost, for a non-streamed answer once it is complete."""
        return self.lifecycle.cost_header()

    def abandon(self) -> None:
        """The client left: stop generating; what was generated is still counted."""
        self.lifecycle.mark_client_left()
        self.stream.cancel()

    async def complete(self) -> JsonObject:
        """Wait for the whole generation and shape it as one chat.completion."""
        outcome = await self.outcome()
        return chat_response.completion(
            self.completion_id, self.created, outcome.model, outcome.choices, outcome.usage
        )

    async def outcome(self) -> ChatOutcome:
        """Wait for the whole generation, checked against its contract: what every surface
        shapes its non-streamed answer from."""
        try:
            outcome = await self._outcome()
        except BaseException as exc:
            self.lifecycle.end(ending_for(exc))
            raise
        self.lifecycle.end(Completed())
        return outcome

    async def _outcome(self) -> ChatOutcome:
        """Nothing has reached the client yet, so an output that breaks its contract is
        generated once more on the same deployment, then the next candidate is tried; a
        retryable failure goes to the next candidate at once."""
        repairs = 0
        while True:
            try:
                choices, usage = await self._collect()
                for choice in choices:
                    self._validate_choice(choice)
            except InvalidModelOutput as error:
                self.lifecycle.attempt_failed(self.current.attempt, error, ended=False)
                if repairs < REPAIR_ATTEMPTS:
                    repairs += 1
                    self.current = await self._replaced(self.attempts.again(self.current))
                elif self.attempts.remaining():
                    repairs = 0
                    self.current = await self.attempts.open_next(after=error)
                else:
                    raise
                continue
            except ModelyardError as error:
                self.lifecycle.attempt_failed(self.current.attempt, error, ended=False)
                if not error.retryable:
                    raise
                repairs = 0
                self.current = await self._replaced(self.attempts.open_next(after=error))
                continue
            self._keep([(choice.text, choice.tool_calls) for choice in choices])
            return ChatOutcome(choices, usage, self.card.id)

    async def _replaced(self, opening: Awaitable[OpenedAttempt]) -> OpenedAttempt:
        """The next attempt, once the current one's stream is closed."""
        previous = self.current.deployment.id
        self.current.stream.cancel()
        opened = await opening
        if opened.deployment.id != previous:
            self.lifecycle.route_reason += (
                f"; {previous} failed, answered by {opened.deployment.id}"
            )
        return opened

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
                    # The answer's, not those of an attempt it replaced (a repair, a fallback).
                    self.lifecycle.finish_reasons[:] = finish_reasons
                    choices = [
                        ChoiceResult("".join(texts[i]), tuple(calls[i]), finish_reasons[i])
                        for i in range(count)
                    ]
                    return choices, event.usage
                elif isinstance(event, Failed):
                    raise event.error
        finally:
            await close_stream(events)
        raise UpstreamStreamBroken("The generation ended without a result.")

    def _validate_choice(self, choice: ChoiceResult) -> None:
        if choice.finish_reason == "length":
            return
        for call in choice.tool_calls:
            validate_tool_call(call.name, call.arguments, self.contract)
        if not choice.tool_calls:
            validate_content(choice.text, self.contract)

    async def events(self) -> AsyncGenerator[ChatEvent, None]:
        """The generation as it happens, each tool call and each finished choice checked
        against the contract: what every surface shapes its stream from. Ends with `Finished`,
        or raises the failure (the surface sends it in-band); cancels generation if abandoned."""
        texts: dict[int, list[str]] = {}
        called: dict[int, list[ToolCallDelta]] = {}
        count = self.request.choice_count()
        ending: Ending = ClientLeft()  # unless the stream finishes or fails
        events = aiter(self.stream)
        try:
            async for event in events:
                if isinstance(event, TextDelta):
                    texts.setdefault(event.choice, []).append(event.text)
                elif isinstance(event, ToolCallDelta):
                    validate_tool_call(event.name, event.arguments, self.contract)
                    called.setdefault(event.choice, []).append(event)
                elif isinstance(event, ChoiceFinished):
                    self.lifecycle.finish_reasons.append(event.finish_reason)
                    if event.finish_reason != "length" and event.choice not in called:
                        validate_content("".join(texts.get(event.choice, [])), self.contract)
                elif isinstance(event, Finished):
                    ending = Completed()
                    self._keep(
                        [
                            ("".join(texts.get(i, [])), tuple(called.get(i, [])))
                            for i in range(count)
                        ]
                    )
                    yield event
                    return
                elif isinstance(event, Failed):
                    self.lifecycle.attempt_failed(self.current.attempt, event.error, ended=False)
                    raise event.error
                yield event
        except BaseException as exc:
            ending = ending_for(exc)
            raise
        finally:
            # Ended first, so that usage reported by cancelling already knows the client left.
            self.lifecycle.end(ending)
            self.stream.cancel()
            await close_stream(events)

    async def chunks(self) -> AsyncIterator[JsonObject]:
        """The stream as chat.completion.chunk objects."""
        ids = (self.completion_id, self.created, self.card.id)
        started: set[int] = set()
        held_finish: ChoiceFinished | None = None
        last_choice = self.request.choice_count() - 1

        def opening(choice: int, delta: JsonObject) -> JsonObject:
            if choice not in started:
                started.add(choice)
                return {"role": "assistant", **delta}
            return delta

        events = self.events()
        try:
            async for event in events:
                if isinstance(event, TextDelta):
                    delta = opening(event.choice, {"content": event.text})
                    yield chat_response.chunk(*ids, event.choice, delta)
                elif isinstance(event, ToolCallDelta):
                    call = chat_response.tool_call_object(event, with_index=True)
                    delta = opening(event.choice, {"content": None, "tool_calls": [call]})
                    yield chat_response.chunk(*ids, event.choice, delta)
                elif isinstance(event, ChoiceFinished):
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
                    for chunk in self._closing_chunks(held_finish, event.usage):
                        yield chunk
        finally:
            await events.aclose()

    def _keep(self, outputs: list[tuple[str, tuple[ToolCallDelta, ...]]]) -> None:
        if not self.lifecycle.keeps_content:
            return
        self.lifecycle.keep_content(
            [message.model_dump(mode="json") for message in self.request.messages],
            [
                {
                    "content": text,
                    "tool_calls": [{"name": c.name, "arguments": c.arguments} for c in calls],
                }
                for text, calls in outputs
            ],
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
