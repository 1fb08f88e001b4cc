"""Responses API answers as plain dicts (serialized once with orjson): the response object, its
output items, and the stream's events, following CLIENTS-RESPONSES-MESSAGES.md §3.2-3.3.

Item ids are derived from the response id and the item's place in `output`, so the same item
has the same id in `output_item.added`, `output_item.done` and `response.completed`. A stream is
numbered from 0 (`sequence_number`), starts with `response.created` and `response.in_progress`,
and ends with `response.completed` (or `response.incomplete`, or `error` then
`response.failed`), whose `response.output` is the whole output: the SDK takes it as final.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelyard.errors import ModelyardError
from modelyard.protocol.generation import ToolCallDelta, Usage
from modelyard.protocol.responses import (
    FunctionTool,
    MessageItem,
    NamedToolChoice,
    ResponsesRequest,
)

JsonObject = dict[str, Any]

# Why an answer is incomplete, by the chat finish reason that cut it.
INCOMPLETE_REASONS = {"length": "max_output_tokens", "content_filter": "content_filter"}


@dataclass(frozen=True)
class Envelope:
    """What every shape of one response carries besides its output: its id, when it was
    created, and the request's settings echoed back."""

    id: str
    created_at: int
    echoed: JsonObject

    def item_id(self, prefix: str, index: int, place: str = "") -> str:
        """`msg_<request id>_0`: an output item's id by its place in `output`; input items'
        have `place` "in"."""
        return f"{prefix}_{self.id.removeprefix('resp_')}_{place}{index}"


def envelope_of(body: ResponsesRequest, response_id: str, created_at: int, store: bool) -> Envelope:
    """`store` is what the gateway does (false wherever the project keeps no content)."""
    text = body.text.model_dump(mode="json", by_alias=True, exclude_none=True) if body.text else {}
    return Envelope(
        response_id,
        created_at,
        {
            "instructions": body.instructions,
            "metadata": body.metadata or {},
            "parallel_tool_calls": body.parallel_tool_calls is not False,
            "temperature": 1.0 if body.temperature is None else body.temperature,
            "top_p": 1.0 if body.top_p is None else body.top_p,
            "tool_choice": _echoed_tool_choice(body.tool_choice),
            "tools": [
                tool.model_dump(mode="json", exclude_none=True)
                for tool in body.tools or []
                if isinstance(tool, FunctionTool)
            ],
            "text": {"format": {"type": "text"}, **text},
            "max_output_tokens": body.max_output_tokens,
            "previous_response_id": body.previous_response_id,
            "store": store,
            "truncation": "disabled",
            "user": body.user,
        },
    )


def _echoed_tool_choice(choice: str | NamedToolChoice | None) -> str | JsonObject:
    if choice is None:
        return "auto"
    return choice if isinstance(choice, str) else choice.model_dump(mode="json", exclude_none=True)


def input_items(body: ResponsesRequest, envelope: Envelope) -> list[JsonObject]:
    """The request's input as the items `input_items` lists: every item with an id (its own, or
    one made up from the response's), message content always as parts."""
    if isinstance(body.input, str):
        return [
            {
                "type": "message",
                "id": envelope.item_id("msg", 0, "in"),
                "status": "completed",
                "role": "user",
                "content": [{"type": "input_text", "text": body.input}],
            }
        ]
    items: list[JsonObject] = []
    for index, item in enumerate(body.input):
        shown = item.model_dump(mode="json", by_alias=True, exclude_none=True)
        prefix = _INPUT_PREFIXES.get(item.type, "item")
        shown.setdefault("id", envelope.item_id(prefix, index, "in"))
        shown.setdefault("status", "completed")
        if isinstance(item, MessageItem) and isinstance(item.content, str):
            kind = "output_text" if item.role == "assistant" else "input_text"
            shown["content"] = [{"type": kind, "text": item.content}]
        items.append(shown)
    return items


_INPUT_PREFIXES = {"message": "msg", "function_call": "fc", "function_call_output": "fco"}


def response_object(
    envelope: Envelope,
    model: str,
    status: str,
    output: list[JsonObject],
    usage: Usage | None,
    *,
    incomplete_reason: str | None = None,
    error: ModelyardError | None = None,
) -> JsonObject:
    return {
        "id": envelope.id,
        "object": "response",
        "created_at": envelope.created_at,
        "status": status,
        "model": model,
        "output": output,
        "usage": usage_object(usage) if usage is not None else None,
        "error": {"code": error.code, "message": error.message} if error is not None else None,
        "incomplete_details": (
            {"reason": incomplete_reason} if incomplete_reason is not None else None
        ),
        **envelope.echoed,
    }


def usage_object(usage: Usage) -> JsonObject:
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_prompt_tokens},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.total_tokens,
    }


def status_of(finish_reason: str) -> tuple[str, str | None]:
    """The response's status and, when incomplete, why."""
    reason = INCOMPLETE_REASONS.get(finish_reason)
    return ("incomplete", reason) if reason is not None else ("completed", None)


def message_item(item_id: str, text: str | None, status: str) -> JsonObject:
    """An assistant message; `text` None for the skeleton of `output_item.added`."""
    content = [] if text is None else [_text_part(text)]
    return {
        "type": "message",
        "id": item_id,
        "status": status,
        "role": "assistant",
        "content": content,
    }


def function_call_item(
    item_id: str, call: ToolCallDelta, arguments: str, status: str
) -> JsonObject:
    return {
        "type": "function_call",
        "id": item_id,
        "call_id": call.id,
        "name": call.name,
        "arguments": arguments,
        "status": status,
    }


