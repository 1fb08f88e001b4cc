"""The Anthropic Messages surface through the official `anthropic` SDK, on the bundled SmolLM2
model (the session's gateway): answers, streams, tools, exact token counts and errors."""

from __future__ import annotations

from typing import Any

import anthropic
import pytest
from anthropic.types import Message

from tests.messages.conftest import project_key, raw_post
from tests.support.gateway import GatewayProcess
from tests.support.ledger_rows import wait_rows
from tests.support.smollm2 import direct_prompt_tokens

MODEL = "smollm2"
HELLO = [{"role": "user", "content": "Say hello."}]
WEATHER = {
    "name": "get_weather",
    "description": "Get the current weather in a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
GREEDY = {"temperature": 0}


def test_create_answers_a_message_billed_once_as_its_usage_says(gateway: GatewayProcess) -> None:
    key = project_key(gateway, "messages-billing")
    client = anthropic.Anthropic(base_url=gateway.base_url, api_key=key, max_retries=0)
    raw = client.messages.with_raw_response.create(
        model=MODEL, max_tokens=8, system="Be terse.", messages=HELLO, extra_body=GREEDY
    )
    answer = raw.parse()
    request_id = raw.headers["request-id"]
    assert raw.headers["x-request-id"] == request_id and answer.id == f"msg_{request_id}"
    assert raw.headers["content-type"] == "application/json"
    assert answer.type == "message" and answer.role == "assistant"
    assert answer.model == "smollm2-135m-instruct"
    assert answer.content[0].type == "text" and answer.content[0].text
    assert answer.stop_reason in ("end_turn", "max_tokens") and answer.stop_sequence is None
    usage = answer.usage
    assert usage.cache_creation_input_tokens == 0
    (row,) = wait_rows(gateway, "messages-billing", 1)
    assert row["request_id"] == request_id and row["status"] == 200
    assert row["prompt_tokens"] == usage.input_tokens + (usage.cache_read_input_tokens or 0)
    assert row["cached_prompt_tokens"] == usage.cache_read_input_tokens
    assert row["completion_tokens"] == usage.output_tokens
    assert float(raw.headers["x-modelyard-cost-usd"]) == 0


def test_count_tokens_is_exact_on_the_local_engine(claude: anthropic.Anthropic) -> None:
    system = "You are terse."
    question = [{"role": "user", "content": "Name three colours."}]
    counted = claude.messages.count_tokens(model=MODEL, system=system, messages=question)
    assert counted.input_tokens == direct_prompt_tokens(
        [{"role": "system", "content": system}, *question]
    )
    as_blocks = claude.messages.count_tokens(
        model=MODEL,
        system=[{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}],
        messages=question,
    )
    assert as_blocks.input_tokens == counted.input_tokens
    with_tools = claude.messages.count_tokens(
        model=MODEL, system=system, messages=question, tools=[WEATHER]
    )
    answer = claude.messages.create(
        model=MODEL, max_tokens=2, system=system, messages=question, tools=[WEATHER]
    )
    prompt = answer.usage.input_tokens + (answer.usage.cache_read_input_tokens or 0)
    # The tool descriptions the gateway writes into the prompt are counted too.
    assert with_tools.input_tokens == prompt > counted.input_tokens


def test_stop_sequences_end_the_text_before_the_sequence(claude: anthropic.Anthropic) -> None:
    counting = [{"role": "user", "content": "Count from 1 to 10, separated by commas."}]
    free = claude.messages.create(model=MODEL, max_tokens=40, messages=counting, extra_body=GREEDY)
    stopped = claude.messages.create(
        model=MODEL, max_tokens=40, messages=counting, stop_sequences=["5"], extra_body=GREEDY
    )
    free_text, stopped_text = free.content[0].text, stopped.content[0].text
    assert "5" in free_text
    assert "5" not in stopped_text and free_text.startswith(stopped_text)
    assert stopped.stop_reason == "end_turn" and stopped.usage.output_tokens < 40


def test_stream_text_and_final_message_agree(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(model=MODEL, max_tokens=12, messages=HELLO) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) > 1
    assert final.content[0].type == "text" and final.content[0].text == "".join(pieces)
    assert final.stop_reason in ("end_turn", "max_tokens")
    assert final.usage.output_tokens > 0
    assert final.usage.input_tokens + (final.usage.cache_read_input_tokens or 0) > 0


def test_streamed_tool_use_input_arrives_as_json_and_ends_as_an_object(
    claude: anthropic.Anthropic,
) -> None:
    with claude.messages.stream(
        model=MODEL,
        max_tokens=60,
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[WEATHER],
        # One call: with parallel calls allowed the sampled model sometimes makes two.
        tool_choice={"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
        extra_body={"temperature": 0},
    ) as stream:
        events = list(stream)
        final = stream.get_final_message()
    snapshots = [e.snapshot for e in events if e.type == "input_json"]
    assert snapshots and isinstance(snapshots[-1], dict)
    (call,) = [block for block in final.content if block.type == "tool_use"]
    assert call.name == "get_weather" and call.id.startswith("toolu_")
    assert isinstance(call.input, dict) and isinstance(call.input["city"], str)
    assert call.input == snapshots[-1]
    assert final.stop_reason == "tool_use"


def test_tool_round_trip_from_tool_use_to_result_to_text(claude: anthropic.Anthropic) -> None:
    question: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
    called = claude.messages.create(
        model=MODEL,
        max_tokens=60,
        messages=question,
        tools=[WEATHER],
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
        extra_body={"temperature": 0},
    )
    assert called.stop_reason == "tool_use"
    (call,) = [block for block in called.content if block.type == "tool_use"]
    assert set(call.input) == {"city"} and isinstance(call.input["city"], str)
    followed = claude.messages.create(
        model=MODEL,
        max_tokens=30,
        tools=[WEATHER],
        tool_choice={"type": "none"},
        messages=[
            *question,
            {"role": "assistant", "content": called.content},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": call.id, "content": "Sunny, 24 C"},
                    {"type": "text", "text": "Answer in one sentence."},
                ],
            },
        ],
    )
    assert followed.stop_reason in ("end_turn", "max_tokens")
    assert [block.type for block in followed.content] == ["text"]
    assert followed.content[0].text


