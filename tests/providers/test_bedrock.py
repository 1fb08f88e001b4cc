"""The `bedrock` provider through a real gateway, driven by the official `openai` and `anthropic`
SDKs, against a fake Bedrock Runtime that checks each request's SigV4 signature: what is sent
(Converse body, encoded model id, signature, credentials from the catalog or the standard
chain), answers and event streams with text, tool calls and structured output, finish reasons,
usage and its billing, and Bedrock's faults before and during a stream."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import orjson
import pytest

from modelyard.catalog.cards import Price
from modelyard.ledger.cost import cost_micros
from modelyard.protocol.generation import Usage
from modelyard.testing.fake_bedrock import (
    TEST_KEY,
    FakeBedrock,
    JsonReply,
    StreamReply,
    ToolUse,
    converse_answer,
    corrupted,
    encode_frame,
    error_reply,
    exception_frame,
    stream_frames,
    stream_reply,
    usage_body,
)
from tests.providers.bedrock_fixtures import (
    CHAIN_KEY,
    ROUTE,
    SECRETS,
    bedrock_gateway_at,
    client_of,
)
from tests.support.gateway import GatewayProcess
from tests.support.ledger_rows import request_record

CLAUDE_PATH = "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0"
PROFILE_PATH = "/model/eu.anthropic.claude-3-5-sonnet-20240620-v1%3A0"
CLAUDE_PRICE = Price(3_000_000, 15_000_000, 300_000)
HELLO = [{"role": "user", "content": "Hello"}]
WEATHER_PARAMETERS = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}
WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": WEATHER_PARAMETERS,
    },
}
WEATHER_SPEC = {
    "toolSpec": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "inputSchema": {"json": WEATHER_PARAMETERS},
    }
}
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}
PERSON_FORMAT: Any = {
    "type": "json_schema",
    "json_schema": {"name": "person", "schema": PERSON, "strict": True},
}


@pytest.fixture(scope="module")
def bedrock_server() -> Iterator[FakeBedrock]:
    with FakeBedrock(keys=(TEST_KEY, CHAIN_KEY), region="eu-central-1").running() as fake:
        yield fake


@pytest.fixture()
def bedrock(bedrock_server: FakeBedrock) -> FakeBedrock:
    """The module's fake Bedrock, with nothing scripted or recorded left over."""
    bedrock_server.reset()
    return bedrock_server


@pytest.fixture(scope="module")
def bedrock_gateway(
    tmp_path_factory: pytest.TempPathFactory, bedrock_server: FakeBedrock
) -> Iterator[GatewayProcess]:
    gateway = bedrock_gateway_at(tmp_path_factory.mktemp("bedrock"), bedrock_server.base_url)
    yield gateway
    gateway.stop()
    log = gateway.log()
    assert [secret for secret in SECRETS if secret in log] == []


@pytest.fixture()
def client(bedrock_gateway: GatewayProcess) -> openai.OpenAI:
    return client_of(bedrock_gateway)


# -- what is sent ---------------------------------------------------------------------------------


def test_a_completion_is_a_signed_converse_call_on_the_encoded_model_id(
    client: openai.OpenAI, bedrock: FakeBedrock
) -> None:
    bedrock.enqueue(JsonReply(converse_answer("Bonjour.", usage=usage_body(21, 4))))
    completion = client.chat.completions.create(
        model="claude-b",
        messages=[{"role": "system", "content": "Be brief."}, *HELLO],
        max_tokens=50,
        temperature=0.2,
        top_p=0.9,
        stop=["END"],
        user="user-42",
        extra_body={"top_k": 40},
    )
    assert completion.choices[0].message.content == "Bonjour."
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (21, 4)
    assert bedrock.signature_failures == []
    assert bedrock.raw_paths == [f"{CLAUDE_PATH}/converse"]
    sent = bedrock.requests[-1]
    assert sent.body == {
        "messages": [{"role": "user", "content": [{"text": "Hello"}]}],
        "system": [{"text": "Be brief."}],
        "inferenceConfig": {
            "maxTokens": 50,
            "temperature": 0.2,
            "topP": 0.9,
            "stopSequences": ["END"],
        },
        "additionalModelRequestFields": {"top_k": 40},
        "requestMetadata": {"user": "user-42"},
    }
    authorization = sent.headers["authorization"]
    assert authorization.startswith(
        f"AWS4-HMAC-SHA256 Credential={TEST_KEY.access_key_id}/"
    ) and authorization.split(",")[0].endswith("/eu-central-1/bedrock/aws4_request")
    assert sent.headers["x-amz-security-token"] == TEST_KEY.session_token


