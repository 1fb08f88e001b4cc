"""A fake Cohere v2 Chat API (`POST /v2/chat`) on 127.0.0.1, with scripted answers and faults.

With an empty queue it answers in Cohere's documented wire format: a short text, or, when the
request offers tools (and `tool_choice` is not `NONE`) and its last message is not a tool
result, a call to the first offered tool with arguments made from its schema; streamed as Cohere
streams (`event: <type>` and `data: <json>` frames, `message-start` to `message-end`) when the
request asks for `stream`. Builders script the rest: answers with tool calls, plans, usage and
finish reasons (`chat_answer`, `stream_events`), Cohere's error bodies (`error_reply`), streams
cut mid-way (`StreamReply(reset_after=...)`) or malformed (`malformed_event`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelyard.testing.scripted_server import (
    JsonReply,
    RecordedRequest,
    ScriptedServer,
    StreamReply,
    StreamResponse,
    json_response,
)

__all__ = [
    "FakeCohere",
    "JsonReply",
    "RecordedRequest",
    "StreamReply",
    "chat_answer",
    "error_reply",
    "malformed_event",
    "stream_events",
    "tool_call",
    "usage_body",
]

DEFAULT_TEXT = "Hello from Cohere."
DEFAULT_PIECES = ("Hello", " from", " Cohere.")
ANSWER_ID = "c14c80c3-18eb-4519-9460-6c92edd8cfb4"


def usage_body(
    input_tokens: int = 11,
    output_tokens: int = 5,
    *,
    cached_tokens: int | None = None,
    billed: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """Cohere's `usage`: `tokens` as the model counted them, `billed_units` as Cohere bills
    (fewer: its own preamble is not billed)."""
    billed_input, billed_output = billed or (max(0, input_tokens - 3), output_tokens)
    usage: dict[str, Any] = {
        "billed_units": {"input_tokens": billed_input, "output_tokens": billed_output},
        "tokens": {"input_tokens": input_tokens, "output_tokens": output_tokens},
    }
    if cached_tokens is not None:
        usage["cached_tokens"] = cached_tokens
    return usage


def tool_call(call_id: str, name: str, arguments: Mapping[str, Any] | str) -> dict[str, Any]:
    text = arguments if isinstance(arguments, str) else orjson.dumps(arguments).decode()
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": text}}


def chat_answer(
    text: str | None = DEFAULT_TEXT,
    *,
    tool_calls: Sequence[Mapping[str, Any]] = (),
    tool_plan: str | None = None,
    finish_reason: str | None = None,
    usage: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A non-streamed `/v2/chat` answer."""
    message: dict[str, Any] = {"role": "assistant"}
    if text is not None:
        message["content"] = [{"type": "text", "text": text}]
    if tool_calls:
        message["tool_calls"] = [dict(call) for call in tool_calls]
    if tool_plan is not None:
        message["tool_plan"] = tool_plan
    return {
        "id": ANSWER_ID,
        "finish_reason": finish_reason or ("TOOL_CALL" if tool_calls else "COMPLETE"),
        "message": message,
        "usage": dict(usage) if usage is not None else usage_body(),
    }


def sse(payload: Mapping[str, Any]) -> bytes:
    """One frame as Cohere sends it (the blank line after it is the reply's separator)."""
    return b"event: " + str(payload["type"]).encode() + b"\ndata: " + orjson.dumps(payload)


