"""What the Anthropic Messages surface answers, as plain dicts: the message object, the stream's
events, the error body and the model objects, in the shapes the `anthropic` SDK reads
(../shared/CLIENTS-RESPONSES-MESSAGES.md §2, §4.1).

Usage follows Anthropic's definition: `input_tokens` are the prompt tokens not read from a
prompt cache, `cache_read_input_tokens` those that were (their sum is the prompt, what the
ledger bills and what count_tokens answers). A canonical `stop` finish does not say whether a
stop sequence ended the text, so it is reported as `end_turn` with `stop_sequence: null`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import orjson

from modelyard.errors import InvalidParameter
from modelyard.protocol.chat_response import ChoiceResult, JsonObject
from modelyard.protocol.generation import (
    ChatEvent,
    ChoiceFinished,
    Finished,
    TextDelta,
    ToolCallDelta,
    Usage,
)

STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}
TOOL_USE_PREFIX = "toolu_"
PING: JsonObject = {"type": "ping"}
MESSAGE_STOP: JsonObject = {"type": "message_stop"}
DEFAULT_PAGE = 20
MAX_PAGE = 1000


def stop_reason(finish_reason: str) -> str:
    return STOP_REASONS.get(finish_reason, "end_turn")


def usage_object(usage: Usage) -> JsonObject:
    cached = min(usage.cached_prompt_tokens, usage.prompt_tokens)
    return {
        "input_tokens": usage.prompt_tokens - cached,
        "output_tokens": usage.completion_tokens,
        "cache_read_input_tokens": cached,
        "cache_creation_input_tokens": 0,
    }


def tool_use_id(call_id: str) -> str:
    """An Anthropic-looking id for one of our tool calls (the same call, the same id)."""
    if call_id.startswith(TOOL_USE_PREFIX):
        return call_id
    return TOOL_USE_PREFIX + call_id.removeprefix("call_")


def tool_input(arguments: str) -> JsonObject:
    """A call's arguments as the object Anthropic sends; validated calls are always objects,
    and a call cut short by max_tokens (never validated) is given as `{}`."""
    try:
        parsed = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def message(message_id: str, model: str, choice: ChoiceResult, usage: Usage) -> JsonObject:
    """The non-streamed answer."""
    content: list[JsonObject] = []
    if choice.text or not choice.tool_calls:
        content.append({"type": "text", "text": choice.text})
    content += [
        {
            "type": "tool_use",
            "id": tool_use_id(call.id),
            "name": call.name,
            "input": tool_input(call.arguments),
        }
        for call in choice.tool_calls
    ]
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(choice.finish_reason),
        "stop_sequence": None,
        "usage": usage_object(usage),
    }


class MessageEvents:
    """One generation's events as the Messages stream: `message_start` and `ping`, then each
    content block's start, deltas and stop, then `message_delta` and `message_stop`."""

    def __init__(self, message_id: str, model: str) -> None:
        self._message_id = message_id
        self._model = model
        self._blocks = 0
        self._text_open = False
        self._stop_reason = "end_turn"

    def opening(self, prompt_tokens: int) -> list[JsonObject]:
        """`prompt_tokens`: what is known before generation (0 when the upstream says it only
        at the end); `message_delta` carries the exact counts."""
        start = {
            "type": "message_start",
            "message": {
                "id": self._message_id,
                "type": "message",
                "role": "assistant",
                "model": self._model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": prompt_tokens, "output_tokens": 1},
            },
        }
        return [start, PING]

    def feed(self, event: ChatEvent) -> list[JsonObject]:
        if isinstance(event, TextDelta):
            return self._text(event.text)
        if isinstance(event, ToolCallDelta):
            return self._tool_use(event)
        if isinstance(event, ChoiceFinished):
            self._stop_reason = stop_reason(event.finish_reason)
            if self._blocks == 0:
                return [*self._text(""), *self._close_text()]
            return self._close_text()
        if isinstance(event, Finished):
            delta = {
                "type": "message_delta",
                "delta": {"stop_reason": self._stop_reason, "stop_sequence": None},
                "usage": usage_object(event.usage),
            }
            return [*self._close_text(), delta, MESSAGE_STOP]
        return []

    def _text(self, text: str) -> list[JsonObject]:
        events: list[JsonObject] = []
        if not self._text_open:
            events.append(self._block_start({"type": "text", "text": ""}))
            self._text_open = True
        if text:
            delta = {"type": "text_delta", "text": text}
            index = self._blocks - 1
            events.append({"type": "content_block_delta", "index": index, "delta": delta})
        return events

    def _tool_use(self, call: ToolCallDelta) -> list[JsonObject]:
        events = self._close_text()
        block = {"type": "tool_use", "id": tool_use_id(call.id), "name": call.name, "input": {}}
        events.append(self._block_start(block))
        index = self._blocks - 1
        delta = {"type": "input_json_delta", "partial_json": call.arguments}
        events.append({"type": "content_block_delta", "index": index, "delta": delta})
        events.append({"type": "content_block_stop", "index": index})
        return events

    def _block_start(self, block: JsonObject) -> JsonObject:
        self._blocks += 1
        return {"type": "content_block_start", "index": self._blocks - 1, "content_block": block}

    def _close_text(self) -> list[JsonObject]:
        if not self._text_open:
            return []
        self._text_open = False
        return [{"type": "content_block_stop", "index": self._blocks - 1}]