def test_max_tokens_defaults_to_the_cards_max_output(
    client: openai.OpenAI, bedrock: FakeBedrock
) -> None:
    client.chat.completions.create(model="claude-b", messages=HELLO)
    assert bedrock.requests[-1].body["inferenceConfig"] == {"maxTokens": 4096}


def test_a_deployment_without_a_credential_signs_with_the_standard_chain(
    client: openai.OpenAI, bedrock: FakeBedrock
) -> None:
    completion = client.chat.completions.create(model="nova-b", messages=HELLO)
    assert completion.choices[0].message.content == "Hello from Bedrock."
    assert bedrock.raw_paths == ["/model/amazon.nova-lite-v1%3A0/converse"]
    sent = bedrock.requests[-1]
    assert f"Credential={CHAIN_KEY.access_key_id}/" in sent.headers["authorization"]
    assert "x-amz-security-token" not in sent.headers
    assert bedrock.signature_failures == []


@pytest.mark.parametrize(
    ("model", "refusal"),
    [
        ("claude-b-misregioned", "InvalidSignatureException"),
        ("claude-b-stranger", "UnrecognizedClientException"),
    ],
)
def test_a_signature_aws_refuses_is_a_502_that_names_no_secret(
    client: openai.OpenAI,
    bedrock: FakeBedrock,
    bedrock_gateway: GatewayProcess,
    model: str,
    refusal: str,
) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model=model, messages=HELLO)
    assert caught.value.status_code == 502
    assert caught.value.code == "upstream_error"
    assert [failure.split(":")[0] for failure in bedrock.signature_failures] == [refusal]
    assert "refused the gateway's AWS credentials" in bedrock_gateway.log()
    text = caught.value.response.text
    assert [secret for secret in SECRETS if secret in text] == []
    assert bedrock.base_url not in text


# -- answers and streams --------------------------------------------------------------------------


def test_a_stream_is_read_from_aws_event_stream_frames(
    client: openai.OpenAI, bedrock: FakeBedrock
) -> None:
    bedrock.enqueue(stream_reply(stream_frames(["One", " two", " three"], usage=usage_body(9, 3))))
    chunks = list(
        client.chat.completions.create(
            model="claude-b",
            messages=HELLO,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "One two three"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (9, 3)
    assert bedrock.raw_paths == [f"{CLAUDE_PATH}/converse-stream"]
    assert bedrock.requests[-1].headers["accept"] == "application/vnd.amazon.eventstream"
    assert bedrock.signature_failures == []


@pytest.mark.parametrize(
    ("tool_choice", "sent_choice"),
    [
        ("auto", {"auto": {}}),
        ("required", {"any": {}}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            {"tool": {"name": "get_weather"}},
        ),
    ],
    ids=["auto", "required", "named"],
)
def test_tool_choice_is_translated_and_the_tool_use_comes_back_as_a_tool_call(
    client: openai.OpenAI, bedrock: FakeBedrock, tool_choice: Any, sent_choice: Any
) -> None:
    completion = client.chat.completions.create(
        model="claude-b",
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER_TOOL],
        tool_choice=tool_choice,
    )
    assert bedrock.requests[-1].body["toolConfig"] == {
        "tools": [WEATHER_SPEC],
        "toolChoice": sent_choice,
    }
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls or []
    assert [(c.id, c.function.name, orjson.loads(c.function.arguments)) for c in calls] == [  # type: ignore[union-attr]
        ("tooluse_fake0001", "get_weather", {"city": "Paris"})
    ]


def test_streamed_tool_input_fragments_arrive_as_one_complete_call(
    client: openai.OpenAI, bedrock: FakeBedrock
) -> None:
    uses = [
        ToolUse("get_weather", {"city": "Paris"}, "tooluse_a"),
        ToolUse("get_weather", {"city": "Lyon"}, "tooluse_b"),
    ]
    bedrock.enqueue(stream_reply(stream_frames(["Let me check."], uses)))
    chunks = list(
        client.chat.completions.create(
            model="claude-b", messages=HELLO, tools=[WEATHER_TOOL], stream=True
        )
    )
    calls = [call for c in chunks if c.choices for call in (c.choices[0].delta.tool_calls or [])]
    assert [(c.index, c.id, c.function.name, c.function.arguments) for c in calls] == [  # type: ignore[union-attr]
        (0, "tooluse_a", "get_weather", '{"city":"Paris"}'),
        (1, "tooluse_b", "get_weather", '{"city":"Lyon"}'),
    ]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Let me check."
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


def test_tool_results_go_back_as_a_user_turn_of_tool_result_blocks(
    client: openai.OpenAI, bedrock: FakeBedrock
) -> None:
    messages: Any = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18°C and sunny"},
        {"role": "user", "content": "And tomorrow?"},
    ]
    completion = client.chat.completions.create(
        model="claude-b", messages=messages, tools=[WEATHER_TOOL]
    )
    assert completion.choices[0].message.content == "Hello from Bedrock."
    assert bedrock.requests[-1].body["messages"] == [
        {"role": "user", "content": [{"text": "Weather in Paris?"}]},
        {
            "role": "assistant",
            "content": [
                {
                    "toolUse": {
                        "toolUseId": "call_1",
                        "name": "get_weather",
                        "input": {"city": "Paris"},
                    }
                }
            ],
        },
        {
            "role": "user",
            "content": [
                {"toolResult": {"toolUseId": "call_1", "content": [{"text": "18°C and sunny"}]}},
                {"text": "And tomorrow?"},
            ],
        },
    ]