def _text_part(text: str) -> JsonObject:
    return {"type": "output_text", "text": text, "annotations": []}


def output_items(
    envelope: Envelope, text: str, calls: tuple[ToolCallDelta, ...], status: str
) -> list[JsonObject]:
    """A whole answer's output: its text (when there is some, or nothing else), then one item
    per function call."""
    items: list[JsonObject] = []
    item_status = "incomplete" if status == "incomplete" else "completed"
    if text or not calls:
        items.append(message_item(envelope.item_id("msg", 0), text, item_status))
    for call in calls:
        items.append(
            function_call_item(
                envelope.item_id("fc", len(items)), call, call.arguments, "completed"
            )
        )
    return items


def finished_response(
    envelope: Envelope,
    model: str,
    text: str,
    calls: tuple[ToolCallDelta, ...],
    finish_reason: str,
    usage: Usage,
) -> JsonObject:
    """The non-streamed answer."""
    status, reason = status_of(finish_reason)
    output = output_items(envelope, text, calls, status)
    return response_object(envelope, model, status, output, usage, incomplete_reason=reason)


class ResponseEvents:
    """One streamed response's events, in order and numbered; ids as in `output_items`."""

    def __init__(self, envelope: Envelope, model: str) -> None:
        self._envelope = envelope
        self._model = model
        self._sequence = 0
        self.output: list[JsonObject] = []
        # The text of the message being streamed, while one is open, and that message's id and
        # place in `output`.
        self._text: list[str] | None = None
        self._message_id = ""
        self._message_index = 0
        self.text = ""
        self.calls: list[ToolCallDelta] = []

    def _event(self, kind: str, **fields: Any) -> JsonObject:
        event = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return event

    def _response(self, status: str, **fields: Any) -> JsonObject:
        return response_object(self._envelope, self._model, status, **fields)

    def opening(self) -> list[JsonObject]:
        response = self._response("in_progress", output=[], usage=None)
        return [
            self._event("response.created", response=response),
            self._event("response.in_progress", response=response),
        ]

    def text_delta(self, delta: str) -> list[JsonObject]:
        events = self._open_message() if self._text is None else []
        assert self._text is not None
        self._text.append(delta)
        # Built literally: one per token, the stream's hottest line.
        events.append(
            {
                "type": "response.output_text.delta",
                "sequence_number": self._sequence,
                "item_id": self._message_id,
                "output_index": self._message_index,
                "content_index": 0,
                "delta": delta,
                "logprobs": [],
            }
        )
        self._sequence += 1
        return events

    def tool_call(self, call: ToolCallDelta) -> list[JsonObject]:
        events = self._close_message("completed")
        index = len(self.output)
        item_id = self._envelope.item_id("fc", index)
        self.output.append(function_call_item(item_id, call, call.arguments, "completed"))
        self.calls.append(call)
        place = {"item_id": item_id, "output_index": index}
        added = function_call_item(item_id, call, "", "in_progress")
        events += [
            self._event("response.output_item.added", output_index=index, item=added),
            self._event("response.function_call_arguments.delta", **place, delta=call.arguments),
            self._event(
                "response.function_call_arguments.done",
                **place,
                name=call.name,
                arguments=call.arguments,
            ),
            self._event("response.output_item.done", output_index=index, item=self.output[index]),
        ]
        return events

    def closing(self, finish_reason: str, usage: Usage) -> tuple[JsonObject, list[JsonObject]]:
        """The final response and the events that close the output before it is announced
        (an answer with neither text nor calls gets an empty message, as non-streamed)."""
        status, reason = status_of(finish_reason)
        item_status = "incomplete" if status == "incomplete" else "completed"
        events = self._open_message() if not self.output and self._text is None else []
        events += self._close_message(item_status)
        response = self._response(status, output=self.output, usage=usage, incomplete_reason=reason)
        return response, events

    def announced(self, response: JsonObject) -> JsonObject:
        kind = "response.completed" if response["status"] == "completed" else "response.incomplete"
        return self._event(kind, response=response)

    def failure(self, error: ModelyardError) -> list[JsonObject]:
        """An in-band error, then the response as failed (with the output finished so far)."""
        response = self._response("failed", output=self.output, usage=None, error=error)
        return [
            self._event("error", code=error.code, message=error.message, param=error.param),
            self._event("response.failed", response=response),
        ]

    def _part_place(self) -> JsonObject:
        index = len(self.output)
        return {
            "item_id": self._envelope.item_id("msg", index),
            "output_index": index,
            "content_index": 0,
        }

    def _open_message(self) -> list[JsonObject]:
        self._text = []
        place = self._part_place()
        self._message_id, self._message_index = place["item_id"], place["output_index"]
        skeleton = message_item(place["item_id"], None, "in_progress")
        return [
            self._event(
                "response.output_item.added", output_index=place["output_index"], item=skeleton
            ),
            self._event("response.content_part.added", **place, part=_text_part("")),
        ]

    def _close_message(self, status: str) -> list[JsonObject]:
        if self._text is None:
            return []
        text = "".join(self._text)
        self._text = None
        self.text += text
        place = self._part_place()
        item = message_item(place["item_id"], text, status)
        self.output.append(item)
        return [
            self._event("response.output_text.done", **place, text=text, logprobs=[]),
            self._event("response.content_part.done", **place, part=_text_part(text)),
            self._event("response.output_item.done", output_index=place["output_index"], item=item),
        ]
