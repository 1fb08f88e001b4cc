"""A streamed Anthropic message (SSE with `event:` lines) as provider events.

The stream is `message_start`, then per content block `content_block_start`, deltas and
`content_block_stop`, then `message_delta` (stop reason, cumulative usage) and `message_stop`;
`ping` may come anywhere, `event: error` ends it. Only `message_stop` ends it well: a stream cut
before it, or an event that is not JSON, is a failure, never a success. Text deltas pass on as
they come; a tool call's `input_json_delta` fragments are assembled and emitted as one complete
call; the JSON answer tool's fragments are the content and pass on as text. Usage is reported
once however the stream ends: exact when `message_delta` said it, otherwise the prompt from
`message_start` and an estimate of what arrived.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from modelyard.errors import ModelyardError, UpstreamStreamBroken
from modelyard.protocol.generation import (
    ChatEvent,
    ChoiceFinished,
    Failed,
    Finished,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from modelyard.providers.anthropic.errors import stream_error
from modelyard.providers.anthropic.reply import finish_reason, usage_from
from modelyard.providers.remote_stream import drain
from modelyard.streams import close_stream

# About four characters a token, as `estimate_text_tokens` counts.
CHARS_PER_TOKEN = 4


async def events_from_stream(
    first: bytes | None,
    lines: AsyncIterator[bytes],
    deployment_id: str,
    answer_tool: str | None,
    prompt_estimate: int,
    report: Callable[[Usage], None],
) -> AsyncIterator[ChatEvent]:
    reading = StreamReading(deployment_id, answer_tool)
    frames = SseFrames()

    async def all_lines() -> AsyncIterator[bytes]:
        if first is not None:
            yield first
        async for line in lines:
            yield line

    final: Usage | None = None
    try:
        async for line in all_lines():
            frame = frames.feed(line)
            if frame is None:
                continue
            for event in reading.read(*frame):
                yield event
            if reading.stopped:
                await drain(lines)
                final = reading.usage(prompt_estimate)
                report(final)
                yield Finished(final)
                return
        raise UpstreamStreamBroken(
            f"The stream from deployment '{deployment_id}' ended before message_stop."
        )
    except ModelyardError as exc:  # includes the transport's timeouts and broken streams
        yield Failed(exc)
    finally:
        if final is None:  # cut, failed or abandoned: what arrived
            report(reading.usage(prompt_estimate))
        await close_stream(lines)  # abandoned: the upstream connection closes now


class SseFrames:
    """Lines in, one `(event name, data)` per frame out, at the blank line that ends it."""

    def __init__(self) -> None:
        self._name = ""
        self._data: list[bytes] = []

    def feed(self, line: bytes) -> tuple[str, bytes] | None:
        if not line:
            # As SSE defines it, a frame without data lines dispatches nothing.
            frame = (self._name, b"\n".join(self._data)) if self._data else None
            self._name, self._data = "", []
            return frame
        if line.startswith(b"event:"):
            self._name = line[6:].strip().decode("utf-8", "replace")
        elif line.startswith(b"data:"):
            data = line[5:]
            self._data.append(data[1:] if data.startswith(b" ") else data)
        return None  # comments (":") and fields Anthropic does not send


@dataclass
class _Block:
    kind: str  # "text", "tool" (a call of the caller's tools), "answer" or "other"
    id: str = ""
    name: str = ""
    fragments: list[str] = field(default_factory=list)


class StreamReading:
    """The state of one stream: open blocks, stop reason, usage so far."""

    def __init__(self, deployment_id: str, answer_tool: str | None) -> None:
        self.deployment_id = deployment_id
        self.answer_tool = answer_tool
        self.started = False
        self.stopped = False
        self._blocks: dict[int, _Block] = {}
        self._calls = 0
        self._stop_reason: Any = None
        self._raw_usage: dict[str, Any] = {}
        self._usage_final = False
        self._characters = 0

    def read(self, name: str, data: bytes) -> list[ChatEvent]:
        if name == "ping":
            return []
        if name == "error":  # whatever its data, even not JSON
            raise stream_error(self.deployment_id, _json_object(data) or {})
        payload = _json_object(data)
        if payload is None:
            raise self._broken("sent a malformed event")
        kind = payload.get("type")
        if kind == "error":
            raise stream_error(self.deployment_id, payload)
        if kind == "message_start":
            message = payload.get("message")
            usage = message.get("usage") if isinstance(message, dict) else None
            if isinstance(usage, dict):
                self._raw_usage.update(usage)
            self.started = True
            return []
        if kind not in ("content_block_start", "content_block_delta", "content_block_stop"):
            return self._message_event(kind, payload)
        if not self.started:
            raise self._broken(f"sent {kind} before message_start")
        index = payload.get("index")
        if not isinstance(index, int):
            raise self._broken(f"sent {kind} without an index")
        if kind == "content_block_start":
            return self._start(index, payload.get("content_block"))
        block = self._blocks.get(index)
        if block is None:
            raise self._broken(f"sent {kind} for a block it never started")
        if kind == "content_block_delta":
            return self._delta(block, payload.get("delta"))
        del self._blocks[index]
        return self._call_of(block)

    def usage(self, prompt_estimate: int) -> Usage:
        generated = -(-self._characters // CHARS_PER_TOKEN)
        if not self.started:
            return Usage(prompt_estimate, generated, estimated=True)
        exact = usage_from(self._raw_usage)
        if self._usage_final:
            return exact
        # Cut before message_delta: the prompt is known, the output only by what arrived.
        return Usage(
            exact.prompt_tokens,
            max(exact.completion_tokens, generated),
            estimated=True,
            cached_prompt_tokens=exact.cached_prompt_tokens,
        )

    def _message_event(self, kind: Any, payload: dict[str, Any]) -> list[ChatEvent]:
        if kind == "message_delta":
            delta = payload.get("delta")
            if isinstance(delta, dict) and delta.get("stop_reason"):
                self._stop_reason = delta["stop_reason"]
            usage = payload.get("usage")
            if isinstance(usage, dict):  # cumulative: replaces what message_start said
                self._raw_usage.update({k: v for k, v in usage.items() if v is not None})
                self._usage_final = "output_tokens" in usage
            return []
        if kind == "message_stop":
            if not self.started:
                raise self._broken("sent message_stop before message_start")
            events: list[ChatEvent] = []
            for index in sorted(self._blocks):  # a call whose block_stop never came
                events += self._call_of(self._blocks.pop(index))
            self.stopped = True
            events.append(ChoiceFinished(0, finish_reason(self._stop_reason, self._calls > 0)))
            return events
        return []  # event types added after this client was written

    def _start(self, index: int, block: Any) -> list[ChatEvent]:
        block = block if isinstance(block, dict) else {}
        kind = block.get("type")
        if kind == "text":
            self._blocks[index] = _Block("text")
            return self._text(block.get("text"))
        if kind == "tool_use":
            name = str(block.get("name") or "")
            started = _Block(
                "answer" if name == self.answer_tool else "tool",
                str(block.get("id") or f"toolu_{index}"),
                name,
            )
            self._blocks[index] = started
            initial = block.get("input")
            # Anthropic starts a call with `input: {}` and streams it; a whole input here is
            # the call itself.
            if isinstance(initial, dict) and initial:
                return self._fragment(started, orjson.dumps(initial).decode())
            return []
        self._blocks[index] = _Block("other")  # thinking and server tools are never asked for
        return []

    def _delta(self, block: _Block, delta: Any) -> list[ChatEvent]:
        delta = delta if isinstance(delta, dict) else {}
        kind = delta.get("type")
        if kind == "text_delta" and block.kind == "text":
            return self._text(delta.get("text"))
        if kind == "input_json_delta" and block.kind in ("tool", "answer"):
            fragment = delta.get("partial_json")
            return self._fragment(block, fragment) if isinstance(fragment, str) else []
        return []

    def _text(self, text: Any) -> list[ChatEvent]:
        if not isinstance(text, str) or not text:
            return []
        self._characters += len(text)
        # Beside the JSON answer tool, text is not part of the answer (reply.content_events).
        return [TextDelta(0, text)] if self.answer_tool is None else []

    def _fragment(self, block: _Block, fragment: str) -> list[ChatEvent]:
        self._characters += len(fragment)
        if block.kind == "answer":
            return [TextDelta(0, fragment)] if fragment else []
        block.fragments.append(fragment)
        return []

    def _call_of(self, block: _Block) -> list[ChatEvent]:
        if block.kind != "tool":
            return []
        call = ToolCallDelta(0, self._calls, block.id, block.name, "".join(block.fragments) or "{}")
        self._calls += 1
        return [call]

    def _broken(self, what: str) -> UpstreamStreamBroken:
        return UpstreamStreamBroken(f"Deployment '{self.deployment_id}' {what}.")


def _json_object(data: bytes) -> dict[str, Any] | None:
    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return payload if isinstance(payload, dict) else None