def test_models_retrieve_answers_in_anthropic_shape(claude: anthropic.Anthropic) -> None:
    model = claude.models.retrieve(MODEL)
    assert model.type == "model" and model.id == "smollm2-135m-instruct"
    assert model.display_name == "SmolLM2 135M Instruct"
    assert model.created_at.year == 2024
    assert [m.id for m in claude.models.list()] == ["smollm2-135m-instruct"]


@pytest.mark.parametrize("header", ["bearer", "x-api-key"])
def test_a_bad_key_is_an_authentication_error_in_anthropic_shape(
    gateway: GatewayProcess, header: str
) -> None:
    credentials: dict[str, Any] = (
        {"api_key": "sk-not-a-key"}
        if header == "bearer"
        else {"default_headers": {"x-api-key": "sk-not-a-key"}}
    )
    client = anthropic.Anthropic(base_url=gateway.base_url, max_retries=0, **credentials)
    with pytest.raises(anthropic.AuthenticationError) as refused:
        client.messages.create(model=MODEL, max_tokens=4, messages=HELLO)
    error = refused.value
    assert error.body["type"] == "error"
    assert error.type == "authentication_error"
    assert error.request_id == error.response.headers["x-request-id"]


def test_x_api_key_alone_is_accepted(gateway: GatewayProcess) -> None:
    client = anthropic.Anthropic(
        base_url=gateway.base_url, default_headers={"x-api-key": str(gateway.admin_key)},
        max_retries=0,
    )  # fmt: skip
    assert client.messages.count_tokens(model=MODEL, messages=HELLO).input_tokens > 0


def test_two_different_keys_are_refused_rather_than_guessed_between(
    gateway: GatewayProcess,
) -> None:
    client = anthropic.Anthropic(
        base_url=gateway.base_url,
        api_key=gateway.admin_key,
        default_headers={"x-api-key": "sk-another-key"},
        max_retries=0,
    )
    with pytest.raises(anthropic.AuthenticationError) as refused:
        client.messages.count_tokens(model=MODEL, messages=HELLO)
    assert refused.value.body["error"]["type"] == "authentication_error"
    assert "carry different keys" in refused.value.body["error"]["message"]


def test_models_list_refusals_are_anthropic_shaped(gateway: GatewayProcess) -> None:
    client = anthropic.Anthropic(base_url=gateway.base_url, api_key="sk-bad", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as refused:
        client.models.list()
    assert refused.value.body["type"] == "error"
    assert refused.value.request_id == refused.value.response.headers["x-request-id"]


def test_an_unknown_model_is_not_found(claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as missing:
        claude.messages.create(model="no-such-model", max_tokens=4, messages=HELLO)
    assert missing.value.body["error"]["type"] == "not_found_error"
    assert missing.value.body["error"]["details"]["error_code"] == "model_not_found"


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"model": MODEL, "messages": HELLO}, "max_tokens", "invalid_parameter"),
        ({"model": MODEL, "messages": HELLO, "max_tokens": 0}, "max_tokens", "invalid_parameter"),
        ({"model": MODEL, "messages": HELLO, "max_tokens": 4, "colour": "blue"}, "colour",
         "unsupported_parameter"),
        ({"model": MODEL, "messages": HELLO, "max_tokens": 4,
          "thinking": {"type": "enabled", "budget_tokens": 2048}}, "thinking",
         "unsupported_parameter"),
        ({"model": MODEL, "max_tokens": 4, "system": "Describe images.", "messages": [
            {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                             "data": "iVBORw0KGgo="}}]}]},
         "messages[2].content[1]", "invalid_parameter"),
        ({"model": MODEL, "max_tokens": 4, "messages": HELLO, "tools": [WEATHER],
          "tool_choice": {"type": "tool", "name": "get_time"}}, "tool_choice.name",
         "invalid_parameter"),
        ({"model": MODEL, "max_tokens": 4, "temperature": 1.5, "messages": HELLO}, "temperature",
         "invalid_parameter"),
    ],
    ids=[
        "no-max-tokens", "zero-max-tokens", "unknown", "thinking", "image", "unknown-tool",
        "temperature",
    ],
)  # fmt: skip
def test_bad_requests_are_refused_naming_the_parameter(
    claude: anthropic.Anthropic, body: dict[str, Any], param: str, code: str
) -> None:
    with pytest.raises(anthropic.BadRequestError) as refused:
        claude.post("/v1/messages", body=body, cast_to=Message)
    error = refused.value.body
    assert error["type"] == "error"
    assert error["error"]["type"] == "invalid_request_error"
    assert error["error"]["details"] == {"error_code": code, "param": param}


def test_unknown_paths_and_oversized_bodies_are_anthropic_shaped(gateway: GatewayProcess) -> None:
    auth = {"x-api-key": str(gateway.admin_key)}
    missing = raw_post(gateway, "/v1/messages/batches", b"{}", **auth)
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "not_found_error"
    assert missing.json()["request_id"] == missing.headers["request-id"]
    too_large = raw_post(gateway, "/v1/messages", b" " * (5 * 1024 * 1024), **auth)
    assert too_large.status_code == 413
    assert too_large.json()["error"]["type"] == "request_too_large"
    assert too_large.headers["request-id"] == too_large.headers["x-request-id"]
