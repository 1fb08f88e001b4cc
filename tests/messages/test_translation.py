"""The Messages request onto the canonical chat request, the canonical answer back into
Anthropic's shapes, and errors rendered in them: pure functions and middleware, no gateway."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest
from pydantic import ValidationError
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from modelyard.api.errors import error_response
from modelyard.api.middleware import RequestTelemetryMiddleware, UnexpectedErrorMiddleware
from modelyard.errors import (
    EngineBusy,
    InvalidParameter,
    ModelyardError,
    RateLimited,
    UnsupportedParameter,
)
from modelyard.protocol.anthropic_messages import (
    CountTokensRequest,
    MessagesRequest,
    Translation,
    to_canonical,
)
from modelyard.protocol.anthropic_output import (
    MessageEvents,
    message,
    model_page,
    tool_use_id,
    usage_object,
)
from modelyard.protocol.chat import AssistantMessage, ImagePart, ToolMessage, UserMessage
from modelyard.protocol.chat_response import ChoiceResult
from modelyard.protocol.generation import (
    ChoiceFinished,
    Finished,
    TextDelta,
    ToolCallDelta,
    Usage,
)

WEATHER = {
    "name": "get_weather",
    "description": "Get weather",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}
HI = [{"role": "user", "content": "Hi"}]


def translate(**body: Any) -> Translation:
    return to_canonical(MessagesRequest.model_validate({"model": "m", "max_tokens": 16, **body}))


def test_system_blocks_become_one_system_message_and_settings_carry_over() -> None:
    canonical = translate(
        system=[
            {"type": "text", "text": "Be terse.", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "Answer in French."},
        ],
        messages=[{"role": "user", "content": "Hello"}],
        stop_sequences=["END"],
        temperature=0.2,
        top_p=0.9,
        top_k=5,
        metadata={"user_id": "u1"},
        stream=True,
    ).request
    assert canonical.messages[0].role == "system"
    assert canonical.messages[0].content == "Be terse.\nAnswer in French."
    assert canonical.messages[1] == UserMessage(role="user", content="Hello")
    assert canonical.stop == ["END"]
    assert (canonical.temperature, canonical.top_p, canonical.top_k) == (0.2, 0.9, 5)
    assert canonical.user == "u1" and canonical.stream is True and canonical.max_tokens == 16


def test_tool_use_and_tool_results_become_calls_then_tool_messages_before_the_text() -> None:
    canonical = translate(
        tools=[WEATHER],
        tool_choice={"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
        messages=[
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                     "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "toolu_2", "name": "get_weather",
                     "input": {"city": "Rome"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Thanks."},
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                    {"type": "tool_result", "tool_use_id": "toolu_2", "is_error": True,
                     "content": [{"type": "text", "text": "no station"}]},
                ],
            },
        ],
    ).request  # fmt: skip
    roles = [m.role for m in canonical.messages]
    assert roles == ["user", "assistant", "tool", "tool", "user"]
    assistant = canonical.messages[1]
    assert isinstance(assistant, AssistantMessage) and assistant.content == "Checking."
    assert assistant.tool_calls is not None
    assert [(c.id, c.function.name, orjson.loads(c.function.arguments))
            for c in assistant.tool_calls] == [
        ("toolu_1", "get_weather", {"city": "Paris"}),
        ("toolu_2", "get_weather", {"city": "Rome"}),
    ]  # fmt: skip
    first, second = canonical.messages[2], canonical.messages[3]
    assert isinstance(first, ToolMessage) and isinstance(second, ToolMessage)
    assert (first.tool_call_id, first.content) == ("toolu_1", "sunny")
    assert (second.tool_call_id, second.content) == ("toolu_2", "Error: no station")
    assert canonical.messages[4].content == "Thanks."
    assert canonical.tools is not None and canonical.tools[0].function.name == "get_weather"
    assert canonical.tools[0].function.parameters == WEATHER["input_schema"]
    assert canonical.tool_choice is not None and not isinstance(canonical.tool_choice, str)
    assert canonical.tool_choice.function.name == "get_weather"
    assert canonical.parallel_tool_calls is False


@pytest.mark.parametrize(
    ("choice", "expected"),
    [({"type": "auto"}, "auto"), ({"type": "any"}, "required"), ({"type": "none"}, "none")],
)
def test_tool_choice_types_map_to_canonical_modes(choice: dict[str, str], expected: str) -> None:
    canonical = translate(
        tools=[WEATHER], tool_choice=choice, messages=[{"role": "user", "content": "Hi"}]
    ).request
    assert canonical.tool_choice == expected
    assert canonical.parallel_tool_calls is None


def test_output_config_format_is_a_json_schema_response_format() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    canonical = translate(
        output_config={"format": {"type": "json_schema", "schema": schema}},
        messages=[{"role": "user", "content": "A number."}],
    ).request
    assert canonical.model_dump(mode="json", by_alias=True)["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "description": None, "schema": schema, "strict": True},
    }


def test_images_become_data_urls_and_errors_on_them_name_the_anthropic_block() -> None:
    translation = translate(
        system="sys",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok"},
                    {"type": "text", "text": "What is this?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                 "data": "iVBORw0KGgo="}},
                ],
            }
        ],
    )  # fmt: skip
    user = translation.request.messages[2]
    assert isinstance(user, UserMessage) and isinstance(user.content, list)
    image = user.content[1]
    assert isinstance(image, ImagePart) and not isinstance(image.image_url, str)
    assert image.image_url.url == "data:image/png;base64,iVBORw0KGgo="
    # The canonical request's messages[2].content[1] is the first message's block 2.
    assert translation.anthropic_param("messages[2].content[1]") == "messages[0].content[2]"
    assert translation.anthropic_param("messages[0].content") == "system"
    assert translation.anthropic_param("tools[3].function.parameters.properties") == (
        "tools[3].input_schema.properties"
    )
    assert translation.anthropic_param("response_format") == "output_config.format"
    assert translation.anthropic_param("stop") == "stop_sequences"
    assert translation.anthropic_param("tool_choice.function.name") == "tool_choice.name"
    assert translation.anthropic_param("max_tokens") == "max_tokens"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 2}]},
         "tools[0].type"),
        ({"tools": [{**WEATHER, "input_examples": [{"city": "Oslo"}]}]}, "tools[0].input_examples"),
        ({"messages": [{"role": "user", "content": [
            {"type": "document", "source": {"type": "text", "data": "x"}}]}]},
         "messages[0].content[0]"),
        ({"messages": [{"role": "user", "content": "Hi"},
                       {"role": "assistant", "content": "The answer is"}]}, "messages[1]"),
        ({"output_config": {"effort": "high"}}, "output_config.effort"),
    ],
    ids=["server-tool", "tool-option", "document-block", "prefill", "effort"],
)  # fmt: skip
def test_anthropic_features_without_a_canonical_form_are_refused_by_name(
    body: dict[str, Any], param: str
) -> None:
    with pytest.raises(UnsupportedParameter) as refused:
        translate(**{"messages": [{"role": "user", "content": "Hi"}], **body})
    assert refused.value.param == param


def test_count_tokens_request_has_no_generation_settings() -> None:
    counted = to_canonical(
        CountTokensRequest.model_validate(
            {"model": "m", "messages": [{"role": "user", "content": "Hi"}]}
        )
    ).request
    assert counted.max_tokens is None and counted.stream is None
    with pytest.raises(ValidationError, match="max_tokens"):
        MessagesRequest.model_validate({"model": "m", "messages": HI})


def test_non_streamed_message_has_text_then_tool_use_with_parsed_input() -> None:
    call = ToolCallDelta(0, 0, "call_abc", "get_weather", '{"city": "Paris"}')
    answer = message(
        "msg_1", "m", ChoiceResult("Let me check.", (call,), "tool_calls"), Usage(40, 20, False, 8)
    )
    assert answer["content"] == [
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "toolu_abc", "name": "get_weather", "input": {"city": "Paris"}},
    ]
    assert answer["stop_reason"] == "tool_use" and answer["stop_sequence"] is None
    assert answer["usage"] == {
        "input_tokens": 32,
        "output_tokens": 20,
        "cache_read_input_tokens": 8,
        "cache_creation_input_tokens": 0,
    }


@pytest.mark.parametrize(
    ("finish", "reason"),
    [("stop", "end_turn"), ("length", "max_tokens"), ("tool_calls", "tool_use")],
)
def test_finish_reasons_map_to_stop_reasons(finish: str, reason: str) -> None:
    assert message("id", "m", ChoiceResult("x", (), finish), Usage(1, 1))["stop_reason"] == reason


def test_tool_use_ids_are_stable_and_prefixed() -> None:
    assert tool_use_id("call_abc") == tool_use_id("call_abc") == "toolu_abc"
    assert tool_use_id("toolu_x") == "toolu_x"
    assert tool_use_id("other") == "toolu_other"


def test_stream_events_follow_the_order_the_sdk_helper_needs() -> None:
    shaper = MessageEvents("msg_1", "m")
    events = shaper.opening(12)
    for event in (
        TextDelta(0, "Let me "),
        TextDelta(0, "check."),
        ToolCallDelta(0, 0, "call_1", "get_weather", '{"city":"Paris"}'),
        ChoiceFinished(0, "tool_calls"),
        Finished(Usage(40, 20)),
    ):
        events += shaper.feed(event)
    kinds = [(e["type"], e.get("index")) for e in events]
    assert kinds == [
        ("message_start", None),
        ("ping", None),
        ("content_block_start", 0),
        ("content_block_delta", 0),
        ("content_block_delta", 0),
        ("content_block_stop", 0),
        ("content_block_start", 1),
        ("content_block_delta", 1),
        ("content_block_stop", 1),
        ("message_delta", None),
        ("message_stop", None),
    ]
    start = events[0]["message"]
    assert start["content"] == [] and start["usage"] == {"input_tokens": 12, "output_tokens": 1}
    assert events[2]["content_block"] == {"type": "text", "text": ""}
    assert events[6]["content_block"]["input"] == {}
    assert events[7]["delta"] == {"type": "input_json_delta", "partial_json": '{"city":"Paris"}'}
    assert events[9]["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert events[9]["usage"] == usage_object(Usage(40, 20))


def test_an_empty_answer_still_streams_one_text_block() -> None:
    shaper = MessageEvents("msg_1", "m")
    events = shaper.feed(ChoiceFinished(0, "stop")) + shaper.feed(Finished(Usage(3, 0)))
    assert [e["type"] for e in events] == [
        "content_block_start",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]


def test_model_pages_follow_after_and_before_ids() -> None:
    entries = [{"id": f"m{i}", "name": f"M{i}", "created": 1730419200} for i in range(5)]
    first = model_page(entries, limit=2)
    assert [m["id"] for m in first["data"]] == ["m0", "m1"] and first["has_more"] is True
    assert first["data"][0]["created_at"] == "2024-11-01T00:00:00Z"
    assert first["data"][0]["display_name"] == "M0" and first["data"][0]["type"] == "model"
    last = model_page(entries, limit=2, after_id="m2")
    assert [m["id"] for m in last["data"]] == ["m3", "m4"] and last["has_more"] is False
    assert (last["first_id"], last["last_id"]) == ("m3", "m4")
    before = model_page(entries, limit=2, before_id="m2")
    assert [m["id"] for m in before["data"]] == ["m0", "m1"] and before["has_more"] is False
    with pytest.raises(InvalidParameter) as unknown:
        model_page(entries, after_id="nope")
    assert unknown.value.param == "after_id"


def anthropic_scope(path: str, **headers: str) -> dict[str, Any]:
    raw = [(k.encode(), v.encode()) for k, v in headers.items()]
    return {"type": "http", "path": path, "headers": raw, "state": {"request_id": "r1"}}


def rendered(error: ModelyardError, scope: dict[str, Any] | None) -> tuple[Response, Any]:
    response = error_response(error, scope)
    return response, orjson.loads(bytes(response.body))


def test_errors_on_the_messages_surface_take_anthropic_shape_and_overload_is_529() -> None:
    response, body = rendered(EngineBusy("busy", retry_after_s=3), anthropic_scope("/v1/messages"))
    assert response.status_code == 529
    assert body == {
        "type": "error",
        "error": {
            "type": "overloaded_error",
            "message": "busy",
            "details": {"error_code": "engine_overloaded"},
        },
        "request_id": "r1",
    }
    assert response.headers["request-id"] == "r1" and response.headers["retry-after"] == "3"
    limited, body = rendered(RateLimited("slow"), anthropic_scope("/v1/messages/count_tokens"))
    assert limited.status_code == 429 and body["error"]["type"] == "rate_limit_error"
    assert "retry-after" in limited.headers


def test_models_errors_are_anthropic_shaped_only_when_asked_with_a_version() -> None:
    error = InvalidParameter("bad", param="limit")
    _, anthropic_body = rendered(error, anthropic_scope("/v1/models", **{"anthropic-version": "x"}))
    details = anthropic_body["error"]["details"]
    assert details == {"error_code": "invalid_parameter", "param": "limit"}
    openai, openai_body = rendered(EngineBusy("busy"), anthropic_scope("/v1/models"))
    assert openai.status_code == 503 and openai_body["error"]["code"] == "engine_overloaded"
    assert "request-id" not in openai.headers


def test_tool_input_with_an_integer_beyond_64_bits_is_refused_by_name() -> None:
    echoed = {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"n": 2**70}}
    with pytest.raises(InvalidParameter) as refused:
        translate(messages=[{"role": "assistant", "content": [echoed]}, *HI])
    assert refused.value.param == "messages[0].content[0].input"


@pytest.mark.anyio
async def test_an_unexpected_failure_on_the_messages_surface_is_an_anthropic_500() -> None:
    async def failing(scope: Scope, receive: Receive, send: Send) -> None:
        raise ValueError("a bug")

    app = RequestTelemetryMiddleware(UnexpectedErrorMiddleware(failing))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        reply = await client.post("/v1/messages", json={})
        openai_reply = await client.post("/v1/chat/completions", json={})
    assert reply.status_code == 500
    body = orjson.loads(reply.content)
    assert body["type"] == "error" and body["error"]["type"] == "api_error"
    assert body["request_id"] == reply.headers["request-id"] == reply.headers["x-request-id"]
    assert orjson.loads(openai_reply.content)["error"]["code"] == "internal_error"