def test_tool_choice_none_leaves_the_tools_out_and_is_refused_once_tools_were_called(
    client: openai.OpenAI, bedrock: FakeBedrock
) -> None:
    client.chat.completions.create(
        model="claude-b", messages=HELLO, tools=[WEATHER_TOOL], tool_choice="none"
    )
    assert "toolConfig" not in bedrock.requests[-1].body
    history: Any = [
        *HELLO,
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="claude-b", messages=history, tools=[WEATHER_TOOL], tool_choice="none"
        )
    assert caught.value.code == "unsupported_parameter"
    assert caught.value.param == "tool_choice"  # type: ignore[attr-defined]
    assert len(bedrock.requests) == 1


@pytest.mark.parametrize("stream", [False, True], ids=["answer", "stream"])
def test_a_json_schema_is_a_forced_tool_whose_input_is_the_answer(
    client: openai.OpenAI, bedrock: FakeBedrock, stream: bool
) -> None:
    request: Any = {"model": "claude-b", "messages": HELLO, "response_format": PERSON_FORMAT}
    if stream:
        chunks = list(client.chat.completions.create(**request, stream=True))
        content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        finish = [c.choices[0].finish_reason for c in chunks if c.choices][-1]
        calls = [c for c in chunks if c.choices and c.choices[0].delta.tool_calls]
    else:
        choice = client.chat.completions.create(**request).choices[0]
        content, finish, calls = choice.message.content or "", choice.finish_reason, []
    assert orjson.loads(content) == {"name": "Paris", "age": 1}
    assert finish == "stop"
    assert calls == []
    assert bedrock.requests[-1].body["toolConfig"] == {
        "tools": [
            {
                "toolSpec": {
                    "name": "person",
                    "description": "Give your answer as this tool's input; it must match the "
                    "input schema.",
                    "inputSchema": {"json": PERSON},
                }
            }
        ],
        "toolChoice": {"tool": {"name": "person"}},
    }


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("max_tokens", "length"),
        ("stop_sequence", "stop"),
        ("guardrail_intervened", "content_filter"),
        ("content_filtered", "content_filter"),
    ],
)
@pytest.mark.parametrize("stream", [False, True], ids=["answer", "stream"])
def test_stop_reasons_become_finish_reasons(
    client: openai.OpenAI,
    bedrock: FakeBedrock,
    stop_reason: str,
    finish_reason: str,
    stream: bool,
) -> None:
    if stream:
        bedrock.enqueue(stream_reply(stream_frames(["Cut"], stop_reason=stop_reason)))
        chunks = list(client.chat.completions.create(model="claude-b", messages=HELLO, stream=True))
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == finish_reason
    else:
        bedrock.enqueue(JsonReply(converse_answer("Cut", stop_reason=stop_reason)))
        completion = client.chat.completions.create(model="claude-b", messages=HELLO)
        assert completion.choices[0].finish_reason == finish_reason


