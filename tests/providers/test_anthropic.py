"""The `anthropic` provider through a real gateway, driven by the official `openai` SDK, against a
fake that speaks Anthropic's Messages API exactly (tests/providers/anthropic_fixtures.py)."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import orjson
import pytest

from modelyard.catalog.cards import Price
from modelyard.ledger.cost import cost_micros
from modelyard.protocol.generation import Usage
from modelyard.testing.fake_anthropic import (
    FakeAnthropic,
    JsonReply,
    StreamReply,
    error_event,
    error_reply,
    json_fragments,
    message_body,
    overloaded,
    prompt_too_long,
    rate_limited,
    stream_events,
    text_block,
    tool_use_block,
    usage_body,
)
from tests.providers.anthropic_fixtures import (
    ANTHROPIC_SECRET,
    anthropic_gateway,
    anthropic_server,
    anthropic_upstream,
    claude,
)
from tests.support.gateway import GatewayProcess
from tests.support.ledger_rows import request_record

__all__ = ["anthropic_gateway", "anthropic_server", "anthropic_upstream", "claude"]

HELLO = [{"role": "user", "content": "Hello"}]
WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
TIME_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
}
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}
PERSON_FORMAT = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}}
PRICE = Price(3_000_000, 15_000_000, 300_000)


# -- the request as Anthropic receives it ---------------------------------------------------------


def test_text_answer_carries_the_catalog_model_key_version_and_hoisted_system(
    claude: openai.OpenAI, anthropic_upstream: FakeAnthropic
) -> None:
    completion = claude.chat.completions.create(
        model="claude-sonnet",
        messages=[
            {"role": "system", "content": "Be terse."},
            {"role": "developer", "content": "Answer in English."},
            {"role": "user", "content": "Hello"},
        ],
    )
    assert completion.choices[0].message.content == "Hello from Claude."
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "claude-sonnet"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (12, 5)
    sent = anthropic_upstream.requests[-1]
    assert sent.path == "/v1/messages"
    assert sent.headers["x-api-key"] == ANTHROPIC_SECRET
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.headers["content-type"] == "application/json"
    assert "authorization" not in sent.headers
    assert sent.body == {
        "model": "claude-sonnet-up",
        "max_tokens": 8192,  # required upstream: the card's maximum when the request has none
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello"}]}],
        "system": [
            {"type": "text", "text": "Be terse."},
            {"type": "text", "text": "Answer in English."},
        ],
    }


def test_sampling_parameters_stop_and_user_are_translated(
    claude: openai.OpenAI, anthropic_upstream: FakeAnthropic
) -> None:
    claude.chat.completions.create(
        model="claude-sonnet",
        messages=HELLO,
        max_tokens=64,
        temperature=0.3,
        top_p=0.9,
        stop=["END", "STOP"],
        user="user-42",
        extra_body={"top_k": 5},
    )
    body = anthropic_upstream.requests[-1].body
    assert body["max_tokens"] == 64
    assert (body["temperature"], body["top_p"], body["top_k"]) == (0.3, 0.9, 5)
    assert body["stop_sequences"] == ["END", "STOP"]
    assert body["metadata"] == {"user_id": "user-42"}
    assert "stop" not in body and "user" not in body


def test_a_tool_conversation_becomes_alternating_turns_with_tool_use_and_tool_result_blocks(
    claude: openai.OpenAI, anthropic_upstream: FakeAnthropic
) -> None:
    claude.chat.completions.create(
        model="claude-sonnet",
        messages=[
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {"role": "user", "content": "And the time."},
            {
                "role": "assistant",
                "content": "Let me check.",
                "tool_calls": [
                    {
                        "id": "toolu_a",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    },
                    {
                        "id": "toolu_b",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_a", "content": "sunny"},
            {"role": "tool", "tool_call_id": "toolu_b", "content": "rainy"},
            {"role": "user", "content": "Thanks."},
        ],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
    )
    body = anthropic_upstream.requests[-1].body
    assert body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Weather in Paris and Rome?"},
                {"type": "text", "text": "And the time."},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_a", "name": "get_weather",
                 "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_b", "name": "get_weather",
                 "input": {"city": "Rome"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_a", "content": "sunny"},
                {"type": "tool_result", "tool_use_id": "toolu_b", "content": "rainy"},
                {"type": "text", "text": "Thanks."},
            ],
        },
    ]  # fmt: skip
    assert body["tools"] == [
        {
            "name": "get_weather",
            "description": "The weather in a city.",
            "input_schema": WEATHER_TOOL["function"]["parameters"],
        }
    ]
    assert "tool_choice" not in body  # Anthropic's default is auto


PNG_DATA_URL = "data:image/png;base64,iVBORw0KGgo="


def test_an_image_data_url_becomes_a_base64_image_block(
    claude: openai.OpenAI, anthropic_upstream: FakeAnthropic
) -> None:
    claude.chat.completions.create(
        model="claude-sonnet",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": PNG_DATA_URL}},
                ],
            }
        ],
    )
    (turn,) = anthropic_upstream.requests[-1].body["messages"]
    assert turn["content"][1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
    }


@pytest.mark.parametrize(
    ("tool_choice", "parallel", "expected"),
    [
        ("auto", None, {"type": "auto"}),
        ("none", None, {"type": "none"}),
        ("required", None, {"type": "any"}),
        (
            {"type": "function", "function": {"name": "get_time"}},
            None,
            {"type": "tool", "name": "get_time"},
        ),
        ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
    ],
    ids=["auto", "none", "required", "named", "required-one-at-a-time", "one-at-a-time"],
)
def test_tool_choice_is_translated(
    claude: openai.OpenAI,
    anthropic_upstream: FakeAnthropic,
    tool_choice: Any,
    parallel: bool | None,
    expected: dict[str, Any],
) -> None:
    extra: dict[str, Any] = {}
    if tool_choice is not None:
        extra["tool_choice"] = tool_choice
    if parallel is not None:
        extra["parallel_tool_calls"] = parallel
    completion = claude.chat.completions.create(
        model="claude-sonnet",
        messages=HELLO,
        tools=[WEATHER_TOOL, TIME_TOOL],  # type: ignore[list-item]
        **extra,
    )
    assert anthropic_upstream.requests[-1].body["tool_choice"] == expected
    calls = completion.choices[0].message.tool_calls or []
    if expected["type"] in ("any", "tool"):  # the fake calls the tool it is made to call
        assert completion.choices[0].finish_reason == "tool_calls"
        assert calls and calls[0].type == "function"
        assert calls[0].function.name == expected.get("name", "get_weather")
    else:
        assert completion.choices[0].finish_reason == "stop" and not calls


# -- answers --------------------------------------------------------------------------------------


def test_a_tool_use_answer_is_a_tool_call_with_its_input_as_arguments(
    claude: openai.OpenAI, anthropic_upstream: FakeAnthropic
) -> None:
    anthropic_upstream.enqueue(
        JsonReply(
            message_body(
                [
                    text_block("Let me check."),
                    tool_use_block("get_weather", {"city": "Paris"}, id="toolu_01"),
                ]
            )
        )
    )
    completion = claude.chat.completions.create(
        model="claude-sonnet",
        messages=HELLO,
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Let me check."
    (call,) = choice.message.tool_calls or []
    assert call.type == "function"
    assert (call.id, call.function.name) == ("toolu_01", "get_weather")
    assert orjson.loads(call.function.arguments) == {"city": "Paris"}


def test_streamed_text_arrives_in_pieces_past_pings_with_usage(
    claude: openai.OpenAI, anthropic_upstream: FakeAnthropic
) -> None:
    anthropic_upstream.enqueue(
        StreamReply(stream_events(["One", " two", " three"], usage=usage_body(20, 3)))
    )
    chunks = list(
        claude.chat.completions.create(
            model="claude-sonnet",
            messages=HELLO,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    pieces = [c.choices[0].delta.content for c in chunks if c.choices]
    pieces = [piece for piece in pieces if piece]
    assert pieces == ["One", " two", " three"]
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop"
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (20, 3)
    assert anthropic_upstream.requests[-1].body["stream"] is True


def test_streamed_input_json_fragments_arrive_as_one_complete_tool_call(
    claude: openai.OpenAI, anthropic_upstream: FakeAnthropic
) -> None:
    anthropic_upstream.enqueue(
        StreamReply(
            stream_events(
                ["Let me check."],
                tool_uses=[("toolu_9", "get_weather", ["", '{"city": "Pa', 'ris"}'])],
            )
        )
    )
    chunks = list(
        claude.chat.completions.create(
            model="claude-sonnet",
            messages=HELLO,
            tools=[WEATHER_TOOL],  # type: ignore[list-item]
            stream=True,
        )
    )
    calls = [call for c in chunks if c.choices for call in (c.choices[0].delta.tool_calls or [])]
    assert len(calls) == 1
    assert calls[0].function is not None
    assert (calls[0].id, calls[0].function.name, calls[0].function.arguments) == (
        "toolu_9",
        "get_weather",
        '{"city": "Paris"}',
    )
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


def test_a_json_schema_answer_is_asked_as_a_forced_tool_and_returned_as_content(
    claude: openai.OpenAI, anthropic_upstream: FakeAnthropic
) -> None:
    anthropic_upstream.enqueue(
        JsonReply(message_body([tool_use_block("person", {"name": "Ada", "age": 36})]))
    )
    completion = claude.chat.completions.create(
        model="claude-sonnet",
        messages=HELLO,
        response_format=PERSON_FORMAT,  # type: ignore[arg-type]
    )
    choice = completion.choices[0]
    assert orjson.loads(choice.message.content or "") == {"name": "Ada", "age": 36}
    assert choice.finish_reason == "stop" and not choice.message.tool_calls
    body = anthropic_upstream.requests[-1].body
    (tool,) = body["tools"]
    assert (tool["name"], tool["input_schema"]) == ("person", PERSON)
    assert body["tool_choice"] == {"type": "tool", "name": "person"}


def test_a_streamed_json_answer_streams_the_tool_input_as_content(
    claude: openai.OpenAI, anthropic_upstream: FakeAnthropic
) -> None:
    fragments = json_fragments({"name": "Ada", "age": 36}, size=6)
    anthropic_upstream.enqueue(StreamReply(stream_events((), [("toolu_1", "person", fragments)])))
    chunks = list(
        claude.chat.completions.create(
            model="claude-sonnet",
            messages=HELLO,
            response_format=PERSON_FORMAT,  # type: ignore[arg-type]
            stream=True,
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert orjson.loads(text) == {"name": "Ada", "age": 36}
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"


def test_json_answer_beside_callable_tools_requires_some_tool_call(
    claude: openai.OpenAI, anthropic_upstream: FakeAnthropic
) -> None:
    anthropic_upstream.enqueue(
        JsonReply(message_body([tool_use_block("person", {"name": "Ada", "age": 36})]))
    )
    completion = claude.chat.completions.create(
        model="claude-sonnet",
        messages=HELLO,
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        response_format=PERSON_FORMAT,  # type: ignore[arg-type]
    )
    assert orjson.loads(completion.choices[0].message.content or "") == {"name": "Ada", "age": 36}
    body = anthropic_upstream.requests[-1].body
    assert [tool["name"] for tool in body["tools"]] == ["get_weather", "person"]
    assert body["tool_choice"] == {"type": "any"}


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("refusal", "content_filter"),
    ],
)
def test_stop_reasons_become_finish_reasons(
    claude: openai.OpenAI, anthropic_upstream: FakeAnthropic, stop_reason: str, finish_reason: str
) -> None:
    anthropic_upstream.enqueue(JsonReply(message_body("Partial", stop_reason=stop_reason)))
    completion = claude.chat.completions.create(model="claude-sonnet", messages=HELLO)
    assert completion.choices[0].finish_reason == finish_reason


def test_a_streamed_max_tokens_stop_is_finish_reason_length(
    claude: openai.OpenAI, anthropic_upstream: FakeAnthropic
) -> None:
    anthropic_upstream.enqueue(StreamReply(stream_events(["Cut"], stop_reason="max_tokens")))
    chunks = list(
        claude.chat.completions.create(
            model="claude-sonnet", messages=HELLO, max_tokens=1, stream=True
        )
    )
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"


# -- usage and billing ----------------------------------------------------------------------------


def test_cache_reads_are_prompt_tokens_billed_at_the_cached_price(
    claude: openai.OpenAI, anthropic_gateway: GatewayProcess, anthropic_upstream: FakeAnthropic
) -> None:
    usage = usage_body(input_tokens=100, output_tokens=50, cache_read=1000, cache_creation=200)
    anthropic_upstream.enqueue(JsonReply(message_body("Cached.", usage=usage)))
    raw = claude.chat.completions.with_raw_response.create(model="claude-sonnet", messages=HELLO)
    completion = raw.parse()
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (1300, 50)
    row = request_record(anthropic_gateway, raw.headers["x-request-id"])
    assert (row["prompt_tokens"], row["cached_prompt_tokens"]) == (1300, 1000)
    assert row["completion_tokens"] == 50 and not row["usage_estimated"]
    expected = cost_micros(PRICE, Usage(1300, 50, cached_prompt_tokens=1000))
    assert row["cost_micros"] == expected
    assert expected < cost_micros(PRICE, Usage(1300, 50))  # the cache read is cheaper


def test_streamed_usage_is_the_cumulative_message_delta_with_cache_reads(
    claude: openai.OpenAI, anthropic_gateway: GatewayProcess, anthropic_upstream: FakeAnthropic
) -> None:
    usage = usage_body(input_tokens=10, output_tokens=7, cache_read=500)
    anthropic_upstream.enqueue(StreamReply(stream_events(["a", "b"], usage=usage)))
    raw = claude.chat.completions.with_raw_response.create(
        model="claude-sonnet", messages=HELLO, stream=True
    )
    for _ in raw.parse():
        pass
    row = request_record(anthropic_gateway, raw.headers["x-request-id"])
    assert (row["prompt_tokens"], row["cached_prompt_tokens"], row["completion_tokens"]) == (
        510,
        500,
        7,
    )
    assert row["cost_micros"] == cost_micros(PRICE, Usage(510, 7, cached_prompt_tokens=500))


# -- faults ---------------------------------------------------------------------------------------


def test_429_is_passed_on_with_its_retry_after(
    claude: openai.OpenAI, anthropic_upstream: FakeAnthropic
) -> None:
    anthropic_upstream.enqueue(rate_limited("7"))
    with pytest.raises(openai.RateLimitError) as caught:
        claude.chat.completions.create(model="claude-sonnet", messages=HELLO)
    assert caught.value.response.headers["retry-after"] == "7"
    assert caught.value.code == "rate_limited"


def test_a_rate_limited_first_deployment_falls_back_to_the_next_in_its_route(
    claude: openai.OpenAI, anthropic_upstream: FakeAnthropic
) -> None:
    anthropic_upstream.enqueue(rate_limited("3"), JsonReply(message_body("From the backup.")))
    raw = claude.chat.completions.with_raw_response.create(model="claude-any", messages=HELLO)
    assert raw.parse().choices[0].message.content == "From the backup."
    assert_answered_by_the_second(raw.headers, anthropic_upstream)


def test_overload_529_is_a_503_with_a_retry_hint(
    claude: openai.OpenAI, anthropic_upstream: FakeAnthropic
) -> None:
    anthropic_upstream.enqueue(overloaded())
    with pytest.raises(openai.InternalServerError) as caught:
        claude.chat.completions.create(model="claude-sonnet", messages=HELLO)
    assert caught.value.status_code == 503
    assert caught.value.code == "upstream_unavailable"
    assert int(caught.value.response.headers["retry-after"]) >= 1


def test_a_prompt_too_long_is_context_length_exceeded(
    claude: openai.OpenAI, anthropic_upstream: FakeAnthropic
) -> None:
    anthropic_upstream.enqueue(prompt_too_long())
    with pytest.raises(openai.BadRequestError) as caught:
        claude.chat.completions.create(model="claude-sonnet", messages=HELLO)
    assert caught.value.code == "context_length_exceeded"
    assert "210000 tokens > 200000" in caught.value.message


@pytest.mark.parametrize(
    ("status", "kind"),
    [(400, "invalid_request_error"), (413, "request_too_large"), (404, "not_found_error")],
)
def test_a_refused_request_passes_anthropics_reason_on(
    claude: openai.OpenAI, anthropic_upstream: FakeAnthropic, status: int, kind: str
) -> None:
    anthropic_upstream.enqueue(error_reply(status, kind, f"refused: {kind}"))
    with pytest.raises(openai.BadRequestError) as caught:
        claude.chat.completions.create(model="claude-sonnet", messages=HELLO)
    assert caught.value.code == "upstream_rejected_request"
    assert f"refused: {kind}" in caught.value.message


@pytest.mark.parametrize(
    ("status", "kind"),
    [(500, "api_error"), (401, "authentication_error"), (403, "permission_error")],
)
def test_upstream_failures_are_502s_that_leak_no_secret_or_url(
    claude: openai.OpenAI, anthropic_upstream: FakeAnthropic, status: int, kind: str
) -> None:
    anthropic_upstream.enqueue(error_reply(status, kind, f"detail {ANTHROPIC_SECRET}"))
    with pytest.raises(openai.APIStatusError) as caught:
        claude.chat.completions.create(model="claude-sonnet", messages=HELLO)
    assert caught.value.status_code == 502
    assert caught.value.code == "upstream_error"
    assert ANTHROPIC_SECRET not in caught.value.response.text
    assert anthropic_upstream.root_url not in caught.value.response.text


def test_a_stream_refused_before_its_first_byte_is_a_real_status(
    claude: openai.OpenAI, anthropic_upstream: FakeAnthropic
) -> None:
    anthropic_upstream.enqueue(overloaded())
    with pytest.raises(openai.InternalServerError) as caught:
        list(claude.chat.completions.create(model="claude-sonnet", messages=HELLO, stream=True))
    assert caught.value.status_code == 503


def test_an_overloaded_stream_before_any_output_falls_back_in_its_route(
    claude: openai.OpenAI, anthropic_upstream: FakeAnthropic
) -> None:
    anthropic_upstream.enqueue(
        StreamReply([stream_events()[0], error_event()]),
        StreamReply(stream_events(["Backup."])),
    )
    raw = claude.chat.completions.with_raw_response.create(
        model="claude-any", messages=HELLO, stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    assert text == "Backup."
    assert_answered_by_the_second(raw.headers, anthropic_upstream)


UPSTREAM_MODEL = {"sonnet-eu": "claude-sonnet-up", "haiku-eu": "claude-haiku-up"}


def assert_answered_by_the_second(headers: httpx.Headers, upstream: FakeAnthropic) -> None:
    """The route's two deployments were both asked, and the second answered. Which goes first
    depends on what earlier tests left: a deployment resting after a 429 is tried last."""
    first, second = (request.body["model"] for request in upstream.requests)
    assert first != second
    assert UPSTREAM_MODEL[headers["x-modelyard-deployment"]] == second
    assert headers["x-modelyard-attempts"] == "2"


WHOLE = stream_events(["Hel", "lo", " there"], usage=usage_body(12, 40))
MESSAGE_START = WHOLE[0]
TEXT_HEAD = stream_events(["Hel", "lo", " there"])[1:5]  # block start, ping, two text deltas


@pytest.mark.parametrize(
    "reply",
    [
        StreamReply(WHOLE, reset_after=5),
        StreamReply([MESSAGE_START, *TEXT_HEAD, b"event: content_block_delta\ndata: {not json"]),
        StreamReply([MESSAGE_START, *TEXT_HEAD, error_event("api_error", "Internal error")]),
        StreamReply(WHOLE[:-1]),
    ],
    ids=["reset-mid-stream", "malformed-event", "error-event", "no-message-stop"],
)
def test_a_broken_stream_is_an_in_band_error_billed_once_for_what_arrived(
    claude: openai.OpenAI,
    anthropic_gateway: GatewayProcess,
    anthropic_upstream: FakeAnthropic,
    reply: StreamReply,
) -> None:
    anthropic_upstream.enqueue(reply)
    raw = claude.chat.completions.with_raw_response.create(
        model="claude-sonnet", messages=HELLO, stream=True
    )
    received: list[str] = []
    with pytest.raises((openai.APIError, httpx.HTTPError)):
        for chunk in raw.parse():
            received += [chunk.choices[0].delta.content or ""] if chunk.choices else []
    assert "".join(received).startswith("Hello")
    row = request_record(anthropic_gateway, raw.headers["x-request-id"])
    assert row["prompt_tokens"] == 12  # message_start's count
    assert 1 <= row["completion_tokens"] <= 40
    assert row["status"] != 200
    assert row["cost_micros"] == cost_micros(
        PRICE, Usage(row["prompt_tokens"], row["completion_tokens"])
    )


def test_a_client_leaving_mid_stream_is_billed_once_for_what_arrived(
    anthropic_gateway: GatewayProcess, anthropic_upstream: FakeAnthropic
) -> None:
    pieces = [f" w{i}" for i in range(60)]
    anthropic_upstream.enqueue(
        StreamReply(stream_events(pieces, usage=usage_body(12, 60)), delay_s=0.05)
    )
    with httpx.stream(
        "POST",
        f"{anthropic_gateway.base_url}/v1/chat/completions",
        json={"model": "claude-sonnet", "messages": HELLO, "stream": True},
        headers={"Authorization": f"Bearer {anthropic_gateway.admin_key}"},
        timeout=30,
    ) as response:
        request_id = response.headers["x-request-id"]
        lines = response.iter_lines()
        received = [line for line in (next(lines) for _ in range(8)) if line.startswith("data: {")]
    assert received
    row = request_record(anthropic_gateway, request_id)
    assert row["client_disconnected"] and row["outcome"] == "client_disconnected"
    assert row["prompt_tokens"] == 12
    assert 1 <= row["completion_tokens"] < 60  # what had arrived, not the whole answer
    assert row["usage_estimated"]


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"n": 2}, "n"),
        ({"temperature": 1.5}, "temperature"),
        ({"seed": 7}, "seed"),
        ({"presence_penalty": 0.5}, "presence_penalty"),
    ],
)
def test_what_anthropic_cannot_honour_is_refused_by_name_before_the_upstream(
    claude: openai.OpenAI, anthropic_upstream: FakeAnthropic, extra: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        claude.chat.completions.create(model="claude-sonnet", messages=HELLO, **extra)
    assert caught.value.param == param
    assert anthropic_upstream.requests == []


def test_a_json_schema_that_is_not_an_object_is_refused(
    claude: openai.OpenAI, anthropic_upstream: FakeAnthropic
) -> None:
    listing = {"type": "json_schema", "json_schema": {"name": "names", "schema": {"type": "array"}}}
    with pytest.raises(openai.BadRequestError) as caught:
        claude.chat.completions.create(
            model="claude-sonnet",
            messages=HELLO,
            response_format=listing,  # type: ignore[arg-type]
        )
    assert caught.value.param == "response_format.json_schema.schema"
    assert anthropic_upstream.requests == []


# -- the Anthropic Messages surface in front of an Anthropic upstream ----------------------------


def test_anthropic_sdk_through_the_messages_surface_reaches_the_upstream(
    anthropic_gateway: GatewayProcess, anthropic_upstream: FakeAnthropic
) -> None:
    anthropic = pytest.importorskip("anthropic")
    client = anthropic.Anthropic(
        base_url=anthropic_gateway.base_url, api_key=anthropic_gateway.admin_key, max_retries=0
    )
    anthropic_upstream.enqueue(
        JsonReply(message_body([tool_use_block("get_weather", {"city": "Paris"})]))
    )
    message = client.messages.create(
        model="claude-sonnet",
        max_tokens=100,
        system="Be terse.",
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[
            {
                "name": "get_weather",
                "description": "The weather in a city.",
                "input_schema": WEATHER_TOOL["function"]["parameters"],
            }
        ],
    )
    assert message.stop_reason == "tool_use"
    (block,) = [b for b in message.content if b.type == "tool_use"]
    assert (block.name, block.input) == ("get_weather", {"city": "Paris"})
    sent = anthropic_upstream.requests[-1]
    assert sent.headers["x-api-key"] == ANTHROPIC_SECRET
    assert sent.body["system"] == [{"type": "text", "text": "Be terse."}]
    assert sent.body["max_tokens"] == 100


def test_count_tokens_asks_the_anthropic_upstream(
    anthropic_gateway: GatewayProcess, anthropic_upstream: FakeAnthropic
) -> None:
    anthropic = pytest.importorskip("anthropic")
    client = anthropic.Anthropic(
        base_url=anthropic_gateway.base_url, api_key=anthropic_gateway.admin_key, max_retries=0
    )
    anthropic_upstream.enqueue(JsonReply({"input_tokens": 4242}))
    counted = client.messages.count_tokens(
        model="claude-sonnet", system="sys", messages=[{"role": "user", "content": "Hello"}]
    )
    assert counted.input_tokens == 4242
    sent = anthropic_upstream.requests[-1]
    assert sent.path == "/v1/messages/count_tokens"
    assert sent.body == {
        "model": "claude-sonnet-up",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello"}]}],
        "system": [{"type": "text", "text": "sys"}],
    }


def test_an_sse_frame_split_across_writes_or_with_crlf_endings_is_read_whole(
    claude: openai.OpenAI, anthropic_upstream: FakeAnthropic
) -> None:
    events = stream_events(["Whole"])  # start, block start, ping, delta, block stop, ...
    name, data = events[3].split(b"\n", 1)
    crlf = events[4].replace(b"\n", b"\r\n") + b"\r\n\r\n"
    writes = [
        *(event + b"\n\n" for event in events[:3]),
        name + b"\n",
        data + b"\n\n",
        crlf,
        *(event + b"\n\n" for event in events[5:]),
    ]
    anthropic_upstream.enqueue(StreamReply(writes, separator=b""))
    chunks = list(
        claude.chat.completions.create(model="claude-sonnet", messages=HELLO, stream=True)
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Whole"
