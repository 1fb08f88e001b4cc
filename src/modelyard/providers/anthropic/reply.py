"""A non-streamed Anthropic message as provider events, and what streamed and non-streamed
answers share: stop reasons as canonical finish reasons, Anthropic's usage as ours, and the JSON
answer tool's call as content.

Usage: Anthropic counts the prompt in three parts (`input_tokens` after the last cache
breakpoint, `cache_read_input_tokens`, `cache_creation_input_tokens`); the prompt is their sum,
and the part read from the cache is `cached_prompt_tokens`, priced by the ledger at the
deployment's cached price.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import orjson

from modelyard.errors import UpstreamFailed
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
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    # The answer was cut by the model's context window: incomplete, like max_tokens.
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def finish_reason(stop_reason: Any, called_tools: bool) -> str:
    """The canonical finish reason; `tool_use` is `stop` when the only tool used was the JSON
    answer tool (its input is the content, and no call reaches the client)."""
    reason = FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"
    return "stop" if reason == "tool_calls" and not called_tools else reason


def usage_from(raw: Mapping[str, Any]) -> Usage:
    read = _count(raw.get("cache_read_input_tokens"))
    prompt = _count(raw.get("input_tokens")) + read + _count(raw.get("cache_creation_input_tokens"))
    return Usage(prompt, _count(raw.get("output_tokens")), cached_prompt_tokens=read)


def tool_input_json(value: Any) -> str:
    """A `tool_use` input (an object) as the arguments string of a tool call."""
    return value if isinstance(value, str) else orjson.dumps(value).decode()


async def events_from_message(
    payload: Any,
    deployment_id: str,
    answer_tool: str | None,
    prompt_estimate: int,
    report: Callable[[Usage], None],
) -> AsyncIterator[ChatEvent]:
    message = payload if isinstance(payload, dict) else {}
    content = message.get("content")
    events = content_events(content, message.get("stop_reason"), answer_tool)
    raw_usage = message.get("usage")
    if isinstance(raw_usage, dict):
        usage = usage_from(raw_usage)
    else:
        text = "".join(event.text for event in events if isinstance(event, TextDelta))
        usage = Usage(prompt_estimate, estimate_text_tokens(text), estimated=True)
    reported = False
    try:
        if not isinstance(content, list):
            yield Failed(
                UpstreamFailed(f"Deployment '{deployment_id}' answered in an unknown shape.")
            )
            return
        for event in events:
            yield event
        report(usage)
        reported = True
        yield Finished(usage)
    finally:
        if not reported:  # failed, or dropped half read
            report(usage)


def content_events(content: Any, stop_reason: Any, answer_tool: str | None) -> list[ChatEvent]:
    """A message's content blocks as the events of choice 0, ending with its finish. When the
    JSON answer tool was offered, the content is that tool's input alone: text beside it (the
    forced call leaves none) is not part of a JSON answer."""
    if not isinstance(content, list):
        return []
    events: list[ChatEvent] = []
    calls = 0
    for block in content:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text" and answer_tool is None:
            text = block.get("text")
            if isinstance(text, str) and text:
                events.append(TextDelta(0, text))
        elif kind == "tool_use" and block.get("name") == answer_tool:
            events.append(TextDelta(0, tool_input_json(block.get("input", {}))))
        elif kind == "tool_use":
            events.append(
                ToolCallDelta(
                    0,
                    calls,
                    str(block.get("id") or f"toolu_{calls}"),
                    str(block.get("name") or ""),
                    tool_input_json(block.get("input", {})),
                )
            )
            calls += 1
        # Other blocks (thinking, server tools) are never asked for; nothing of them is content.
    events.append(ChoiceFinished(0, finish_reason(stop_reason, calls > 0)))
    return events


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