def test_an_inline_image_is_sent_as_an_image_block_and_a_remote_one_is_refused(
    client: openai.OpenAI, bedrock: FakeBedrock
) -> None:
    pixel = (
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5E"
        "rkJggg=="
    )
    content: Any = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{pixel}"}},
    ]
    client.chat.completions.create(
        model="claude-b", messages=[{"role": "user", "content": content}]
    )
    assert bedrock.requests[-1].body["messages"][0]["content"] == [
        {"text": "What is this?"},
        {"image": {"format": "png", "source": {"bytes": pixel}}},
    ]
    content[1]["image_url"]["url"] = "https://example.com/cat.png"
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="claude-b", messages=[{"role": "user", "content": content}]
        )
    assert caught.value.code == "unsupported_parameter"
    assert caught.value.param == "messages[0].content[1].image_url"  # type: ignore[attr-defined]
    assert len(bedrock.requests) == 1


@pytest.mark.parametrize(
    ("extra", "code", "param"),
    [
        ({"n": 2}, "invalid_parameter", "n"),
        ({"seed": 7}, "unsupported_parameter", "seed"),
        ({"presence_penalty": 0.5}, "unsupported_parameter", "presence_penalty"),
        ({"temperature": 1.5}, "invalid_parameter", "temperature"),
        (
            {"tools": [WEATHER_TOOL], "parallel_tool_calls": False},
            "unsupported_parameter",
            "parallel_tool_calls",
        ),
        ({"user": "ünïcode"}, "invalid_parameter", "user"),
    ],
    ids=["n", "seed", "penalty", "temperature", "parallel", "user"],
)
def test_what_converse_cannot_honour_is_refused_by_name_before_any_call(
    client: openai.OpenAI, bedrock: FakeBedrock, extra: dict[str, Any], code: str, param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="claude-b", messages=HELLO, **extra)
    assert (caught.value.code, caught.value.param) == (code, param)  # type: ignore[attr-defined]
    assert bedrock.requests == []


# -- usage and billing ----------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["answer", "stream"])
def test_prompt_cache_reads_are_billed_at_the_cached_price(
    bedrock_gateway: GatewayProcess, client: openai.OpenAI, bedrock: FakeBedrock, stream: bool
) -> None:
    usage = usage_body(100, 10, cache_read=900, cache_write=50)
    if stream:
        bedrock.enqueue(stream_reply(stream_frames(["Cached."], usage=usage)))
        raw = client.chat.completions.with_raw_response.create(
            model="claude-b", messages=HELLO, stream=True
        )
        list(raw.parse())
    else:
        bedrock.enqueue(JsonReply(converse_answer("Cached.", usage=usage)))
        raw = client.chat.completions.with_raw_response.create(model="claude-b", messages=HELLO)
        completion = raw.parse()
        assert completion.usage is not None and completion.usage.prompt_tokens == 1050
    record = request_record(bedrock_gateway, raw.headers["x-request-id"])
    assert (record["prompt_tokens"], record["cached_prompt_tokens"]) == (1050, 900)
    assert record["completion_tokens"] == 10 and record["usage_estimated"] is False
    assert record["cost_micros"] == cost_micros(
        CLAUDE_PRICE, Usage(1050, 10, cached_prompt_tokens=900)
    )


def broken_stream(client: openai.OpenAI) -> str:
    """Stream a request whose upstream stream breaks; the request id, once the SDK raised."""
    raw = client.chat.completions.with_raw_response.create(
        model="claude-b", messages=HELLO, stream=True
    )
    with pytest.raises((openai.APIError, httpx.HTTPError)):
        for _ in raw.parse():
            pass
    return raw.headers["x-request-id"]


FRAMES = stream_frames(["a", "b", "c", "d"])
MALFORMED_EVENT = encode_frame(
    {
        ":event-type": "contentBlockDelta",
        ":content-type": "application/json",
        ":message-type": "event",
    },
    b'{"contentBlockIndex": 0, "delta": {"text": ',
)


