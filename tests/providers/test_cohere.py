"""The `cohere` provider through a real gateway, driven by the official `openai` SDK, against a
fake that speaks Cohere's v2 Chat API: what is sent (body, credential, headers), answers and
streams with text and tool calls, finish reasons, usage and its billing, and Cohere's faults."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import orjson
import pytest

from modelyard.ledger.cost import cost_micros
from modelyard.protocol.generation import Usage
from modelyard.testing.fake_cohere import (
    FakeCohere,
    JsonReply,
    StreamReply,
    chat_answer,
    error_reply,
    malformed_event,
    stream_events,
    tool_call,
    usage_body,
)
from tests.providers.cohere_fixtures import (
    COHERE_SECRET,
    COMMAND_A_PRICE,
    ROUTE,
    client_of,
    cohere_gateway_at,
)
from tests.support.gateway import GatewayProcess
from tests.support.ledger_rows import request_record


@pytest.fixture(scope="module")
def cohere_server() -> Iterator[FakeCohere]:
    with FakeCohere().running() as fake:
        yield fake


@pytest.fixture()
def cohere(cohere_server: FakeCohere) -> FakeCohere:
    """The module's fake Cohere, with no scripted replies or recorded requests left over."""
    cohere_server.reset()
    return cohere_server


@pytest.fixture(scope="module")
def cohere_gateway(
    tmp_path_factory: pytest.TempPathFactory, cohere_server: FakeCohere
) -> Iterator[GatewayProcess]:
    gateway = cohere_gateway_at(tmp_path_factory.mktemp("cohere"), cohere_server.base_url)
    yield gateway
    gateway.stop()
    assert COHERE_SECRET not in gateway.log()


@pytest.fixture()
def cohere_client(cohere_gateway: GatewayProcess) -> openai.OpenAI:
    return client_of(cohere_gateway)


HELLO = [{"role": "user", "content": "Hello"}]
WEATHER_TOOL: Any = {
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
TIME_TOOL: Any = {
    "type": "function",
    "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
}
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


def test_a_text_answer_is_translated_both_ways_with_the_catalog_credential(
    cohere_client: openai.OpenAI, cohere: FakeCohere
) -> None:
    cohere.enqueue(JsonReply(chat_answer("Bonjour.", usage=usage_body(31, 4, billed=(12, 4)))))
    completion = cohere_client.chat.completions.create(
        model="command-a",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": "Answer in French."},
            {"role": "user", "content": "Hello"},
        ],
        max_tokens=64,
        temperature=0.3,
        top_p=1.0,
        stop=["END"],
        seed=42,
        extra_body={"top_k": 20},
    )
    assert completion.choices[0].message.content == "Bonjour."
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "command-a"
    # `tokens` (what the model read and wrote), not `billed_units`.
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (31, 4)
    (sent,) = cohere.requests
    assert sent.path == "/v2/chat"
    assert sent.body == {
        "model": "command-a-03-2025",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "system", "content": "Answer in French."},
            {"role": "user", "content": "Hello"},
        ],
        "max_tokens": 64,
        "temperature": 0.3,
        "p": 0.99,
        "k": 20,
        "stop_sequences": ["END"],
        "seed": 42,
    }
    assert sent.headers["authorization"] == f"Bearer {COHERE_SECRET}"
    assert sent.headers["content-type"] == "application/json"
    assert sent.headers["x-client-name"] == "modelyard"


