"""The Cohere provider's pure translations: the canonical request as Cohere's body, Cohere's
answers, streams and error answers as events and errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from modelyard.catalog.cards import DataPolicy, Deployment, Price, Upstream
from modelyard.errors import (
    ContextLengthExceeded,
    InvalidParameter,
    ModelyardError,
    RateLimited,
    UnsupportedParameter,
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
from modelyard.providers.cohere.answer import answer_usage, events_from_answer, usage_of
from modelyard.providers.cohere.errors import read_error
from modelyard.providers.cohere.request import chat_body
from modelyard.providers.cohere.stream import events_from_stream
from modelyard.structured.contract import contract_for
from modelyard.testing.fake_cohere import (
    chat_answer,
    malformed_event,
    stream_events,
    tool_call,
    usage_body,
)

DEPLOYMENT = Deployment(
    id="cohere-eu",
    model="command-a",
    provider="cohere",
    region="eu-west",
    price=Price(2_500_000, 10_000_000),
    data_policy=DataPolicy(0, False, "test"),
    upstream=Upstream(base_url="http://127.0.0.1:1/v2", model="command-a-03-2025"),
)
WEATHER = {
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
TIME = {"type": "function", "function": {"name": "get_time"}}
HELLO = [{"role": "user", "content": "Hello"}]


def body_for(**fields: Any) -> dict[str, Any]:
    request = ChatCompletionRequest.model_validate(
        {"model": "command-a", "messages": HELLO, **fields}
    )
    return chat_body(request, DEPLOYMENT, contract_for(request))


def test_roles_sampling_and_budget_are_translated_to_cohere_names() -> None:
    body = body_for(
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
            {"role": "user", "content": "Hello"},
        ],
        max_completion_tokens=50,
        max_tokens=99,
        temperature=0.2,
        top_p=0.5,
        top_k=40,
        stop=["END"],
        seed=7,
        presence_penalty=0.5,
    )
    assert body == {
        "model": "command-a-03-2025",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "system", "content": [{"type": "text", "text": "Answer in French."}]},
            {"role": "user", "content": "Hello"},
        ],
        "max_tokens": 50,
        "temperature": 0.2,
        "p": 0.5,
        "k": 40,
        "stop_sequences": ["END"],
        "seed": 7,
        "presence_penalty": 0.5,
    }


def test_top_p_of_one_becomes_the_highest_p_cohere_accepts() -> None:
    assert body_for(top_p=1.0)["p"] == 0.99


def test_stream_flag_is_sent_only_for_streams() -> None:
    assert body_for(stream=True)["stream"] is True
    assert "stream" not in body_for(stream=False)


@pytest.mark.parametrize(
    ("fields", "param", "error"),
    [
        ({"n": 2}, "n", InvalidParameter),
        ({"top_k": 501}, "top_k", InvalidParameter),
        ({"frequency_penalty": -0.5}, "frequency_penalty", InvalidParameter),
        ({"presence_penalty": 1.5}, "presence_penalty", InvalidParameter),
        ({"safe_prompt": True}, "safe_prompt", UnsupportedParameter),
        ({"documents": ["a"]}, "documents", UnsupportedParameter),
        (
            {"messages": [{"role": "user", "content": "Hi", "name": "ada"}]},
            "messages[0].name",
            UnsupportedParameter,
        ),
    ],
)
def test_what_cohere_cannot_honour_is_refused_by_the_canonical_name(
    fields: dict[str, Any], param: str, error: type[ModelyardError]
) -> None:
    with pytest.raises(error) as caught:
        body_for(**fields)
    assert caught.value.param == param


def test_tool_calls_and_results_in_the_history_become_cohere_messages() -> None:
    body = body_for(
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": "I will look it up.",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "18C", "name": "get_weather"},
            {"role": "assistant", "content": "It is 18C."},
        ],
        tools=[WEATHER],
    )
    assert body["messages"][1:] == [
        {
            "role": "assistant",
            "tool_plan": "I will look it up.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
        {"role": "assistant", "content": "It is 18C."},
    ]
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "The weather in a city.",
                "parameters": WEATHER["function"]["parameters"],  # type: ignore[index]
            },
        }
    ]
    assert "tool_choice" not in body and "strict_tools" not in body


@pytest.mark.parametrize(
    ("choice", "offered", "sent"),
    [
        ("auto", ["get_weather", "get_time"], None),
        ("none", ["get_weather", "get_time"], "NONE"),
        ("required", ["get_weather", "get_time"], "REQUIRED"),
        ({"type": "function", "function": {"name": "get_time"}}, ["get_time"], "REQUIRED"),
    ],
    ids=["auto", "none", "required", "named"],
)
def test_tool_choice_is_served_with_cohere_choices(
    choice: Any, offered: list[str], sent: str | None
) -> None:
    body = body_for(tools=[WEATHER, TIME], tool_choice=choice)
    assert [tool["function"]["name"] for tool in body["tools"]] == offered
    assert body.get("tool_choice") == sent


def test_strict_tools_is_asked_only_when_every_tool_is_strict() -> None:
    strict = {"type": "function", "function": {**WEATHER["function"], "strict": True}}  # type: ignore[dict-item]
    assert body_for(tools=[strict])["strict_tools"] is True
    assert "strict_tools" not in body_for(tools=[strict, TIME])


def test_response_formats_become_cohere_json_modes() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    named = {"type": "json_schema", "json_schema": {"name": "thing", "schema": schema}}
    assert body_for(response_format=named)["response_format"] == {
        "type": "json_object",
        "json_schema": schema,
    }
    assert body_for(response_format={"type": "json_object"})["response_format"] == {
        "type": "json_object"
    }
    assert "response_format" not in body_for(response_format={"type": "text"})


def test_image_parts_become_cohere_image_urls() -> None:
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}},
    ]
    body = body_for(messages=[{"role": "user", "content": content}])
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}},
    ]


def test_usage_prefers_tokens_over_billed_units_and_keeps_cached_tokens() -> None:
    assert usage_of(usage_body(120, 9, cached_tokens=100)) == Usage(
        120, 9, cached_prompt_tokens=100
    )
    assert usage_of({"billed_units": {"input_tokens": 5.0, "output_tokens": 2.0}}) == Usage(5, 2)
    assert usage_of({}) is None


async def collect(events: AsyncIterator[ChatEvent]) -> list[ChatEvent]:
    return [event async for event in events]


class Reports:
    def __init__(self) -> None:
        self.usages: list[Usage] = []

    def __call__(self, usage: Usage) -> None:
        self.usages.append(usage)


@pytest.mark.anyio
async def test_an_answer_with_a_plan_and_tool_calls_is_text_then_complete_calls() -> None:
    answer = chat_answer(
        None,
        tool_plan="Looking up.",
        tool_calls=[tool_call("c1", "get_weather", {"city": "Paris"})],
        usage=usage_body(30, 12),
    )
    usage = answer_usage(answer, 5)
    assert usage == Usage(30, 12)
    events = await collect(events_from_answer(answer, "cohere-eu", usage))
    assert events == [
        TextDelta(0, "Looking up."),
        ToolCallDelta(0, 0, "c1", "get_weather", '{"city":"Paris"}'),
        ChoiceFinished(0, "tool_calls"),
        Finished(Usage(30, 12)),
    ]


def test_an_answer_without_usage_is_estimated_from_its_text() -> None:
    answer = chat_answer("Twelve chars")
    del answer["usage"]
    assert answer_usage(answer, 5) == Usage(5, 3, estimated=True)
    assert answer_usage({"unexpected": True}, 5) == Usage(5, 0, estimated=True)


@pytest.mark.parametrize(
    ("reason", "expected"),
    [("COMPLETE", "stop"), ("STOP_SEQUENCE", "stop"), ("MAX_TOKENS", "length")],
)
@pytest.mark.anyio
async def test_finish_reasons_map_to_the_canonical_ones(reason: str, expected: str) -> None:
    answer = chat_answer("x", finish_reason=reason)
    events = await collect(events_from_answer(answer, "d", Usage(1, 1)))
    assert ChoiceFinished(0, expected) in events


@pytest.mark.parametrize(
    ("reason", "error"), [("ERROR", UpstreamFailed), ("TIMEOUT", UpstreamTimeout)]
)
@pytest.mark.anyio
async def test_an_answer_that_failed_while_generating_is_a_failure_billed_as_reported(
    reason: str, error: type[ModelyardError]
) -> None:
    answer = chat_answer("partial", finish_reason=reason, usage=usage_body(40, 3))
    assert answer_usage(answer, 5) == Usage(40, 3)
    events = await collect(events_from_answer(answer, "d", Usage(40, 3)))
    assert len(events) == 1 and isinstance(events[0], Failed)
    assert type(events[0].error) is error


async def lines_of(frames: list[bytes], *, cut: bool = False) -> AsyncIterator[bytes]:
    for frame in frames:
        for line in (frame + b"\n\n").split(b"\n"):
            yield line
    if cut:
        raise UpstreamStreamBroken("cut")


async def stream(frames: list[bytes], reports: Reports, *, cut: bool = False) -> list[ChatEvent]:
    lines = lines_of(frames, cut=cut)
    first = await anext(lines)
    return await collect(events_from_stream(first, lines, "cohere-eu", 8, reports))


@pytest.mark.anyio
async def test_streamed_argument_fragments_arrive_as_one_complete_call() -> None:
    call = tool_call("c1", "get_weather", {"city": "Paris", "unit": "celsius"})
    reports = Reports()
    events = await stream(
        stream_events((), tool_plan=["I will", " check."], tool_calls=[call], argument_chunk=3),
        reports,
    )
    assert events == [
        TextDelta(0, "I will"),
        TextDelta(0, " check."),
        ToolCallDelta(0, 0, "c1", "get_weather", '{"city":"Paris","unit":"celsius"}'),
        ChoiceFinished(0, "tool_calls"),
        Finished(Usage(11, 0)),
    ]
    assert reports.usages == [Usage(11, 0)]


@pytest.mark.anyio
async def test_thinking_content_is_not_part_of_the_answer() -> None:
    frames = stream_events(["Answer."])
    thinking = [
        b'event: content-start\ndata: {"type":"content-start","index":0,'
        b'"delta":{"message":{"content":{"type":"thinking","thinking":""}}}}',
        b'event: content-delta\ndata: {"type":"content-delta","index":0,'
        b'"delta":{"message":{"content":{"thinking":"hmm"}}}}',
    ]
    events = await stream([frames[0], *thinking, *frames[1:]], Reports())
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["Answer."]


@pytest.mark.parametrize(
    ("frames", "cut"),
    [
        (stream_events(["a", "b", "c"], end=False), False),
        (stream_events(["a", "b", "c"], end=False), True),
        ([*stream_events(["a", "b", "c"], end=False), malformed_event()], False),
        ([*stream_events(["a", "b", "c"], end=False), b"data: [1, 2]"], False),
    ],
    ids=["ends-early", "cut", "malformed-json", "not-an-event"],
)
@pytest.mark.anyio
async def test_a_broken_stream_fails_and_bills_what_arrived_once(
    frames: list[bytes], cut: bool
) -> None:
    reports = Reports()
    events = await stream(frames, reports, cut=cut)
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["a", "b", "c"]
    assert isinstance(events[-1], Failed)
    assert isinstance(events[-1].error, UpstreamStreamBroken)
    assert reports.usages == [Usage(8, 3, estimated=True)]


@pytest.mark.anyio
async def test_a_stream_ending_in_error_is_a_failure_billed_as_cohere_reported() -> None:
    reports = Reports()
    frames = stream_events(["a"], finish_reason="ERROR", error="boom", usage=usage_body(20, 1))
    events = await stream(frames, reports)
    assert isinstance(events[-1], Failed) and isinstance(events[-1].error, UpstreamFailed)
    assert "boom" not in events[-1].error.message
    assert reports.usages == [Usage(20, 1)]


def error_of(status: int, message: str, headers: dict[str, str] | None = None) -> ModelyardError:
    body = orjson.dumps({"id": "x", "message": message})
    return read_error("cohere-eu", status, headers or {}, body)


def test_error_answers_map_by_status() -> None:
    limited = error_of(429, "You are past the per minute request limit", {"retry-after": "9"})
    assert isinstance(limited, RateLimited) and limited.retry_after_s == 9
    overloaded = error_of(503, "overloaded", {"retry-after": "4"})
    assert isinstance(overloaded, UpstreamUnavailable) and overloaded.retry_after_s == 4
    assert type(error_of(500, "internal")) is UpstreamFailed
    assert type(error_of(401, "invalid api token")) is UpstreamFailed
    assert type(error_of(404, "model not found")) is UpstreamFailed
    assert type(error_of(504, "timeout")) is UpstreamTimeout
    rejected = error_of(422, "invalid type for messages")
    assert isinstance(rejected, UpstreamRejected)
    assert "invalid type for messages" in rejected.message


def test_only_a_prompt_over_the_window_is_context_length_exceeded() -> None:
    too_long = error_of(
        400, "too many tokens: total number of tokens in the prompt cannot exceed 4081"
    )
    assert isinstance(too_long, ContextLengthExceeded)
    budget = error_of(400, "too many tokens: max tokens must be less than or equal to 4096")
    assert type(budget) is UpstreamRejected
    other = error_of(400, "invalid request: temperature must be non-negative")
    assert type(other) is UpstreamRejected


def test_an_error_body_that_is_not_json_still_maps_by_status() -> None:
    error = read_error("cohere-eu", 400, {}, b"<html>bad gateway</html>")
    assert type(error) is UpstreamRejected and "(no detail)" in error.message
