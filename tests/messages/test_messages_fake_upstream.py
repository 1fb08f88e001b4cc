"""The Anthropic Messages surface in front of a fake OpenAI-compatible upstream: what the upstream
is sent (the canonical request), what the SDK gets back, routes, estimates, and the upstream's
faults as the SDK's error classes."""

from __future__ import annotations

import time
from typing import Any

import anthropic
import httpx
import orjson
import pytest

from modelyard.protocol.anthropic_messages import CountTokensRequest, to_canonical
from modelyard.protocol.chat import estimate_prompt_tokens
from modelyard.testing.fake_upstream import (
    FakeUpstream,
    JsonReply,
    StreamReply,
    completion_body,
    stream_events,
)
from tests.messages.conftest import ROUTE, project_key
from tests.remote.fixtures import UPSTREAM_SECRET
from tests.support.gateway import GatewayProcess
from tests.support.ledger_rows import wait_rows

MODEL = "acme-large"
HELLO = [{"role": "user", "content": "Hello"}]
WEATHER = {
    "name": "get_weather",
    "description": "Get weather",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def tool_call_body(arguments: str, call_id: str = "call_up1") -> dict[str, Any]:
    message = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": call_id,
                "type": "function",
                "function": {"name": "get_weather", "arguments": arguments},
            }
        ],
    }
    return completion_body(
        choices=[{"index": 0, "message": message, "finish_reason": "tool_calls"}]
    )


def test_create_sends_the_canonical_request_and_answers_a_message(
    remote_claude: anthropic.Anthropic, upstream: FakeUpstream
) -> None:
    upstream.enqueue(JsonReply(completion_body("Bonjour.")))
    answer = remote_claude.messages.create(
        model=MODEL,
        max_tokens=20,
        system=[{"type": "text", "text": "Be terse.", "cache_control": {"type": "ephemeral"}}],
        messages=HELLO,
        stop_sequences=["END"],
        metadata={"user_id": "u1"},
        extra_body={"temperature": 0.2, "top_p": 0.9},
    )
    assert [(b.type, b.text) for b in answer.content] == [("text", "Bonjour.")]
    assert answer.stop_reason == "end_turn" and answer.model == MODEL
    assert (answer.usage.input_tokens, answer.usage.output_tokens) == (11, 5)
    sent = upstream.requests[-1].body
    assert sent["model"] == "large-2026"
    assert sent["messages"] == [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "Hello"},
    ]
    assert sent["stop"] == ["END"] and sent["max_tokens"] == 20 and sent["user"] == "u1"
    assert (sent["temperature"], sent["top_p"]) == (0.2, 0.9)
    assert upstream.requests[-1].headers["authorization"] == f"Bearer {UPSTREAM_SECRET}"


def test_tool_round_trip_through_the_upstream(
    remote_claude: anthropic.Anthropic, upstream: FakeUpstream
) -> None:
    upstream.enqueue(JsonReply(tool_call_body('{"city": "Paris"}')))
    question: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    called = remote_claude.messages.create(
        model=MODEL,
        max_tokens=50,
        messages=question,
        tools=[WEATHER],
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
    )
    assert called.stop_reason == "tool_use"
    (call,) = called.content
    assert call.type == "tool_use" and call.id == "toolu_up1"
    assert call.input == {"city": "Paris"}
    first = upstream.requests[-1].body
    assert first["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Get weather",
                "parameters": WEATHER["input_schema"],
            },
        }
    ]
    assert first["tool_choice"] == "required" and first["parallel_tool_calls"] is False

    upstream.enqueue(JsonReply(completion_body("Sunny in Paris.")))
    answer = remote_claude.messages.create(
        model=MODEL,
        max_tokens=50,
        tools=[WEATHER],
        messages=[
            *question,
            {"role": "assistant", "content": called.content},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Thanks!"},
                    {"type": "tool_result", "tool_use_id": call.id, "content": "sunny"},
                ],
            },
        ],
    )
    assert answer.content[0].text == "Sunny in Paris."
    second = upstream.requests[-1].body
    assert [m["role"] for m in second["messages"]] == ["user", "assistant", "tool", "user"]
    echoed = second["messages"][1]["tool_calls"][0]
    assert echoed["id"] == "toolu_up1" and echoed["function"]["name"] == "get_weather"
    assert orjson.loads(echoed["function"]["arguments"]) == {"city": "Paris"}
    assert second["messages"][2] == {
        "role": "tool",
        "tool_call_id": "toolu_up1",
        "content": "sunny",
    }
    assert second["messages"][3]["content"] == "Thanks!"