def test_a_stream_arrives_as_chunks_with_cohere_usage(
    cohere_client: openai.OpenAI, cohere: FakeCohere
) -> None:
    cohere.enqueue(StreamReply(stream_events(["One", " two", " three"], usage=usage_body(9, 3))))
    chunks = list(
        cohere_client.chat.completions.create(
            model="command-a",
            messages=HELLO,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "One two three"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop"
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (9, 3)
    assert cohere.requests[-1].body["stream"] is True
    assert cohere.requests[-1].headers["accept"] == "text/event-stream"


def test_a_tool_call_comes_back_as_an_openai_call_and_its_result_goes_to_cohere(
    cohere_client: openai.OpenAI, cohere: FakeCohere
) -> None:
    first = cohere_client.chat.completions.create(
        model="command-a", messages=[{"role": "user", "content": "Weather?"}], tools=[WEATHER_TOOL]
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "I will call it."  # Cohere's tool plan
    (call,) = choice.message.tool_calls or []
    assert call.type == "function"
    assert call.function.name == "get_weather"
    assert orjson.loads(call.function.arguments) == {"city": "Paris"}
    assert cohere.requests[-1].body["tools"] == [WEATHER_TOOL]

    second = cohere_client.chat.completions.create(
        model="command-a",
        messages=[
            {"role": "user", "content": "Weather?"},
            choice.message.model_dump(exclude_none=True),  # type: ignore[list-item]
            {"role": "tool", "tool_call_id": call.id, "content": "18C and sunny"},
        ],
        tools=[WEATHER_TOOL],
    )
    assert second.choices[0].message.content == "Hello from Cohere."
    assert cohere.requests[-1].body["messages"][1:] == [
        {
            "role": "assistant",
            "tool_plan": "I will call it.",
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": call.function.arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call.id, "content": "18C and sunny"},
    ]


def test_streamed_argument_fragments_arrive_as_one_complete_call(
    cohere_client: openai.OpenAI, cohere: FakeCohere
) -> None:
    arguments = {"city": "Saint-Jean-de-Luz"}
    cohere.enqueue(
        StreamReply(
            stream_events(
                (),
                tool_plan=["Checking", " the weather."],
                tool_calls=[tool_call("tc_1", "get_weather", arguments)],
                argument_chunk=4,
            )
        )
    )
    chunks = list(
        cohere_client.chat.completions.create(
            model="command-a", messages=HELLO, tools=[WEATHER_TOOL], stream=True
        )
    )
    calls = [call for c in chunks if c.choices for call in (c.choices[0].delta.tool_calls or [])]
    assert len(calls) == 1
    assert calls[0].id == "tc_1" and calls[0].function is not None
    assert calls[0].function.name == "get_weather"
    assert orjson.loads(calls[0].function.arguments or "") == arguments
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Checking the weather."
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


@pytest.mark.parametrize(
    ("tool_choice", "offered", "sent"),
    [
        ("auto", ["get_weather", "get_time"], None),
        ("none", ["get_weather", "get_time"], "NONE"),
        ("required", ["get_weather", "get_time"], "REQUIRED"),
        ({"type": "function", "function": {"name": "get_time"}}, ["get_time"], "REQUIRED"),
    ],
    ids=["auto", "none", "required", "named"],
)
def test_tool_choice_is_sent_as_cohere_understands_it(
    cohere_client: openai.OpenAI,
    cohere: FakeCohere,
    tool_choice: Any,
    offered: list[str],
    sent: str | None,
) -> None:
    completion = cohere_client.chat.completions.create(
        model="command-a",
        messages=HELLO,
        tools=[WEATHER_TOOL, TIME_TOOL],
        tool_choice=tool_choice,
    )
    body = cohere.requests[-1].body
    assert [tool["function"]["name"] for tool in body["tools"]] == offered
    assert body.get("tool_choice") == sent
    called = [call.function.name for call in completion.choices[0].message.tool_calls or []]
    assert called == ([] if sent == "NONE" else [offered[0]])


def test_a_json_schema_is_sent_as_cohere_json_mode_and_its_answer_returned(
    cohere_client: openai.OpenAI, cohere: FakeCohere
) -> None:
    cohere.enqueue(JsonReply(chat_answer('{"name": "Ada", "age": 36}')))
    completion = cohere_client.chat.completions.create(
        model="command-a",
        messages=HELLO,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "person", "schema": PERSON, "strict": True},
        },
    )
    assert orjson.loads(completion.choices[0].message.content or "") == {"name": "Ada", "age": 36}
    assert cohere.requests[-1].body["response_format"] == {
        "type": "json_object",
        "json_schema": PERSON,
    }


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_max_tokens_reached_is_finish_reason_length(
    cohere_client: openai.OpenAI, cohere: FakeCohere, stream: bool
) -> None:
    if stream:
        cohere.enqueue(StreamReply(stream_events(["Once upon"], finish_reason="MAX_TOKENS")))
        chunks = list(
            cohere_client.chat.completions.create(
                model="command-a", messages=HELLO, max_tokens=2, stream=True
            )
        )
        reason = [c.choices[0].finish_reason for c in chunks if c.choices][-1]
    else:
        cohere.enqueue(JsonReply(chat_answer("Once upon", finish_reason="MAX_TOKENS")))
        completion = cohere_client.chat.completions.create(
            model="command-a", messages=HELLO, max_tokens=2
        )
        reason = completion.choices[0].finish_reason
    assert reason == "length"
    assert cohere.requests[-1].body["max_tokens"] == 2


def test_cached_prompt_tokens_are_billed_at_the_cached_price(
    cohere_gateway: GatewayProcess, cohere_client: openai.OpenAI, cohere: FakeCohere
) -> None:
    cohere.enqueue(JsonReply(chat_answer("Hi.", usage=usage_body(1200, 50, cached_tokens=1000))))
    raw = cohere_client.chat.completions.with_raw_response.create(model="command-a", messages=HELLO)
    raw.parse()
    record = request_record(cohere_gateway, raw.headers["x-request-id"])
    assert (record["prompt_tokens"], record["cached_prompt_tokens"]) == (1200, 1000)
    assert record["completion_tokens"] == 50
    expected = cost_micros(COMMAND_A_PRICE, Usage(1200, 50, cached_prompt_tokens=1000))
    assert record["cost_micros"] == expected == 1250
    assert expected < cost_micros(COMMAND_A_PRICE, Usage(1200, 50))


def test_a_429_reaches_the_client_with_its_retry_after(
    cohere_client: openai.OpenAI, cohere: FakeCohere
) -> None:
    cohere.enqueue(
        error_reply(429, "You are past the per minute request limit", {"retry-after": "3"})
    )
    with pytest.raises(openai.RateLimitError) as caught:
        cohere_client.chat.completions.create(model="command-a", messages=HELLO)
    assert caught.value.response.headers["retry-after"] == "3"
    assert caught.value.code == "rate_limited"


def test_a_429_on_the_first_deployment_of_a_route_is_answered_by_the_next(
    cohere_client: openai.OpenAI, cohere: FakeCohere
) -> None:
    cohere.enqueue(
        error_reply(429, "You are past the per minute request limit", {"retry-after": "2"}),
        JsonReply(chat_answer("From the backup.")),
    )
    raw = cohere_client.chat.completions.with_raw_response.create(model=ROUTE, messages=HELLO)
    assert raw.parse().choices[0].message.content == "From the backup."
    assert raw.headers["x-modelyard-deployment"] == "cohere-r-backup"
    assert [sent.body["model"] for sent in cohere.requests] == [
        "command-r-limited",
        "command-r-backup",
    ]


@pytest.mark.parametrize(
    ("status", "message", "expected", "code"),
    [
        (503, "service unavailable", 503, "upstream_unavailable"),
        (500, "internal server error", 502, "upstream_error"),
        (401, "invalid api token", 502, "upstream_error"),
        (404, "model 'command-a-03-2025' not found", 502, "upstream_error"),
        (504, "gateway timeout", 504, "upstream_timeout"),
    ],
)
def test_cohere_failures_map_to_gateway_statuses_without_leaking_anything(
    cohere_client: openai.OpenAI,
    cohere: FakeCohere,
    status: int,
    message: str,
    expected: int,
    code: str,
) -> None:
    cohere.enqueue(error_reply(status, f"{message} {COHERE_SECRET}", {"retry-after": "4"}))
    with pytest.raises(openai.APIStatusError) as caught:
        cohere_client.chat.completions.create(model="command-a", messages=HELLO)
    assert caught.value.status_code == expected
    assert caught.value.code == code
    text = caught.value.response.text
    assert COHERE_SECRET not in text and cohere.root_url not in text and message not in text
    if status == 503:
        assert caught.value.response.headers["retry-after"] == "4"


def test_a_refused_credential_is_logged_with_the_deployment_never_the_key(
    cohere_gateway: GatewayProcess, cohere_client: openai.OpenAI, cohere: FakeCohere
) -> None:
    cohere.enqueue(error_reply(401, "invalid api token"))
    with pytest.raises(openai.APIStatusError):
        cohere_client.chat.completions.create(model="command-a", messages=HELLO)
    log = cohere_gateway.log()
    assert "upstream cohere-a refused the gateway's account or credential (401)" in log
    assert COHERE_SECRET not in log


def test_a_prompt_too_long_for_cohere_is_context_length_exceeded(
    cohere_client: openai.OpenAI, cohere: FakeCohere
) -> None:
    cohere.enqueue(
        error_reply(
            400, "too many tokens: total number of tokens in the prompt cannot exceed 256000"
        )
    )
    with pytest.raises(openai.BadRequestError) as caught:
        cohere_client.chat.completions.create(model="command-a", messages=HELLO)
    assert caught.value.code == "context_length_exceeded"


def test_another_400_is_a_rejection_that_says_why(
    cohere_client: openai.OpenAI, cohere: FakeCohere
) -> None:
    cohere.enqueue(error_reply(400, "invalid request: message must not be empty"))
    with pytest.raises(openai.BadRequestError) as caught:
        cohere_client.chat.completions.create(model="command-a", messages=HELLO)
    assert caught.value.code == "upstream_rejected_request"
    assert "message must not be empty" in caught.value.message


@pytest.mark.parametrize(
    ("fields", "param"),
    [({"n": 2}, "n"), ({"presence_penalty": 1.5}, "presence_penalty"), ({"top_k": 600}, "top_k")],
)
def test_what_cohere_cannot_honour_is_refused_before_calling_it(
    cohere_client: openai.OpenAI, cohere: FakeCohere, fields: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        cohere_client.chat.completions.create(model="command-a", messages=HELLO, extra_body=fields)
    assert caught.value.param == param
    assert cohere.requests == []


def broken_stream(cohere_client: openai.OpenAI) -> str:
    """Stream a request whose upstream stream breaks; the request id, once the SDK raised."""
    raw = cohere_client.chat.completions.with_raw_response.create(
        model="command-a", messages=HELLO, stream=True
    )
    with pytest.raises((openai.APIError, httpx.HTTPError)):
        for _ in raw.parse():
            pass
    return raw.headers["x-request-id"]


@pytest.mark.parametrize(
    "reply",
    [
        StreamReply(stream_events(["a", "b", "c", "d"]), reset_after=4),
        StreamReply([*stream_events(["a", "b", "c", "d"])[:4], malformed_event()]),
        StreamReply(stream_events(["a", "b", "c", "d"], end=False)[:4]),
    ],
    ids=["reset-mid-stream", "malformed-event", "no-message-end"],
)
def test_a_broken_stream_is_an_error_billed_once_for_what_arrived(
    cohere_gateway: GatewayProcess,
    cohere_client: openai.OpenAI,
    cohere: FakeCohere,
    reply: StreamReply,
) -> None:
    cohere.enqueue(reply)
    record = request_record(cohere_gateway, broken_stream(cohere_client))
    # message-start, content-start, then two text deltas: about a token each.
    assert record["completion_tokens"] == 2
    assert record["usage_estimated"] is True
    assert record["status"] != 200
    assert len(record["attempts"]) == 1


def test_a_stream_cohere_ends_in_error_is_billed_as_cohere_reported(
    cohere_gateway: GatewayProcess, cohere_client: openai.OpenAI, cohere: FakeCohere
) -> None:
    cohere.enqueue(
        StreamReply(
            stream_events(["a", "b"], finish_reason="ERROR", error="boom", usage=usage_body(20, 2))
        )
    )
    record = request_record(cohere_gateway, broken_stream(cohere_client))
    assert (record["prompt_tokens"], record["completion_tokens"]) == (20, 2)
    assert record["usage_estimated"] is False


def test_the_anthropic_messages_surface_reaches_cohere_both_ways(
    cohere_gateway: GatewayProcess, cohere: FakeCohere
) -> None:
    client = anthropic.Anthropic(
        base_url=cohere_gateway.base_url, api_key=cohere_gateway.admin_key, max_retries=0
    )
    cohere.enqueue(JsonReply(chat_answer("Bonjour.", usage=usage_body(20, 3))))
    message = client.messages.create(
        model="command-a",
        max_tokens=100,
        system="Be brief.",
        messages=[{"role": "user", "content": "Hello"}],
    )
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == "Bonjour."  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (20, 3)
    sent = cohere.requests[-1].body
    assert sent["messages"][0]["role"] == "system" and sent["max_tokens"] == 100

    tool = {"name": "get_weather", "input_schema": WEATHER_TOOL["function"]["parameters"]}
    with client.messages.stream(
        model="command-a",
        max_tokens=100,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[tool],  # type: ignore[list-item]
    ) as stream:
        final = stream.get_final_message()
    uses = [block for block in final.content if block.type == "tool_use"]
    assert [(use.name, use.input) for use in uses] == [("get_weather", {"city": "Paris"})]  # type: ignore[union-attr]
    assert final.stop_reason == "tool_use"
    assert cohere.requests[-1].body["stream"] is True


def test_a_client_leaving_mid_stream_is_billed_for_what_had_arrived(
    cohere_gateway: GatewayProcess, cohere: FakeCohere
) -> None:
    cohere.enqueue(StreamReply(stream_events([f"w{i} " for i in range(60)]), delay_s=0.05))
    with httpx.stream(
        "POST",
        f"{cohere_gateway.base_url}/v1/chat/completions",
        json={"model": "command-a", "messages": HELLO, "stream": True},
        headers={"Authorization": f"Bearer {cohere_gateway.admin_key}"},
        timeout=30,
    ) as response:
        request_id = response.headers["x-request-id"]
        lines = response.iter_lines()
        received = [line for line in (next(lines) for _ in range(8)) if line.startswith("data: {")]
    record = request_record(cohere_gateway, request_id)
    assert record["client_disconnected"] is True
    assert len(received) <= record["completion_tokens"] < 60  # what arrived, not the whole answer
