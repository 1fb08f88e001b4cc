"""A fake Anthropic Messages API on 127.0.0.1, with scripted answers and faults.

It speaks Anthropic's wire format (`anthropic-version: 2023-06-01`): `POST /v1/messages`
answers a message object, or with `"stream": true` SSE frames that each carry an `event:` line
(message_start, content_block_start/delta/stop, ping, message_delta, message_stop);
`POST /v1/messages/count_tokens` answers `{"input_tokens": N}`; errors are
`{"type": "error", "error": {"type", "message"}}` with Anthropic's statuses. Like the real API it
refuses a request without `anthropic-version`, with the wrong `x-api-key` (when the fake is given
one), without `max_tokens`, with a role other than user/assistant or a temperature above 1, and
a count request with fields the counting endpoint does not take.

With nothing queued it answers text, or, when `tool_choice` forces a tool (`any` or `tool`),
a call of that tool with an input made from its schema. Builders script the rest: messages,
streams (`stream_events`), error bodies, 529 overload, 429 with retry-after, in-band
`event: error`, cut streams (`StreamReply(reset_after=...)`) and malformed events.
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

__all__ = ["FakeAnthropic", "JsonReply", "RecordedRequest", "StreamReply"]

API_VERSION = "2023-06-01"
DEFAULT_TEXT = "Hello from Claude."
DEFAULT_PIECES = ("Hello", " from", " Claude.")
COUNT_TOKENS_FIELDS = frozenset({"model", "messages", "system", "tools", "tool_choice", "thinking"})


def usage_body(
    input_tokens: int = 12,
    output_tokens: int = 5,
    cache_read: int = 0,
    cache_creation: int = 0,
) -> dict[str, int]:
    return {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": cache_creation,
        "cache_read_input_tokens": cache_read,
        "output_tokens": output_tokens,
    }


def text_block(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def tool_use_block(name: str, input: Mapping[str, Any], id: str = "toolu_01") -> dict[str, Any]:
    return {"type": "tool_use", "id": id, "name": name, "input": dict(input)}


def message_body(
    content: str | Sequence[Mapping[str, Any]] = DEFAULT_TEXT,
    stop_reason: str | None = None,
    usage: Mapping[str, int] | None = None,
    model: str = "claude-upstream",
    stop_sequence: str | None = None,
) -> dict[str, Any]:
    """A message object; `stop_reason` defaults to tool_use when it calls a tool."""
    blocks = [text_block(content)] if isinstance(content, str) else [dict(b) for b in content]
    if stop_reason is None:
        called = any(block["type"] == "tool_use" for block in blocks)
        stop_reason = "tool_use" if called else "end_turn"
    return {
        "id": "msg_fake01",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": blocks,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": dict(usage) if usage is not None else usage_body(),
    }


def sse(payload: Mapping[str, Any], event: str | None = None) -> bytes:
    """One SSE frame, its `event:` line named for the payload's type (StreamReply adds the
    blank line that ends it)."""
    return f"event: {event or payload['type']}\n".encode() + b"data: " + orjson.dumps(payload)


def error_event(kind: str = "overloaded_error", message: str = "Overloaded") -> bytes:
    return sse(error_body(kind, message), "error")


def stream_events(
    pieces: Sequence[str] = DEFAULT_PIECES,
    tool_uses: Sequence[tuple[str, str, Sequence[str]]] = (),
    stop_reason: str | None = None,
    usage: Mapping[str, int] | None = None,
    ping: bool = True,
    stop: bool = True,
    model: str = "claude-upstream",
) -> list[bytes]:
    """The frames of a streamed message: a text block of `pieces` (if any), one block per tool
    use `(id, name, input_json fragments)`, then message_delta and (if `stop`) message_stop.
    `usage` is the final one: message_start carries its input counts and output_tokens 1,
    message_delta the cumulative output_tokens."""
    final = dict(usage) if usage is not None else usage_body()
    start_usage = {**final, "output_tokens": 1}
    message: dict[str, Any] = {
        "id": "msg_fake01",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": start_usage,
    }
    events = [sse({"type": "message_start", "message": message})]
    index = 0
    if pieces:
        events.append(
            sse({"type": "content_block_start", "index": 0, "content_block": text_block("")})
        )
        if ping:
            events.append(sse({"type": "ping"}))
        events += [
            sse(
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": piece},
                }
            )
            for piece in pieces
        ]
        events.append(sse({"type": "content_block_stop", "index": 0}))
        index = 1
    elif ping:
        events.append(sse({"type": "ping"}))
    for offset, (call_id, name, fragments) in enumerate(tool_uses):
        block = {"type": "tool_use", "id": call_id, "name": name, "input": {}}
        events.append(
            sse({"type": "content_block_start", "index": index + offset, "content_block": block})
        )
        events += [
            sse(
                {
                    "type": "content_block_delta",
                    "index": index + offset,
                    "delta": {"type": "input_json_delta", "partial_json": fragment},
                }
            )
            for fragment in fragments
        ]
        events.append(sse({"type": "content_block_stop", "index": index + offset}))
    reason = stop_reason or ("tool_use" if tool_uses else "end_turn")
    events.append(
        sse(
            {
                "type": "message_delta",
                "delta": {"stop_reason": reason, "stop_sequence": None},
                "usage": {"output_tokens": final["output_tokens"]},
            }
        )
    )
    if stop:
        events.append(sse({"type": "message_stop"}))
    return events


def json_fragments(value: Any, size: int = 8) -> list[str]:
    """`value` as JSON in pieces of `size` characters, after an empty first one (as Anthropic
    streams a tool's input)."""
    text = orjson.dumps(value).decode()
    return ["", *(text[i : i + size] for i in range(0, len(text), size))]


def error_body(kind: str, message: str) -> dict[str, Any]:
    return {
        "type": "error",
        "error": {"type": kind, "message": message},
        "request_id": "req_fake01",
    }


def error_reply(
    status: int, kind: str, message: str, headers: Mapping[str, str] | None = None
) -> JsonReply:
    return JsonReply(error_body(kind, message), status=status, headers=dict(headers or {}))


def overloaded() -> JsonReply:
    return error_reply(529, "overloaded_error", "Overloaded")


def rate_limited(retry_after: str = "7") -> JsonReply:
    return error_reply(
        429,
        "rate_limit_error",
        "Number of request tokens has exceeded your per-minute rate limit",
        {"retry-after": retry_after, "request-id": "req_fake429"},
    )


def prompt_too_long(tokens: int = 210_000, maximum: int = 200_000) -> JsonReply:
    return error_reply(
        400, "invalid_request_error", f"prompt is too long: {tokens} tokens > {maximum} maximum"
    )


def sample_input(schema: Mapping[str, Any]) -> Any:
    """A small value that matches `schema` (the fake's canned tool input)."""
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            return sample_input(schema[key][0])
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = kind[0]
    if kind == "object":
        properties = schema.get("properties") or {}
        return {name: sample_input(properties.get(name, {})) for name in schema.get("required", [])}
    if kind == "array":
        return [sample_input(schema.get("items") or {}) for _ in range(schema.get("minItems", 0))]
    samples = {"string": "Paris", "integer": 1, "number": 1.5, "boolean": True, "null": None}
    return samples.get(kind)


class FakeAnthropic(ScriptedServer):
    """Anthropic's paths under `/v1`; `base_url` is what a catalog's `upstream.base_url` names.
    Give `api_key` to have it refuse any other `x-api-key`, as Anthropic does."""

    def __init__(self, api_key: str | None = None) -> None:
        super().__init__()
        self.api_key = api_key

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"

    def routes(self) -> list[Route]:
        return [
            Route("/v1/messages", self._messages, methods=["POST"]),
            Route("/v1/messages/count_tokens", self._count_tokens, methods=["POST"]),
        ]

    async def _messages(self, request: Request) -> Response | StreamResponse:
        body, reply = await self.record(request)
        refusal = self._refusal(request, body, counting=False)
        if refusal is not None:
            return await json_response(refusal)
        if reply is None:
            reply = default_reply(body)
        if isinstance(reply, StreamReply):
            return StreamResponse(reply)
        return await json_response(reply)

    async def _count_tokens(self, request: Request) -> Response:
        body, reply = await self.record(request)
        refusal = self._refusal(request, body, counting=True)
        if refusal is not None:
            return await json_response(refusal)
        if reply is None:
            # Deterministic, and larger for a larger prompt: about four bytes of JSON a token.
            reply = JsonReply({"input_tokens": len(orjson.dumps(body)) // 4})
        assert isinstance(reply, JsonReply)
        return await json_response(reply)

    def _refusal(self, request: Request, body: Any, counting: bool) -> JsonReply | None:
        if self.api_key is not None and request.headers.get("x-api-key") != self.api_key:
            return error_reply(401, "authentication_error", "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            return error_reply(
                400, "invalid_request_error", "anthropic-version: header is required"
            )
        problem = request_problem(body, counting)
        return error_reply(400, "invalid_request_error", problem) if problem else None


def request_problem(body: Any, counting: bool) -> str | None:
    """What Anthropic would refuse in a Messages (or count_tokens) body, in its words."""
    if not isinstance(body, dict):
        return "body: Input should be a valid dictionary"
    if counting:
        extra = sorted(set(body) - COUNT_TOKENS_FIELDS)
        if extra:
            return f"{extra[0]}: Extra inputs are not permitted"
    elif "max_tokens" not in body:
        return "max_tokens: Field required"
    for name in ("model", "messages"):
        if name not in body:
            return f"{name}: Field required"
    if not isinstance(body["messages"], list):
        return "messages: Input should be a valid list"
    for position, message in enumerate(body["messages"]):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            return f"messages.{position}.role: Input should be 'user' or 'assistant'"
    temperature = body.get("temperature")
    if isinstance(temperature, int | float) and temperature > 1:
        return "temperature: Input should be less than or equal to 1"
    return None


def default_reply(body: dict[str, Any]) -> JsonReply | StreamReply:
    """Text, or a call of the tool `tool_choice` forces, made from its input schema."""
    choice = body.get("tool_choice") or {}
    tools = body.get("tools") or []
    forced = None
    if choice.get("type") == "tool":
        forced = next((tool for tool in tools if tool["name"] == choice.get("name")), None)
    elif choice.get("type") == "any" and tools:
        forced = tools[0]
    if forced is None:
        if body.get("stream"):
            return StreamReply(stream_events())
        return JsonReply(message_body())
    arguments = sample_input(forced.get("input_schema") or {})
    if body.get("stream"):
        return StreamReply(
            stream_events((), [("toolu_01", forced["name"], json_fragments(arguments))])
        )
    return JsonReply(message_body([tool_use_block(forced["name"], arguments)]))