@pytest.mark.parametrize(
    "reply",
    [
        stream_reply(FRAMES, reset_after=4),
        stream_reply([*FRAMES[:4], corrupted(FRAMES[4]), *FRAMES[5:]]),
        stream_reply([*FRAMES[:4], corrupted(FRAMES[4]), *FRAMES[5:]], delay_s=0.02),
        stream_reply([*FRAMES[:4], MALFORMED_EVENT]),
        stream_reply([*FRAMES[:4], exception_frame("modelStreamErrorException", "model failed")]),
        stream_reply([*FRAMES[:4], exception_frame("throttlingException", "slow down")]),
        stream_reply(stream_frames(["a", "b", "c", "d"], metadata=False)),
        stream_reply([*FRAMES[:4], FRAMES[4][:20]]),
    ],
    ids=[
        "reset-mid-stream",
        "corrupt-frame",
        "corrupt-frame-read-alone",
        "malformed-event",
        "model-stream-error",
        "throttled-mid-stream",
        "no-metadata",
        "truncated-frame",
    ],
)
def test_a_broken_stream_is_an_error_billed_once_for_what_arrived(
    bedrock_gateway: GatewayProcess, client: openai.OpenAI, bedrock: FakeBedrock, reply: StreamReply
) -> None:
    bedrock.enqueue(reply)
    record = request_record(bedrock_gateway, broken_stream(client))
    assert record["outcome"] == "failed"
    assert record["usage_estimated"] is True
    assert record["completion_tokens"] >= 1  # the text that arrived, estimated
    assert record["prompt_tokens"] >= 1


@pytest.mark.parametrize("stream", [False, True], ids=["answer", "stream"])
def test_unreadable_model_output_is_a_failure_billed_as_bedrock_reported(
    bedrock_gateway: GatewayProcess, client: openai.OpenAI, bedrock: FakeBedrock, stream: bool
) -> None:
    usage = usage_body(30, 7)
    if stream:
        frames = stream_frames(['{"na'], stop_reason="malformed_model_output", usage=usage)
        bedrock.enqueue(stream_reply(frames))
        request_id = broken_stream(client)
    else:
        answer = converse_answer('{"na', stop_reason="malformed_model_output", usage=usage)
        bedrock.enqueue(JsonReply(answer))
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(model="claude-b", messages=HELLO)
        assert (caught.value.status_code, caught.value.code) == (502, "upstream_error")
        request_id = caught.value.response.headers["x-request-id"]
    record = request_record(bedrock_gateway, request_id)
    assert (record["prompt_tokens"], record["completion_tokens"]) == (30, 7)
    assert record["usage_estimated"] is False and record["outcome"] == "failed"


# -- faults before the answer ---------------------------------------------------------------------


def test_throttling_is_a_429_with_a_retry_hint_and_a_route_falls_back(
    client: openai.OpenAI, bedrock: FakeBedrock
) -> None:
    throttled = error_reply(429, "ThrottlingException", "Too many requests, please wait.")
    bedrock.enqueue(throttled)
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="claude-b", messages=HELLO)
    assert caught.value.response.headers["retry-after"] == "1"

    # The route's first try is throttled (claude-b-eu, resting after the 429 above, goes last).
    bedrock.enqueue(throttled)
    raw = client.chat.completions.with_raw_response.create(model=ROUTE, messages=HELLO)
    assert raw.parse().choices[0].message.content == "Hello from Bedrock."
    tried = [path.removesuffix("/converse") for path in bedrock.raw_paths[-2:]]
    assert sorted(tried) == sorted([CLAUDE_PATH, PROFILE_PATH])
    deployments = {CLAUDE_PATH: "claude-b-eu", PROFILE_PATH: "claude-b-eu2"}
    assert raw.headers["x-modelyard-deployment"] == deployments[tried[1]]
    assert raw.headers["x-modelyard-attempts"] == "2"


@pytest.mark.parametrize(
    ("status", "error_type", "expected", "code"),
    [
        (503, "ServiceUnavailableException", 503, "upstream_unavailable"),
        (429, "ModelNotReadyException", 503, "upstream_unavailable"),
        (408, "ModelTimeoutException", 504, "upstream_timeout"),
        (424, "ModelErrorException", 502, "upstream_error"),
        (500, "InternalServerException", 502, "upstream_error"),
        (403, "AccessDeniedException", 502, "upstream_error"),
    ],
)
@pytest.mark.parametrize("stream", [False, True], ids=["answer", "stream"])
def test_bedrock_failures_map_to_gateway_statuses_without_their_detail(
    client: openai.OpenAI,
    bedrock: FakeBedrock,
    status: int,
    error_type: str,
    expected: int,
    code: str,
    stream: bool,
) -> None:
    bedrock.enqueue(error_reply(status, error_type, "internal detail arn:aws:bedrock:secret-ish"))
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="claude-b", messages=HELLO, stream=stream)
    assert (caught.value.status_code, caught.value.code) == (expected, code)
    assert "internal detail" not in caught.value.response.text
    assert bedrock.base_url not in caught.value.response.text


