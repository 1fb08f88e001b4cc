"""Bedrock's answers as provider events: a Converse answer, and the events of a ConverseStream.

Tool calls are emitted whole (`toolUse.input` fragments are assembled until their block stops).
The answer tool of a structured-output request (see `request.py`) is not a tool call: its input
is the answer's text, streamed as it arrives; text outside it is then not part of the answer
(kept only if the model never called it). Usage: Bedrock's `inputTokens` leaves out the tokens
read from and written to the prompt cache, so the prompt is their sum, and the cache reads are
the cached part.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from modelyard.errors import ModelyardError, UpstreamFailed, UpstreamStreamBroken
from modelyard.protocol.generation import (
    ChatEvent,
    ChoiceFinished,
    Failed,
    Finished,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from modelyard.providers.bedrock.errors import stream_exception
from modelyard.providers.bedrock.eventstream import stream_messages
from modelyard.providers.remote_stream import drain

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}
# The model's output could not be read by Bedrock itself: a failed attempt, not an answer.
MALFORMED = frozenset({"malformed_model_output", "malformed_tool_use"})


@dataclass(frozen=True)
class Reading:
    """What reading one answer needs to know about its request."""

    deployment_id: str
    answer_tool: str | None
    prompt_estimate: int


def finish_reason(stop_reason: str, called_tools: bool, deployment_id: str) -> str:
    if stop_reason in MALFORMED:
        raise UpstreamFailed(f"Deployment '{deployment_id}' produced unreadable output.")
    reason = FINISH_REASONS.get(stop_reason, "stop")
    # `tool_use` that only called the answer tool is a finished answer.
    return "stop" if reason == "tool_calls" and not called_tools else reason


def converse_usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    fresh, read, written, output = (
        _count(raw, name)
        for name in ("inputTokens", "cacheReadInputTokens", "cacheWriteInputTokens", "outputTokens")
    )
    return Usage(fresh + read + written, output, cached_prompt_tokens=read)


def _count(raw: dict[str, Any], name: str) -> int:
    value = raw.get(name)
    return value if isinstance(value, int) and value > 0 else 0


def answer_events(payload: Any, reading: Reading) -> tuple[list[ChatEvent], Usage | None]:
    """A Converse answer's events (one choice) and its reported usage."""
    output = payload.get("output") if isinstance(payload, dict) else None
    message = output.get("message") if isinstance(output, dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, list):
        raise UpstreamFailed(f"Deployment '{reading.deployment_id}' answered in an unknown shape.")
    texts: list[str] = []
    answers: list[str] = []
    calls: list[ToolCallDelta] = []
    for block in content:
        if not isinstance(block, dict):
            continue
        text = block.get("text")
        use = block.get("toolUse")
        if isinstance(text, str) and text:
            texts.append(text)
        elif isinstance(use, dict):
            arguments = orjson.dumps(use.get("input") or {}).decode()
            name = str(use.get("name", ""))
            if name == reading.answer_tool:
                answers.append(arguments)
            else:
                calls.append(
                    ToolCallDelta(0, len(calls), str(use.get("toolUseId", "")), name, arguments)
                )
        # reasoning, citations and other blocks are not part of the answer
    events: list[ChatEvent] = []
    answer = "".join(answers if answers else texts)
    if answer:
        events.append(TextDelta(0, answer))
    events.extend(calls)
    stop = str(payload.get("stopReason") or "end_turn")
    events.append(ChoiceFinished(0, finish_reason(stop, bool(calls), reading.deployment_id)))
    return events, converse_usage(payload.get("usage"))


