"""A Cohere v2 chat answer as events, and the pieces its stream shares: usage, finish reasons,
and the generation failures Cohere reports in a 200 (`finish_reason` ERROR or TIMEOUT).

Cohere's text before its tool calls (`tool_plan`) is the assistant's content, the way the
canonical shape carries text beside tool calls. Usage bills `tokens` (what the model read and
wrote) when the answer has them, `billed_units` otherwise; `cached_tokens` is the part of the
prompt served from Cohere's cache.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from modelyard.errors import ModelyardError, UpstreamFailed, UpstreamTimeout
from modelyard.protocol.chat import estimate_text_tokens
from modelyard.protocol.generation import (
    ChatEvent,
    ChoiceFinished,
    Failed,
    Finished,
    TextDelta,
    ToolCallDelta,
    Usage,
)

FINISH_REASONS = {
    "COMPLETE": "stop",
    "STOP_SEQUENCE": "stop",
    "MAX_TOKENS": "length",
    "TOOL_CALL": "tool_calls",
}


def answer_usage(payload: Any, prompt_estimate: int) -> Usage:
    """What a non-streamed answer consumed: reported as soon as it arrives, so it is billed
    however its events are read (or not)."""
    usage = usage_of(payload.get("usage")) if isinstance(payload, dict) else None
    if usage is not None:
        return usage
    message = payload.get("message") if isinstance(payload, dict) else None
    texts = _texts(message) if isinstance(message, dict) else []
    return Usage(prompt_estimate, sum(estimate_text_tokens(t) for t in texts), estimated=True)


async def events_from_answer(
    payload: Any, deployment_id: str, usage: Usage
) -> AsyncIterator[ChatEvent]:
    message = payload.get("message") if isinstance(payload, dict) else None
    if not isinstance(message, dict):
        yield Failed(UpstreamFailed(f"Deployment '{deployment_id}' answered in an unknown shape."))
        return
    failure = generation_failure(deployment_id, payload.get("finish_reason"), None)
    if failure is not None:
        yield Failed(failure)
        return
    for text in _texts(message):
        yield TextDelta(0, text)
    calls = [tool_call(position, call) for position, call in enumerate(_calls(message))]
    for call in calls:
        yield call
    yield ChoiceFinished(0, finish_reason(payload.get("finish_reason"), bool(calls)))
    yield Finished(usage)


def finish_reason(reason: Any, called: bool) -> str:
    known = FINISH_REASONS.get(reason) if isinstance(reason, str) else None
    return known or ("tool_calls" if called else "stop")


def generation_failure(deployment_id: str, reason: Any, error: Any) -> ModelyardError | None:
    """The failure a finished answer reports, if any. Cohere's error text is not passed on:
    it is about Cohere's side, not the caller's request."""
    if reason == "TIMEOUT":
        return UpstreamTimeout(f"Deployment '{deployment_id}' timed out while generating.")
    if reason == "ERROR" or error:
        return UpstreamFailed(f"Deployment '{deployment_id}' failed while generating.")
    return None


def usage_of(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    counted = raw.get("tokens")
    if not isinstance(counted, dict) or not counted:
        counted = raw.get("billed_units")
    if not isinstance(counted, dict) or not counted:
        return None
    prompt = _count(counted.get("input_tokens"))
    cached = min(_count(raw.get("cached_tokens")), prompt)
    return Usage(prompt, _count(counted.get("output_tokens")), cached_prompt_tokens=cached)


def tool_call(position: int, call: dict[str, Any]) -> ToolCallDelta:
    function = call.get("function")
    function = function if isinstance(function, dict) else {}
    arguments = function.get("arguments")
    if isinstance(arguments, dict):
        arguments = orjson.dumps(arguments).decode()
    return ToolCallDelta(
        0,
        position,
        str(call.get("id") or f"call_{position}"),
        str(function.get("name") or ""),
        arguments if isinstance(arguments, str) and arguments else "{}",
    )


def _count(value: Any) -> int:
    """Cohere's counts are JSON numbers (its SDKs type them as floats)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return 0
    return int(value)


def _texts(message: dict[str, Any]) -> list[str]:
    return [text for text in (_plan(message), *_content_texts(message)) if text]


def _plan(message: dict[str, Any]) -> str:
    plan = message.get("tool_plan")
    return plan if isinstance(plan, str) else ""


def _content_texts(message: dict[str, Any]) -> list[str]:
    content = message.get("content")
    if isinstance(content, str):
        return [content]
    if not isinstance(content, list):
        return []
    # Items of other types (`thinking`) are the model's reasoning, not its answer.
    return [
        item["text"]
        for item in content
        if isinstance(item, dict)
        and item.get("type") == "text"
        and isinstance(item.get("text"), str)
    ]


def _calls(message: dict[str, Any]) -> list[dict[str, Any]]:
    calls = message.get("tool_calls")
    return [call for call in calls if isinstance(call, dict)] if isinstance(calls, list) else []