@pytest.mark.parametrize("stream", [False, True], ids=["answer", "stream"])
def test_input_too_long_is_context_length_exceeded_and_other_refusals_pass_their_reason_on(
    client: openai.OpenAI, bedrock: FakeBedrock, stream: bool
) -> None:
    bedrock.enqueue(
        error_reply(400, "ValidationException", "Input is too long for requested model.")
    )
    with pytest.raises(openai.BadRequestError) as too_long:
        client.chat.completions.create(model="claude-b", messages=HELLO, stream=stream)
    assert too_long.value.code == "context_length_exceeded"

    bedrock.enqueue(
        error_reply(400, "ValidationException", "A conversation must start with a user message.")
    )
    with pytest.raises(openai.BadRequestError) as rejected:
        client.chat.completions.create(model="claude-b", messages=HELLO, stream=stream)
    assert rejected.value.code == "upstream_rejected_request"
    assert "must start with a user message" in rejected.value.message

    bedrock.enqueue(error_reply(404, "ResourceNotFoundException", "Model not found."))
    with pytest.raises(openai.BadRequestError) as missing:
        client.chat.completions.create(model="claude-b", messages=HELLO, stream=stream)
    assert missing.value.code == "upstream_rejected_request"


# -- other surfaces -------------------------------------------------------------------------------


def test_the_anthropic_messages_surface_reaches_bedrock_and_counts_with_count_tokens(
    bedrock_gateway: GatewayProcess, bedrock: FakeBedrock
) -> None:
    client = anthropic.Anthropic(
        base_url=bedrock_gateway.base_url, api_key=bedrock_gateway.admin_key, max_retries=0
    )
    bedrock.enqueue(JsonReply(converse_answer("Bonjour.", usage=usage_body(20, 3))))
    message = client.messages.create(
        model="claude-b",
        max_tokens=100,
        system="Be brief.",
        messages=[{"role": "user", "content": "Hello"}],
    )
    assert message.content[0].text == "Bonjour."  # type: ignore[union-attr]
    assert (message.usage.input_tokens, message.usage.output_tokens) == (20, 3)
    assert bedrock.requests[-1].body["system"] == [{"text": "Be brief."}]

    tool = {"name": "get_weather", "input_schema": WEATHER_PARAMETERS}
    with client.messages.stream(
        model="claude-b",
        max_tokens=100,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[tool],  # type: ignore[list-item]
    ) as stream:
        final = stream.get_final_message()
    uses = [block for block in final.content if block.type == "tool_use"]
    assert [(use.name, use.input) for use in uses] == [("get_weather", {"city": "Paris"})]  # type: ignore[union-attr]
    assert final.stop_reason == "tool_use"

    bedrock.enqueue(JsonReply({"inputTokens": 1234}))
    counted = client.messages.count_tokens(
        model="claude-b", messages=[{"role": "user", "content": "Hello"}]
    )
    assert counted.input_tokens == 1234
    assert bedrock.raw_paths[-1] == f"{CLAUDE_PATH}/count-tokens"
    assert bedrock.requests[-1].body == {
        "input": {"converse": {"messages": [{"role": "user", "content": [{"text": "Hello"}]}]}}
    }
    assert bedrock.signature_failures == []


def test_the_responses_surface_reaches_bedrock(client: openai.OpenAI, bedrock: FakeBedrock) -> None:
    bedrock.enqueue(JsonReply(converse_answer("Bonjour.", usage=usage_body(20, 3))))
    response = client.responses.create(
        model="claude-b", instructions="Be brief.", input="Hello", store=False
    )
    assert response.output_text == "Bonjour."
    assert response.usage is not None and response.usage.input_tokens == 20
    assert bedrock.requests[-1].body["system"] == [{"text": "Be brief."}]
    assert bedrock.requests[-1].body["messages"] == [
        {"role": "user", "content": [{"text": "Hello"}]}
    ]
