"""Chat completion responses and stream chunks, in the shape every official SDK accepts.

Built as plain dicts (serialized once with orjson) following ../shared/CLIENTS.md: an integer
`created`, `index` and the `finish_reason` key on every choice, `usage` always an object on
non-streamed answers, `object: chat.completion.chunk` on every chunk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelyard.protocol.generation import ToolCallDelta, Usage

JsonObject = dict[str, Any]


def usage_object(usage: Usage) -> JsonObject:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


@dataclass(frozen=True)
class ChoiceResult:
    text: str
    tool_calls: tuple[ToolCallDelta, ...]
    finish_reason: str


def tool_call_object(call: ToolCallDelta, with_index: bool = False) -> JsonObject:
    body: JsonObject = {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    }
    if with_index:
        body["index"] = call.index
    return body


def completion(
    completion_id: str, created: int, model: str, choices: list[ChoiceResult], usage: Usage
) -> JsonObject:
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": index,
                "message": _message(choice),
                "finish_reason": choice.finish_reason,
                "logprobs": None,
            }
            for index, choice in enumerate(choices)
        ],
        "usage": usage_object(usage),
        "system_fingerprint": None,
    }


def _message(choice: ChoiceResult) -> JsonObject:
    if choice.tool_calls:
        return {
            "role": "assistant",
            "content": choice.text or None,
            "tool_calls": [tool_call_object(call) for call in choice.tool_calls],
            "refusal": None,
        }
    return {"role": "assistant", "content": choice.text, "refusal": None}


def chunk(
    completion_id: str,
    created: int,
    model: str,
    index: int,
    delta: JsonObject,
    finish_reason: str | None = None,
    usage: Usage | None = None,
) -> JsonObject:
    body: JsonObject = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [
            {"index": index, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
        ],
    }
    if usage is not None:
        body["usage"] = usage_object(usage)
    return body


def usage_chunk(completion_id: str, created: int, model: str, usage: Usage) -> JsonObject:
    """The final `choices: []` chunk sent only when `stream_options.include_usage` is true."""
    return {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [],
        "usage": usage_object(usage),
    }