def stream_events(
    pieces: Sequence[str] = DEFAULT_PIECES,
    *,
    tool_calls: Sequence[Mapping[str, Any]] = (),
    tool_plan: Sequence[str] = (),
    finish_reason: str | None = None,
    usage: Mapping[str, Any] | None = None,
    error: str | None = None,
    end: bool = True,
    argument_chunk: int = 7,
) -> list[bytes]:
    """A streamed answer: `pieces` of text, then the plan and tool calls (their arguments in
    fragments of `argument_chunk` characters), then `message-end` unless `end` is false."""
    events = [
        sse(
            {
                "id": ANSWER_ID,
                "type": "message-start",
                "delta": {
                    "message": {
                        "role": "assistant",
                        "content": [],
                        "tool_plan": "",
                        "tool_calls": [],
                        "citations": [],
                    }
                },
            }
        )
    ]
    if pieces:
        events.append(
            sse(
                {
                    "type": "content-start",
                    "index": 0,
                    "delta": {"message": {"content": {"type": "text", "text": ""}}},
                }
            )
        )
        events += [
            sse(
                {
                    "type": "content-delta",
                    "index": 0,
                    "delta": {"message": {"content": {"text": piece}}},
                }
            )
            for piece in pieces
        ]
        events.append(sse({"type": "content-end", "index": 0}))
    events += [
        sse({"type": "tool-plan-delta", "delta": {"message": {"tool_plan": piece}}})
        for piece in tool_plan
    ]
    for index, call in enumerate(tool_calls):
        events += _streamed_call(index, call, argument_chunk)
    if end:
        delta: dict[str, Any] = {
            "finish_reason": finish_reason or ("TOOL_CALL" if tool_calls else "COMPLETE"),
            "usage": dict(usage) if usage is not None else usage_body(11, len(pieces)),
        }
        if error is not None:
            delta["error"] = error
        events.append(sse({"id": ANSWER_ID, "type": "message-end", "delta": delta}))
    return events


def _streamed_call(index: int, call: Mapping[str, Any], chunk: int) -> list[bytes]:
    function = call["function"]
    arguments = str(function["arguments"])
    start = {
        "type": "tool-call-start",
        "index": index,
        "delta": {
            "message": {
                "tool_calls": {
                    "id": call["id"],
                    "type": "function",
                    "function": {"name": function["name"], "arguments": ""},
                }
            }
        },
    }
    fragments = [arguments[i : i + chunk] for i in range(0, len(arguments), chunk)]
    deltas = [
        {
            "type": "tool-call-delta",
            "index": index,
            "delta": {"message": {"tool_calls": {"function": {"arguments": fragment}}}},
        }
        for fragment in fragments
    ]
    return [
        sse(start),
        *(sse(delta) for delta in deltas),
        sse({"type": "tool-call-end", "index": index}),
    ]


def malformed_event() -> bytes:
    return b'event: content-delta\ndata: {"type": "content-delta", "delta": {'


def error_reply(
    status: int, message: str = "internal server error", headers: Mapping[str, str] | None = None
) -> JsonReply:
    """Cohere's error answer: `{"id", "message"}`."""
    return JsonReply(
        {"id": "4f2a6a0e-9d43-4d39-9d6e-0b6a3e1c2f71", "message": message},
        status=status,
        headers=dict(headers or {}),
    )


class FakeCohere(ScriptedServer):
    @property
    def base_url(self) -> str:
        """What a catalog's `base_url` names: up to and including the version segment."""
        return f"{self.root_url}/v2"

    def routes(self) -> list[Route]:
        return [Route("/v2/chat", self._chat, methods=["POST"])]

    async def _chat(self, request: Request) -> Response | StreamResponse:
        body, reply = await self.record(request)
        if reply is None:
            reply = default_reply(body)
        if isinstance(reply, StreamReply):
            return StreamResponse(reply)
        return await json_response(reply)


def default_reply(body: Any) -> JsonReply | StreamReply:
    call = _canned_call(body)
    calls = [call] if call is not None else []
    if body.get("stream"):
        if calls:
            return StreamReply(stream_events((), tool_plan=["I will call it."], tool_calls=calls))
        return StreamReply(stream_events())
    if calls:
        return JsonReply(chat_answer(None, tool_calls=calls, tool_plan="I will call it."))
    return JsonReply(chat_answer())


def _canned_call(body: Any) -> dict[str, Any] | None:
    tools = body.get("tools") or []
    messages = body.get("messages") or []
    if not tools or body.get("tool_choice") == "NONE":
        return None
    if messages and messages[-1].get("role") == "tool":
        return None  # the result is in: answer in text
    function = tools[0]["function"]
    arguments = _sample(function.get("parameters") or {})
    return tool_call("fake_call_0", function["name"], arguments)


def _sample(schema: Mapping[str, Any]) -> Any:
    """A value of the schema's type: its required properties, each a value of its type."""
    kind = schema.get("type")
    if kind == "object":
        properties = schema.get("properties") or {}
        return {name: _sample(properties.get(name, {})) for name in schema.get("required") or []}
    if "enum" in schema:
        return schema["enum"][0]
    return {"string": "Paris", "integer": 1, "number": 1.5, "boolean": True, "array": []}.get(
        str(kind), "Paris"
    )
