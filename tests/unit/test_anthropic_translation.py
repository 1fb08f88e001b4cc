"""The `anthropic` provider's pure translations: the canonical request as a Messages body, a
message and an SSE stream as events, and Anthropic's errors in our tree."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

import orjson
import pytest

from modelyard.catalog.cards import DataPolicy, Deployment, ModelCard, Price, Upstream
from modelyard.errors import (
    ContextLengthExceeded,
    InvalidParameter,
    ModelyardError,
    RateLimited,
    UnsupportedParameter,
    UnsupportedSchema,
    UpstreamFailed,
    UpstreamRejected,
    UpstreamStreamBroken,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from modelyard.protocol.chat import ChatCompletionRequest
from modelyard.protocol.generation import (
    ChatEvent,
    ChoiceFinished,
    Failed,
    Finished,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from modelyard.providers.anthropic.errors import read_error, stream_error
from modelyard.providers.anthropic.reply import events_from_message, finish_reason, usage_from
from modelyard.providers.anthropic.request import count_tokens_body, messages_call
from modelyard.providers.anthropic.stream import events_from_stream
from modelyard.testing.fake_anthropic import (
    error_body,
    error_event,
    json_fragments,
    message_body,
    sse,
    stream_events,
    tool_use_block,
    usage_body,
)

CARD = ModelCard(
    "claude", "Claude", "Anthropic", "proprietary", 200_000, 8192, ("en",), frozenset()
)
DEPLOYMENT = Deployment(
    "claude-eu",
    "claude",
    "anthropic",
    "eu",
    Price(3_000_000, 15_000_000, 300_000),
    DataPolicy(30, False, "test"),
    upstream=Upstream("https://anthropic.test/v1", "claude-up"),
)
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
PERSON = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}


def body_of(**fields: Any) -> dict[str, Any]:
    return messages_call(request(**fields), CARD, DEPLOYMENT).body


def request(**fields: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {"model": "claude", "messages": [{"role": "user", "content": "Hi"}], **fields}
    )


# -- requests -------------------------------------------------------------------------------------


def test_a_system_message_written_mid_conversation_is_hoisted_to_system() -> None:
    body = body_of(
        messages=[
            {"role": "user", "content": "Hi"},
            {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
            {"role": "user", "content": "Again"},
        ]
    )
    assert body["system"] == [{"type": "text", "text": "Be brief."}]
    assert body["messages"] == [
        {
            "role": "user",
            "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "Again"}],
        }
    ]


def test_a_last_assistant_turn_is_a_prefill_without_trailing_whitespace() -> None:
    body = body_of(
        messages=[
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "The answer: "},
        ]
    )
    assert body["messages"][-1] == {
        "role": "assistant",
        "content": [{"type": "text", "text": "The answer:"}],
    }


def test_a_whitespace_prefill_is_not_sent() -> None:
    body = body_of(
        messages=[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "  \n"}]
    )
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]


def test_empty_texts_are_not_sent_and_a_refusal_is_the_assistant_text() -> None:
    body = body_of(
        messages=[
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": None, "refusal": "I can't help with that."},
            {"role": "user", "content": ""},
            {"role": "user", "content": "Why?"},
        ]
    )
    assert [turn["content"] for turn in body["messages"]] == [
        [{"type": "text", "text": "Hi"}],
        [{"type": "text", "text": "I can't help with that."}],
        [{"type": "text", "text": "Why?"}],
    ]


def test_a_conversation_of_system_messages_only_is_refused() -> None:
    with pytest.raises(InvalidParameter) as caught:
        body_of(messages=[{"role": "system", "content": "Only rules."}])
    assert caught.value.param == "messages"


def test_participant_names_are_refused_by_their_path() -> None:
    with pytest.raises(UnsupportedParameter) as caught:
        body_of(messages=[{"role": "user", "content": "Hi", "name": "ada"}])
    assert caught.value.param == "messages[0].name"


def test_tool_call_arguments_that_are_not_an_object_are_refused_by_their_path() -> None:
    call = {"id": "t1", "type": "function", "function": {"name": "get_weather", "arguments": "[1]"}}
    with pytest.raises(InvalidParameter) as caught:
        body_of(
            messages=[
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "tool_calls": [call]},
            ],
            tools=[WEATHER],
        )
    assert caught.value.param == "messages[1].tool_calls[0].function.arguments"


def test_an_empty_tool_result_has_no_content_and_empty_arguments_are_an_empty_input() -> None:
    call = {"id": "t1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
    body = body_of(
        messages=[
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "t1", "content": "", "name": "get_weather"},
        ],
        tools=[WEATHER],
    )
    assert body["messages"][1]["content"] == [
        {"type": "tool_use", "id": "t1", "name": "get_weather", "input": {}}
    ]
    assert body["messages"][2]["content"] == [{"type": "tool_result", "tool_use_id": "t1"}]


@pytest.mark.parametrize(
    ("image_url", "source"),
    [
        ("https://img.test/cat.png", {"type": "url", "url": "https://img.test/cat.png"}),
        (
            {"url": "data:image/jpeg;base64,/9j/4AAQ", "detail": "auto"},
            {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"},
        ),
    ],
)
def test_images_become_url_or_base64_sources(image_url: Any, source: dict[str, Any]) -> None:
    body = body_of(
        messages=[{"role": "user", "content": [{"type": "image_url", "image_url": image_url}]}]
    )
    assert body["messages"][0]["content"] == [{"type": "image", "source": source}]


@pytest.mark.parametrize(
    ("image_url", "error", "param"),
    [
        ({"url": "https://img.test/a.png", "detail": "low"}, UnsupportedParameter, "detail"),
        ("ftp://img.test/a.png", InvalidParameter, "url"),
        ("data:image/png,raw", InvalidParameter, "url"),
    ],
)
def test_images_anthropic_cannot_read_are_refused(
    image_url: Any, error: type[ModelyardError], param: str
) -> None:
    with pytest.raises(error) as caught:
        body_of(
            messages=[{"role": "user", "content": [{"type": "image_url", "image_url": image_url}]}]
        )
    assert caught.value.param == f"messages[0].content[0].image_url.{param}"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"n": 3}, "n"),
        ({"seed": 1}, "seed"),
        ({"random_seed": 1}, "random_seed"),
        ({"frequency_penalty": 0.2}, "frequency_penalty"),
        ({"safe_prompt": True}, "safe_prompt"),
        ({"temperature": 1.01}, "temperature"),
    ],
)
def test_what_anthropic_cannot_honour_is_refused_by_name(
    fields: dict[str, Any], param: str
) -> None:
    with pytest.raises((InvalidParameter, UnsupportedParameter)) as caught:
        body_of(**fields)
    assert caught.value.param == param


def test_zero_penalties_and_a_temperature_of_one_are_honoured() -> None:
    body = body_of(presence_penalty=0.0, frequency_penalty=0.0, temperature=1.0, n=1)
    assert body["temperature"] == 1.0
    assert "presence_penalty" not in body and "frequency_penalty" not in body


def test_max_completion_tokens_wins_and_a_tool_without_type_is_an_object() -> None:
    body = body_of(
        max_tokens=10,
        max_completion_tokens=20,
        tools=[{"type": "function", "function": {"name": "ping", "parameters": {}}}],
    )
    assert body["max_tokens"] == 20
    assert body["tools"] == [{"name": "ping", "input_schema": {"type": "object"}}]


@pytest.mark.parametrize(
    ("fields", "tools", "choice", "answer"),
    [
        ({}, ["person"], {"type": "tool", "name": "person"}, "person"),
        ({"tools": [WEATHER]}, ["get_weather", "person"], {"type": "any"}, "person"),
        (
            {"tools": [WEATHER], "parallel_tool_calls": False},
            ["get_weather", "person"],
            {"type": "any", "disable_parallel_tool_use": True},
            "person",
        ),
        (
            {"tools": [WEATHER], "tool_choice": "none"},
            ["get_weather", "person"],
            {"type": "tool", "name": "person"},
            "person",
        ),
        ({"tools": [WEATHER], "tool_choice": "required"}, ["get_weather"], {"type": "any"}, None),
    ],
    ids=["alone", "beside-tools", "one-at-a-time", "tools-off", "tools-required"],
)
def test_a_json_schema_answer_is_a_tool_the_model_must_call_unless_a_real_call_is_required(
    fields: dict[str, Any], tools: list[str], choice: dict[str, Any], answer: str | None
) -> None:
    response_format = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}}
    call = messages_call(request(response_format=response_format, **fields), CARD, DEPLOYMENT)
    assert [tool["name"] for tool in call.body["tools"]] == tools
    assert call.body["tool_choice"] == choice
    assert call.answer_tool == answer


def test_a_json_object_answer_is_a_tool_taking_any_object() -> None:
    call = messages_call(request(response_format={"type": "json_object"}), CARD, DEPLOYMENT)
    (tool,) = call.body["tools"]
    assert (tool["name"], tool["input_schema"]) == ("json_answer", {"type": "object"})
    assert call.answer_tool == "json_answer"


def test_an_answer_tool_named_like_a_declared_tool_is_refused() -> None:
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "get_weather", "schema": PERSON},
    }
    with pytest.raises(InvalidParameter) as caught:
        body_of(tools=[WEATHER], response_format=response_format)
    assert caught.value.param == "response_format.json_schema.name"


def test_a_json_schema_whose_top_is_not_an_object_is_refused() -> None:
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "n", "schema": {"type": "array"}},
    }
    with pytest.raises(UnsupportedSchema) as caught:
        body_of(response_format=response_format)
    assert caught.value.param == "response_format.json_schema.schema"


def test_the_count_tokens_body_keeps_only_what_the_endpoint_takes() -> None:
    body = body_of(
        messages=[{"role": "system", "content": "S"}, {"role": "user", "content": "Hi"}],
        tools=[WEATHER],
        tool_choice="auto",
        temperature=0.5,
        stop="X",
        user="u",
    )
    assert set(count_tokens_body(body)) == {"model", "messages", "system", "tools", "tool_choice"}


# -- answers --------------------------------------------------------------------------------------


def test_usage_sums_the_prompt_parts_and_counts_cache_reads_as_cached() -> None:
    assert usage_from(usage_body(100, 7, cache_read=1000, cache_creation=50)) == Usage(
        1150, 7, cached_prompt_tokens=1000
    )
    assert usage_from({"input_tokens": "x", "output_tokens": True}) == Usage(0, 0)


@pytest.mark.parametrize(
    ("stop_reason", "called_tools", "expected"),
    [
        ("end_turn", False, "stop"),
        ("stop_sequence", False, "stop"),
        ("max_tokens", False, "length"),
        ("model_context_window_exceeded", False, "length"),
        ("tool_use", True, "tool_calls"),
        ("tool_use", False, "stop"),  # only the JSON answer tool was called
        ("refusal", False, "content_filter"),
        ("pause_turn", False, "stop"),
        (None, False, "stop"),
    ],
)
def test_stop_reasons_map_to_canonical_finish_reasons(
    stop_reason: str | None, called_tools: bool, expected: str
) -> None:
    assert finish_reason(stop_reason, called_tools) == expected


async def collect(events: AsyncIterator[ChatEvent]) -> list[ChatEvent]:
    return [event async for event in events]


@pytest.mark.anyio
async def test_a_message_in_an_unknown_shape_fails_and_still_reports_its_usage() -> None:
    reported: list[Usage] = []
    events = await collect(
        events_from_message({"usage": usage_body(9, 2)}, "claude-eu", None, 5, reported.append)
    )
    assert len(events) == 1 and isinstance(events[0], Failed)
    assert isinstance(events[0].error, UpstreamFailed)
    assert reported == [Usage(9, 2)]


@pytest.mark.anyio
async def test_a_message_without_usage_is_estimated_and_the_answer_tool_is_content() -> None:
    body = message_body([tool_use_block("person", {"name": "Ada"})])
    del body["usage"]
    reported: list[Usage] = []
    events = await collect(events_from_message(body, "claude-eu", "person", 5, reported.append))
    assert events[:2] == [TextDelta(0, '{"name":"Ada"}'), ChoiceFinished(0, "stop")]
    assert reported == [Usage(5, 4, estimated=True)]
    assert events[-1] == Finished(reported[0])


# -- streams --------------------------------------------------------------------------------------


async def stream_of(
    frames: Sequence[bytes], answer_tool: str | None = None
) -> tuple[list[ChatEvent], list[Usage]]:
    async def lines() -> AsyncIterator[bytes]:
        for frame in frames:
            for line in (frame + b"\n\n").split(b"\n")[:-1]:
                yield line

    reported: list[Usage] = []
    source = lines()
    first = await anext(source, None)
    events = await collect(
        events_from_stream(first, source, "claude-eu", answer_tool, 30, reported.append)
    )
    return events, reported


@pytest.mark.anyio
async def test_a_stream_of_text_and_a_tool_call_ends_with_its_exact_usage() -> None:
    frames = stream_events(
        ["Let me", " check."],
        tool_uses=[("toolu_1", "get_weather", json_fragments({"city": "Paris"}, 5))],
        usage=usage_body(40, 20, cache_read=8),
    )
    events, reported = await stream_of(frames)
    assert events == [
        TextDelta(0, "Let me"),
        TextDelta(0, " check."),
        ToolCallDelta(0, 0, "toolu_1", "get_weather", '{"city":"Paris"}'),
        ChoiceFinished(0, "tool_calls"),
        Finished(Usage(48, 20, cached_prompt_tokens=8)),
    ]
    assert reported == [Usage(48, 20, cached_prompt_tokens=8)]


@pytest.mark.anyio
async def test_unknown_events_are_ignored_and_unstopped_calls_are_emitted_at_message_stop() -> None:
    frames = stream_events((), tool_uses=[("t", "get_weather", ['{"city":"Rome"}'])])
    without_block_stop = [f for f in frames if b"content_block_stop" not in f]
    unknown = sse({"type": "future_event", "detail": 1})
    events, _ = await stream_of([without_block_stop[0], unknown, *without_block_stop[1:]])
    assert ToolCallDelta(0, 0, "t", "get_weather", '{"city":"Rome"}') in events
    assert isinstance(events[-1], Finished)


@pytest.mark.anyio
async def test_the_answer_tools_fragments_stream_as_text_and_text_beside_it_is_dropped() -> None:
    frames = stream_events(["preamble"], tool_uses=[("t", "person", ['{"name"', ':"Ada"}'])])
    events, _ = await stream_of(frames, answer_tool="person")
    assert [e for e in events if isinstance(e, TextDelta)] == [
        TextDelta(0, '{"name"'),
        TextDelta(0, ':"Ada"}'),
    ]
    assert ChoiceFinished(0, "stop") in events


@pytest.mark.parametrize(
    ("frames", "error"),
    [
        ([error_event("overloaded_error")], UpstreamUnavailable),
        ([b"event: error\ndata: upstream fell over"], UpstreamFailed),
        ([error_event("rate_limit_error", "slow")], RateLimited),
        ([b"event: content_block_delta\ndata: [1, 2]"], UpstreamStreamBroken),
        ([sse({"type": "content_block_delta", "index": 7, "delta": {}})], UpstreamStreamBroken),
        ([], UpstreamStreamBroken),
    ],
    ids=["overloaded", "error-not-json", "rate-limited", "not-an-object", "unknown-block", "cut"],
)
@pytest.mark.anyio
async def test_a_stream_that_fails_after_message_start_reports_what_arrived(
    frames: list[bytes], error: type[ModelyardError]
) -> None:
    head = stream_events(["Hello"], usage=usage_body(25, 90))[:4]  # start, block, ping, "Hello"
    events, reported = await stream_of([*head, *frames])
    assert events[0] == TextDelta(0, "Hello")
    assert isinstance(events[-1], Failed) and type(events[-1].error) is error
    assert reported == [Usage(25, 2, estimated=True)]  # message_start's prompt, 5 characters


@pytest.mark.anyio
async def test_content_before_message_start_is_a_broken_stream_estimated_in_full() -> None:
    frames = stream_events(["Hi"])[1:]
    events, reported = await stream_of(frames)
    assert isinstance(events[0], Failed) and isinstance(events[0].error, UpstreamStreamBroken)
    assert reported == [Usage(30, 0, estimated=True)]


@pytest.mark.anyio
async def test_an_empty_stream_is_broken() -> None:
    events, reported = await stream_of([])
    assert len(events) == 1 and isinstance(events[0], Failed)
    assert reported == [Usage(30, 0, estimated=True)]


# -- errors ---------------------------------------------------------------------------------------


TOO_LONG = "prompt is too long: 3 tokens > 2 maximum"


def body(kind: str, message: str = "m", **extra: Any) -> bytes:
    return orjson.dumps({**error_body(kind, message), **extra})


@pytest.mark.parametrize(
    ("status", "headers", "payload", "error", "retry_after"),
    [
        (429, {"retry-after": "7"}, body("rate_limit_error"), RateLimited, 7),
        (429, {"retry-after-ms": "1500"}, body("rate_limit_error"), RateLimited, 2),
        (529, {}, body("overloaded_error"), UpstreamUnavailable, 1),
        (503, {"retry-after": "4"}, b"upstream connect error", UpstreamUnavailable, 4),
        (500, {}, body("overloaded_error"), UpstreamUnavailable, 1),
        (400, {}, body("invalid_request_error", TOO_LONG), ContextLengthExceeded, None),
        (400, {}, body("invalid_request_error", "the prompt is too long"), UpstreamRejected, None),
        (413, {}, body("request_too_large", "Request exceeds 32 MB"), UpstreamRejected, None),
        (404, {}, body("not_found_error", "model: claude-x"), UpstreamRejected, None),
        (402, {}, body("billing_error"), UpstreamFailed, None),
        (500, {}, body("api_error"), UpstreamFailed, None),
        (504, {}, body("timeout_error"), UpstreamTimeout, None),
        (502, {}, b"<html>bad gateway</html>", UpstreamFailed, None),
    ],
)  # fmt: skip
def test_non_2xx_answers_map_by_status_and_error_type(
    status: int,
    headers: dict[str, str],
    payload: bytes,
    error: type[ModelyardError],
    retry_after: int | None,
) -> None:
    mapped = read_error("claude-eu", status, headers, payload)
    assert type(mapped) is error
    if retry_after is not None:
        assert mapped.retry_after_s == retry_after


def test_a_refused_credential_is_logged_by_deployment_and_never_by_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR):
        mapped = read_error("claude-eu", 401, {}, body("authentication_error", "invalid x-api-key"))
    assert type(mapped) is UpstreamFailed
    assert "claude-eu" in caplog.text and "x-api-key" not in mapped.message


def test_a_rejection_passes_the_upstream_message_and_any_reported_usage() -> None:
    mapped = read_error(
        "claude-eu",
        400,
        {},
        body("invalid_request_error", "messages: roles must alternate", usage=usage_body(5, 3)),
    )
    assert "messages: roles must alternate" in mapped.message
    assert mapped.upstream_usage == (5, 3)
    assert read_error("claude-eu", 400, {}, body("invalid_request_error")).upstream_usage is None


def test_in_band_errors_map_by_their_type() -> None:
    assert type(stream_error("d", error_body("invalid_request_error", "x"))) is UpstreamRejected
    assert type(stream_error("d", error_body("api_error", "x"))) is UpstreamFailed
    assert type(stream_error("d", {})) is UpstreamFailed