async def events_from_answer(
    payload: Any, reading: Reading, report: Callable[[Usage], None]
) -> AsyncIterator[ChatEvent]:
    try:
        events, usage = answer_events(payload, reading)
    except ModelyardError as exc:
        # A failed answer may still say what it consumed: billed as reported.
        reported = converse_usage(payload.get("usage")) if isinstance(payload, dict) else None
        report(reported or Usage(reading.prompt_estimate, 0, estimated=True))
        yield Failed(exc)
        return
    if usage is None:
        generated = sum(len(e.text) for e in events if isinstance(e, TextDelta)) + sum(
            len(e.arguments) for e in events if isinstance(e, ToolCallDelta)
        )
        usage = Usage(reading.prompt_estimate, (generated + 3) // 4, estimated=True)
    for event in events:
        yield event
    report(usage)
    yield Finished(usage)


@dataclass
class _ToolUse:
    id: str
    name: str
    fragments: list[str] = field(default_factory=list)


class StreamReader:
    """ConverseStream events, one at a time, as provider events."""

    def __init__(self, reading: Reading) -> None:
        self.reading = reading
        self.usage: Usage | None = None
        # Set when the message stopped on unreadable output: raised once the usage is known.
        self.failure: ModelyardError | None = None
        self._uses: dict[int, _ToolUse] = {}
        self._calls = 0
        self._held: list[str] = []  # text, while the answer tool may still be called
        self._answered = False
        self._stopped = False
        self._characters = 0

    @property
    def done(self) -> bool:
        return self._stopped and self.usage is not None

    def estimate(self) -> Usage:
        """What arrived, counted at about 4 characters a token (the upstream never said)."""
        return Usage(self.reading.prompt_estimate, (self._characters + 3) // 4, estimated=True)

    def take(self, event_type: str, payload: dict[str, Any]) -> list[ChatEvent]:
        index = payload.get("contentBlockIndex", 0)
        if event_type == "contentBlockStart":
            start = payload.get("start")
            use = start.get("toolUse") if isinstance(start, dict) else None
            if isinstance(use, dict):
                self._uses[index] = _ToolUse(
                    str(use.get("toolUseId", "")), str(use.get("name", ""))
                )
        elif event_type == "contentBlockDelta":
            return self._delta(index, payload.get("delta"))
        elif event_type == "contentBlockStop":
            use = self._uses.pop(index, None)
            if use is not None and use.name != self.reading.answer_tool:
                self._calls += 1
                arguments = "".join(use.fragments) or "{}"
                return [ToolCallDelta(0, self._calls - 1, use.id, use.name, arguments)]
            if use is not None and not use.fragments:
                self._answered = True
                return [TextDelta(0, "{}")]  # the answer tool called with no input at all
        elif event_type == "messageStop":
            self._stopped = True
            try:
                stop = str(payload.get("stopReason") or "end_turn")
                reason = finish_reason(stop, self._calls > 0, self.reading.deployment_id)
            except ModelyardError as exc:
                self.failure = exc
                return []
            events: list[ChatEvent] = []
            if self._held and not self._answered:
                events.append(TextDelta(0, "".join(self._held)))
            events.append(ChoiceFinished(0, reason))
            return events
        elif event_type == "metadata":
            self.usage = converse_usage(payload.get("usage")) or self.estimate()
        return []  # messageStart, and events this reader does not know

    def _delta(self, index: Any, delta: Any) -> list[ChatEvent]:
        if not isinstance(delta, dict):
            return []
        text = delta.get("text")
        if isinstance(text, str) and text:
            self._characters += len(text)
            if self.reading.answer_tool is None:
                return [TextDelta(0, text)]
            self._held.append(text)
            return []
        tool = delta.get("toolUse")
        fragment = tool.get("input") if isinstance(tool, dict) else None
        if not isinstance(fragment, str) or not fragment:
            return []  # reasoning, citations: not part of the answer
        use = self._uses.get(index)
        if use is None:
            raise UpstreamStreamBroken(
                f"Deployment '{self.reading.deployment_id}' sent tool input outside a tool use."
            )
        self._characters += len(fragment)
        use.fragments.append(fragment)
        if use.name == self.reading.answer_tool:
            self._answered = True
            return [TextDelta(0, fragment)]
        return []


async def events_from_stream(
    first: bytes | None,
    chunks: AsyncGenerator[bytes, None],
    reading: Reading,
    report: Callable[[Usage], None],
) -> AsyncIterator[ChatEvent]:
    """ConverseStream's body as events; a stream that ends before both `messageStop` and
    `metadata` (the usage) is a failure, never success."""
    reader = StreamReader(reading)
    deployment_id = reading.deployment_id
    messages = stream_messages(first, chunks, deployment_id)
    try:
        async for message in messages:
            if message.kind == "exception":
                raise stream_exception(deployment_id, message.name, message.payload)
            if message.kind != "event":
                raise UpstreamFailed(f"Deployment '{deployment_id}' failed mid-stream.")
            try:
                payload = orjson.loads(message.payload)
            except orjson.JSONDecodeError:
                payload = None
            if not isinstance(payload, dict):
                raise UpstreamStreamBroken(f"Deployment '{deployment_id}' sent a malformed event.")
            for event in reader.take(message.name, payload):
                yield event
            if reader.done:
                await drain(chunks)
                if reader.failure is not None:
                    raise reader.failure
                assert reader.usage is not None
                report(reader.usage)
                yield Finished(reader.usage)
                return
        raise UpstreamStreamBroken(
            f"The stream from deployment '{deployment_id}' ended before its usage."
        )
    except ModelyardError as exc:  # includes the transport's timeouts and broken streams
        yield Failed(exc)
    finally:
        # Cut, failed or abandoned: bill what arrived, and close the upstream connection now.
        report(reader.usage or reader.estimate())
        await messages.aclose()
        await chunks.aclose()
