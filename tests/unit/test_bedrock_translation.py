"""The pure translations of the `bedrock` provider: the canonical request to a Converse body,
Converse answers and stream events to provider events, and Bedrock's errors to ours."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modelyard.catalog.cards import Capability, ModelCard
from modelyard.catalog.loader import load_catalog
from modelyard.errors import (
    ContextLengthExceeded,
    InvalidParameter,
    RateLimited,
    UpstreamFailed,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from modelyard.protocol.chat import ChatCompletionRequest
from modelyard.protocol.generation import ChoiceFinished, TextDelta, ToolCallDelta, Usage
from modelyard.providers.bedrock import BedrockProvider
from modelyard.providers.bedrock.errors import read_error, stream_exception
from modelyard.providers.bedrock.request import converse_request
from modelyard.providers.bedrock.response import (
    Reading,
    StreamReader,
    answer_events,
    converse_usage,
)
from modelyard.providers.transport import UpstreamTransport
from modelyard.structured.contract import contract_for

CARD = ModelCard(
    id="claude",
    display_name="Claude",
    publisher="Anthropic",
    license="proprietary",
    context_window=200_000,
    max_output_tokens=2048,
    languages=("en",),
    capabilities=frozenset({Capability.CHAT, Capability.TOOLS, Capability.JSON_SCHEMA}),
)
TOOL = {
    "type": "function",
    "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}},
}
SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
READING = Reading("dep", None, prompt_estimate=10)


def body_of(**fields: Any) -> tuple[dict[str, Any], str | None]:
    request = ChatCompletionRequest.model_validate({"model": "claude", **fields})
    converse = converse_request(request, CARD, contract_for(request))
    return converse.body, converse.answer_tool


def test_turns_of_one_role_are_merged_and_developer_messages_join_the_system() -> None:
    body, _ = body_of(
        messages=[
            {"role": "system", "content": "One."},
            {"role": "user", "content": "a"},
            {"role": "developer", "content": [{"type": "text", "text": "Two."}]},
            {"role": "user", "content": [{"type": "text", "text": "b"}]},
            {"role": "assistant", "content": ""},
            {"role": "assistant", "content": "c"},
        ]
    )
    assert body["system"] == [{"text": "One."}, {"text": "Two."}]
    assert body["messages"] == [
        {"role": "user", "content": [{"text": "a"}, {"text": "b"}]},
        {"role": "assistant", "content": [{"text": "c"}]},
    ]


def test_json_object_is_a_forced_answer_tool_and_auto_tools_may_be_called_instead() -> None:
    body, answer = body_of(
        messages=[{"role": "user", "content": "x"}], response_format={"type": "json_object"}
    )
    assert answer == "json_answer"
    assert body["toolConfig"]["toolChoice"] == {"tool": {"name": "json_answer"}}
    assert body["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"] == {"json": {"type": "object"}}

    schema_format = {"type": "json_schema", "json_schema": {"name": "count", "schema": SCHEMA}}
    body, answer = body_of(
        messages=[{"role": "user", "content": "x"}], tools=[TOOL], response_format=schema_format
    )
    assert answer == "count"
    assert [t["toolSpec"]["name"] for t in body["toolConfig"]["tools"]] == ["lookup", "count"]
    assert body["toolConfig"]["toolChoice"] == {"any": {}}

    body, answer = body_of(
        messages=[{"role": "user", "content": "x"}],
        tools=[TOOL],
        tool_choice="required",
        response_format=schema_format,
    )
    assert answer is None  # the answer is tool calls: the schema has nothing to shape
    assert [t["toolSpec"]["name"] for t in body["toolConfig"]["tools"]] == ["lookup"]


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        (
            {
                "tools": [TOOL],
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "lookup", "schema": SCHEMA},
                },
            },
            "response_format.json_schema.name",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "x"},
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {
                                "id": "c",
                                "type": "function",
                                "function": {"name": "f", "arguments": "{"},
                            }
                        ],
                    },
                ],
                "tools": [TOOL],
            },
            "messages[1].tool_calls[0].function.arguments",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "x"},
                    {"role": "tool", "tool_call_id": "c", "content": "result"},
                ]
            },
            "tools",
        ),
    ],
    ids=["answer-tool-name-taken", "arguments-not-json", "tool-results-without-tools"],
)
def test_what_bedrock_cannot_read_is_refused_naming_the_parameter(
    fields: dict[str, Any], param: str
) -> None:
    with pytest.raises(InvalidParameter) as caught:
        body_of(**{"messages": [{"role": "user", "content": "x"}], **fields})
    assert caught.value.param == param


def test_usage_counts_cache_reads_and_writes_in_the_prompt() -> None:
    raw = {
        "inputTokens": 3,
        "outputTokens": 4,
        "cacheReadInputTokens": 100,
        "cacheWriteInputTokens": 20,
    }
    assert converse_usage(raw) == Usage(123, 4, cached_prompt_tokens=100)
    assert converse_usage({"inputTokens": 3, "outputTokens": 4}) == Usage(3, 4)
    assert converse_usage(None) is None


def test_the_answer_tools_input_is_the_text_and_other_text_is_dropped() -> None:
    payload = {
        "output": {
            "message": {
                "content": [
                    {"text": "Here you go:"},
                    {"toolUse": {"toolUseId": "t1", "name": "count", "input": {"n": 3}}},
                ]
            }
        },
        "stopReason": "tool_use",
    }
    events, usage = answer_events(payload, Reading("dep", "count", 10))
    assert events == [TextDelta(0, '{"n":3}'), ChoiceFinished(0, "stop")]
    assert usage is None
    events, _ = answer_events(payload, READING)
    assert events == [
        TextDelta(0, "Here you go:"),
        ToolCallDelta(0, 0, "t1", "count", '{"n":3}'),
        ChoiceFinished(0, "tool_calls"),
    ]


@pytest.mark.parametrize("payload", [{"stopReason": "end_turn"}, {"output": {"message": {}}}, []])
def test_an_answer_of_unknown_shape_is_a_failure(payload: Any) -> None:
    with pytest.raises(UpstreamFailed):
        answer_events(payload, READING)


def test_unreadable_model_output_is_a_failed_attempt_not_an_answer() -> None:
    payload = {
        "output": {"message": {"content": [{"text": "x"}]}},
        "stopReason": "malformed_tool_use",
    }
    with pytest.raises(UpstreamFailed):
        answer_events(payload, READING)


def test_the_stream_reader_assembles_tool_input_and_finishes_after_the_usage() -> None:
    reader = StreamReader(READING)
    events = []
    for event_type, payload in [
        ("messageStart", {"role": "assistant"}),
        ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hi"}}),
        ("contentBlockStop", {"contentBlockIndex": 0}),
        (
            "contentBlockStart",
            {"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "t", "name": "f"}}},
        ),
        ("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '{"a"'}}}),
        ("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": ": 1}"}}}),
        ("contentBlockStop", {"contentBlockIndex": 1}),
        ("messageStop", {"stopReason": "tool_use"}),
    ]:
        events += reader.take(event_type, payload)
    assert events == [
        TextDelta(0, "Hi"),
        ToolCallDelta(0, 0, "t", "f", '{"a": 1}'),
        ChoiceFinished(0, "tool_calls"),
    ]
    assert not reader.done
    assert reader.estimate() == Usage(10, 3, estimated=True)
    reader.take("metadata", {"usage": {"inputTokens": 8, "outputTokens": 6}})
    assert reader.done and reader.usage == Usage(8, 6)


def test_streamed_text_is_held_back_while_the_answer_tool_may_still_come() -> None:
    reader = StreamReader(Reading("dep", "count", 10))
    assert reader.take("contentBlockDelta", {"delta": {"text": "Thinking"}}) == []
    assert reader.take("messageStop", {"stopReason": "end_turn"}) == [
        TextDelta(0, "Thinking"),
        ChoiceFinished(0, "stop"),
    ]


def aws_error(status: int, kind: str, message: str) -> Any:
    headers = {"x-amzn-errortype": f"{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/"}
    return read_error("dep", status, headers, b'{"message": "' + message.encode() + b'"}')


@pytest.mark.parametrize(
    ("status", "kind", "message", "expected"),
    [
        (429, "ThrottlingException", "Too many requests", RateLimited),
        (503, "ServiceUnavailableException", "busy", UpstreamUnavailable),
        (429, "ModelNotReadyException", "loading", UpstreamUnavailable),
        (408, "ModelTimeoutException", "slow", UpstreamTimeout),
        (
            400,
            "ValidationException",
            "Input is too long for requested model.",
            ContextLengthExceeded,
        ),
        (
            400,
            "ValidationException",
            "The model returned the following errors: prompt is too long: 204086 tokens > "
            "200000 maximum",
            ContextLengthExceeded,
        ),
        (
            400,
            "ValidationException",
            "messages: a conversation must start with a user message",
            UpstreamRejected,
        ),
        (404, "ResourceNotFoundException", "no such model", UpstreamRejected),
        (403, "AccessDeniedException", "denied", UpstreamFailed),
        (500, "InternalServerException", "oops", UpstreamFailed),
    ],
)
def test_bedrock_errors_map_by_their_type(
    status: int, kind: str, message: str, expected: type[Exception]
) -> None:
    assert type(aws_error(status, kind, message)) is expected


def test_the_error_type_is_read_from_the_body_when_the_header_is_missing() -> None:
    body = b'{"__type": "com.amazon.coral.validate#ValidationException", "Message": "bad input"}'
    error = read_error("dep", 400, {}, body)
    assert isinstance(error, UpstreamRejected) and "bad input" in error.message


def test_a_throttled_answer_without_retry_after_gets_a_short_hint() -> None:
    assert aws_error(429, "ThrottlingException", "slow down").retry_after_s == 1


@pytest.mark.parametrize(
    ("exception_type", "expected"),
    [
        ("throttlingException", RateLimited),
        ("serviceUnavailableException", UpstreamUnavailable),
        ("modelStreamErrorException", UpstreamFailed),
        ("internalServerException", UpstreamFailed),
    ],
)
def test_in_stream_exceptions_map_by_their_type(
    exception_type: str, expected: type[Exception]
) -> None:
    assert type(stream_exception("dep", exception_type, b'{"message": "x"}')) is expected
    too_long = stream_exception(
        "dep", "validationException", b'{"message": "Input is too long for requested model."}'
    )
    assert isinstance(too_long, ContextLengthExceeded)


def test_the_example_catalog_loads_and_builds_a_signing_provider(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BEDROCK_AWS_KEYS", "AKIAEXAMPLE0000000:example/secret")
    catalog = load_catalog(Path(__file__).parents[2] / "docs/examples/providers-bedrock.yaml")
    (deployment,) = catalog.deployments
    assert deployment.provider == "bedrock"
    assert deployment.upstream is not None and deployment.upstream.aws_region == "eu-central-1"
    BedrockProvider(list(catalog.deployments), UpstreamTransport())