def test_stream_accumulates_text_and_exact_usage(
    remote_claude: anthropic.Anthropic, upstream: FakeUpstream
) -> None:
    usage = {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}
    upstream.enqueue(StreamReply(stream_events(["One", " two", " three"], usage=usage)))
    with remote_claude.messages.stream(model=MODEL, max_tokens=20, messages=HELLO) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert pieces == ["One", " two", " three"]
    assert final.content[0].text == "One two three"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (9, 3)
    assert final.stop_reason == "end_turn"


def test_streamed_tool_call_from_the_upstream_ends_as_an_object(
    remote_claude: anthropic.Anthropic, upstream: FakeUpstream
) -> None:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        body = {
            "id": "c",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return b"data: " + orjson.dumps(body)

    call = {"index": 0, "id": "call_s1", "type": "function"}
    events = [
        chunk({"role": "assistant", "content": None}),
        chunk({"tool_calls": [{**call, "function": {"name": "get_weather", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": "Pa'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ris"}'}}]}),
        chunk({}, "tool_calls"),
        b"data: [DONE]",
    ]
    upstream.enqueue(StreamReply(events))
    with remote_claude.messages.stream(
        model=MODEL, max_tokens=50, messages=HELLO, tools=[WEATHER]
    ) as stream:
        json_events = [e for e in stream if e.type == "input_json"]
        final = stream.get_final_message()
    assert json_events and json_events[-1].snapshot == {"city": "Paris"}
    assert final.content[-1].type == "tool_use" and final.content[-1].input == {"city": "Paris"}
    assert final.stop_reason == "tool_use"


def test_count_tokens_is_estimated_without_calling_the_upstream(
    remote_claude: anthropic.Anthropic, upstream: FakeUpstream
) -> None:
    body: dict[str, Any] = {
        "model": MODEL,
        "system": "Be terse.",
        "messages": [{"role": "user", "content": "How many tokens is this sentence?"}],
        "tools": [WEATHER],
    }
    counted = remote_claude.messages.count_tokens(**body)
    expected = estimate_prompt_tokens(to_canonical(CountTokensRequest.model_validate(body)).request)
    assert counted.input_tokens == expected
    assert upstream.requests == []


def test_a_route_works_as_the_model_name(
    remote_claude: anthropic.Anthropic, upstream: FakeUpstream
) -> None:
    upstream.enqueue(JsonReply(completion_body("Routed.")))
    raw = remote_claude.messages.with_raw_response.create(
        model=ROUTE, max_tokens=10, messages=HELLO
    )
    assert raw.parse().content[0].text == "Routed."
    assert raw.headers["x-modelyard-route"] == ROUTE
    assert raw.headers["x-modelyard-deployment"] == "acme-large-eu"
    assert upstream.requests[-1].body["model"] == "large-2026"
    counted = remote_claude.messages.count_tokens(model=ROUTE, messages=HELLO)
    assert counted.input_tokens > 0


def test_models_list_pages_through_every_chat_model(
    remote_claude: anthropic.Anthropic,
) -> None:
    first = remote_claude.models.list(limit=1)
    assert first.has_more is True and len(first.data) == 1
    ids = [model.id for model in remote_claude.models.list(limit=1)]
    assert ids == ["acme-large", "acme-small", ROUTE]  # the embedding model is not listed
    assert [m.id for m in remote_claude.models.list(limit=2, after_id="acme-large")] == [
        "acme-small",
        ROUTE,
    ]
    large = remote_claude.models.retrieve("acme-large")
    assert large.type == "model" and large.display_name == "acme-large"


def test_upstream_429_is_a_rate_limit_error_keeping_retry_after(
    remote_claude: anthropic.Anthropic, upstream: FakeUpstream
) -> None:
    upstream.enqueue(
        JsonReply({"error": {"message": "slow down"}}, status=429, headers={"Retry-After": "7"})
    )
    with pytest.raises(anthropic.RateLimitError) as limited:
        remote_claude.messages.create(model=MODEL, max_tokens=10, messages=HELLO)
    error = limited.value
    assert error.response.headers["retry-after"] == "7"
    assert error.body["type"] == "error"
    assert error.body["error"]["type"] == "rate_limit_error"
    assert error.request_id == error.response.headers["x-request-id"]


def test_upstream_503_is_overloaded_529(
    remote_claude: anthropic.Anthropic, upstream: FakeUpstream
) -> None:
    upstream.enqueue(JsonReply({"error": {"message": "down"}}, status=503))
    with pytest.raises(anthropic.OverloadedError) as overloaded:
        remote_claude.messages.create(model=MODEL, max_tokens=10, messages=HELLO)
    assert overloaded.value.status_code == 529
    assert overloaded.value.body["error"]["type"] == "overloaded_error"
    assert "retry-after" in overloaded.value.response.headers
    assert upstream.base_url not in overloaded.value.response.text


def test_a_key_over_its_request_rate_gets_rate_limit_errors(
    fake_gateway: GatewayProcess, upstream: FakeUpstream
) -> None:
    key = project_key(fake_gateway, "messages-paced", {"requests_per_minute": 1})
    client = anthropic.Anthropic(
        base_url=fake_gateway.base_url, default_headers={"x-api-key": key}, max_retries=0
    )
    client.messages.create(model=MODEL, max_tokens=10, messages=HELLO)
    with pytest.raises(anthropic.RateLimitError) as limited:
        client.messages.create(model=MODEL, max_tokens=10, messages=HELLO)
    headers = limited.value.response.headers
    assert 1 <= int(headers["retry-after"]) <= 60
    assert headers["x-ratelimit-limit-requests"] == "1"
    assert limited.value.body["error"]["details"]["error_code"] == "rate_limited"
    assert len(upstream.requests) == 1


def test_a_failure_mid_stream_surfaces_as_an_api_status_error(
    remote_claude: anthropic.Anthropic, upstream: FakeUpstream
) -> None:
    upstream.enqueue(StreamReply(stream_events(["a", "b", "c", "d"]), reset_after=3))
    received: list[str] = []
    with (
        pytest.raises(anthropic.APIStatusError) as failed,
        remote_claude.messages.stream(model=MODEL, max_tokens=20, messages=HELLO) as stream,
    ):
        for text in stream.text_stream:
            received.append(text)
    assert received == ["a", "b"]
    assert failed.value.status_code == 200  # in-band: the stream had started
    assert failed.value.type == "api_error"


def test_a_client_leaving_mid_stream_is_recorded_once_as_499(
    fake_gateway: GatewayProcess, upstream: FakeUpstream
) -> None:
    key = project_key(fake_gateway, "messages-leaving")
    pieces = [f" w{i}" for i in range(40)]
    usage = {"prompt_tokens": 9, "completion_tokens": 40, "total_tokens": 49}
    upstream.enqueue(StreamReply(stream_events(pieces, usage=usage), delay_s=0.05))
    body = {"model": MODEL, "max_tokens": 100, "messages": HELLO, "stream": True}
    with httpx.stream(
        "POST", f"{fake_gateway.base_url}/v1/messages", json=body, headers={"x-api-key": key}
    ) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        while "content_block_delta" not in next(lines):
            pass
    (row,) = wait_rows(fake_gateway, "messages-leaving", 1)
    assert row["status"] == 499
    time.sleep(0.5)
    assert len(wait_rows(fake_gateway, "messages-leaving", 1)) == 1