def error_object(
    error_type: str,
    message: str,
    code: str,
    param: str | None = None,
    request_id: str | None = None,
) -> JsonObject:
    """Anthropic's error body; our stable code and the offending parameter ride in `details`
    (`error_code` is Anthropic's own field there)."""
    details = {"error_code": code} if param is None else {"error_code": code, "param": param}
    body: JsonObject = {
        "type": "error",
        "error": {"type": error_type, "message": message, "details": details},
    }
    if request_id is not None:
        body["request_id"] = request_id
    return body


def model_object(entry: JsonObject) -> JsonObject:
    """One entry of the models list (OpenAI shape, `serving/models.py`) as Anthropic's."""
    created = datetime.fromtimestamp(entry.get("created") or 0, UTC)
    return {
        "type": "model",
        "id": entry["id"],
        "display_name": entry.get("name") or entry["id"],
        "created_at": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "max_input_tokens": entry.get("context_window"),
        "max_tokens": entry.get("max_output_tokens"),
    }


def model_page(
    entries: Sequence[JsonObject],
    limit: int = DEFAULT_PAGE,
    after_id: str | None = None,
    before_id: str | None = None,
) -> JsonObject:
    """One page of models: after `after_id` or before `before_id` (one of them at most),
    `limit` long, with `has_more` false on the last page (the SDK's paging stops there)."""
    if after_id is not None and before_id is not None:
        raise InvalidParameter("Send at most one of 'after_id' and 'before_id'.", param="before_id")
    ids = [entry["id"] for entry in entries]
    start, end = 0, len(entries)
    if after_id is not None:
        start = _position(ids, after_id, "after_id") + 1
        end = min(end, start + limit)
        has_more = end < len(entries)
    elif before_id is not None:
        end = _position(ids, before_id, "before_id")
        start = max(0, end - limit)
        has_more = start > 0
    else:
        end = min(end, limit)
        has_more = end < len(entries)
    data = [model_object(entry) for entry in entries[start:end]]
    return {
        "data": data,
        "has_more": has_more,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }


def _position(ids: list[str], model_id: str, param: str) -> int:
    try:
        return ids.index(model_id)
    except ValueError:
        raise InvalidParameter(
            f"'{param}' names no model in this list: '{model_id}'.", param=param
        ) from None


def page_limit(value: str | None) -> int:
    """The `limit` query parameter (1 to 1000, 20 when absent)."""
    if value is None:
        return DEFAULT_PAGE
    if not value.isdigit() or not 1 <= int(value) <= MAX_PAGE:
        raise InvalidParameter(f"'limit' must be an integer from 1 to {MAX_PAGE}.", param="limit")
    return int(value)
