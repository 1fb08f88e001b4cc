"""A Cohere v2 chat stream as events.

Cohere sends SSE frames (`event: <type>` and `data: <json>` whose `type` repeats it): text in
`content-delta`, the tool plan in `tool-plan-delta`, each tool call as `tool-call-start`,
argument fragments in `tool-call-delta` and `tool-call-end`, then `message-end` with the finish
reason and usage. Each tool call is emitted once, complete, at its end. A stream that stops
before `message-end`, or sends a frame that is not a JSON event, is a failure, never success;
however it ends, usage is reported once (estimated from the deltas that arrived when Cohere
did not say).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable
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
from modelyard.providers.cohere.answer import (
    finish_reason,
    generation_failure,
    tool_call,
    usage_of,
)
from modelyard.providers.remote_stream import drain
from modelyard.streams import close_stream


@dataclass
class _Progress:
    """What the stream has said so far."""

    deltas: int = 0  # text, plan and argument fragments: about one token each
    calls: dict[int, dict[str, Any]] = field(default_factory=dict)  # by Cohere's event index
    emitted: int = 0
    reported: bool = False

    def finished_call(self, index: int) -> ToolCallDelta | None:
        call = self.calls.pop(index, None)
        if call is None:
            return None
        self.emitted += 1
        return tool_call(self.emitted - 1, call)


async def events_from_stream(
    first: bytes | None,
    lines: AsyncIterator[bytes],
    deployment_id: str,
    prompt_estimate: int,
    report: Callable[[Usage], None],
) -> AsyncIterator[ChatEvent]:
    progress = _Progress()
    source = _with_first(first, lines)
    try:
        async for line in source:
            if not line.startswith(b"data:"):
                continue  # `event:` lines (the data repeats the type), separators, comments
            event = _decode(line[5:].strip(), deployment_id)
            if event.get("type") == "message-end":
                delta = event.get("delta")
                delta = delta if isinstance(delta, dict) else {}
                usage = usage_of(delta.get("usage")) or _estimate(prompt_estimate, progress)
                progress.reported = True
                report(usage)
                reason = delta.get("finish_reason")
                failure = generation_failure(deployment_id, reason, delta.get("error"))
                if failure is not None:
                    raise failure
                for index in sorted(progress.calls):
                    ended = progress.finished_call(index)  # a call Cohere never ended
                    if ended is not None:
                        yield ended
                await drain(lines)
                yield ChoiceFinished(0, finish_reason(reason, progress.emitted > 0))
                yield Finished(usage)
                return
            for produced in _read(event, progress):
                yield produced
        raise UpstreamStreamBroken(
            f"The stream from deployment '{deployment_id}' ended before its message-end event."
        )
    except ModelyardError as exc:  # includes the transport's timeouts and broken streams
        yield Failed(exc)
    finally:
        if not progress.reported:  # cut, failed or abandoned: what arrived
            report(_estimate(prompt_estimate, progress))
        # Abandoned (the client left): the upstream connection closes now, not when collected.
        await source.aclose()
        await close_stream(lines)


def _read(event: dict[str, Any], progress: _Progress) -> list[ChatEvent]:
    kind = event.get("type")
    message = _message(event)
    if kind in ("content-start", "content-delta"):
        content = message.get("content")
        # Only `text`: thinking content carries its fragments under `thinking`.
        text = content.get("text") if isinstance(content, dict) else None
        if isinstance(text, str) and text:
            progress.deltas += 1
            return [TextDelta(0, text)]
    elif kind == "tool-plan-delta":
        plan = message.get("tool_plan")
        if isinstance(plan, str) and plan:
            progress.deltas += 1
            return [TextDelta(0, plan)]
    elif kind == "tool-call-start":
        call = message.get("tool_calls")
        if isinstance(call, dict):
            function = call.get("function")
            function = dict(function) if isinstance(function, dict) else {}
            if not isinstance(function.get("arguments"), str):
                function["arguments"] = ""
            progress.calls[_index(event)] = {"id": call.get("id"), "function": function}
            progress.deltas += 1
    elif kind == "tool-call-delta":
        call = progress.calls.get(_index(event))
        fragment = message.get("tool_calls")
        function = fragment.get("function") if isinstance(fragment, dict) else None
        arguments = function.get("arguments") if isinstance(function, dict) else None
        if call is not None and isinstance(arguments, str):
            call["function"]["arguments"] += arguments
            progress.deltas += 1
    elif kind == "tool-call-end":
        ended = progress.finished_call(_index(event))
        if ended is not None:
            return [ended]
    # message-start, content-end, citation-start/-end, debug: nothing to pass on
    return []


def _decode(data: bytes, deployment_id: str) -> dict[str, Any]:
    try:
        event = orjson.loads(data)
    except orjson.JSONDecodeError:
        event = None
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        raise UpstreamStreamBroken(f"Deployment '{deployment_id}' sent a malformed event.")
    return event


def _message(event: dict[str, Any]) -> dict[str, Any]:
    delta = event.get("delta")
    message = delta.get("message") if isinstance(delta, dict) else None
    return message if isinstance(message, dict) else {}


def _index(event: dict[str, Any]) -> int:
    index = event.get("index")
    return index if isinstance(index, int) else 0


def _estimate(prompt_estimate: int, progress: _Progress) -> Usage:
    return Usage(prompt_estimate, progress.deltas, estimated=True)


async def _with_first(
    first: bytes | None, lines: AsyncIterator[bytes]
) -> AsyncGenerator[bytes, None]:
    if first is not None:
        yield first
    async for line in lines:
        yield line
