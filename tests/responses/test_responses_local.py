"""The Responses API through the official `openai` SDK against a live gateway and the bundled
SmolLM2: answers, streams, function calling, structured output, zero retention, and errors.

Decoding is greedy (temperature 0) so runs repeat. The admin key acts in the default project,
which keeps no content; one test makes a project that does, for `previous_response_id`.
"""

from __future__ import annotations

import json
from typing import Any

import openai
import pydantic
import pytest

from tests.responses.stored import billed, project_with_key, sdk, stored_rows
from tests.support.gateway import GatewayProcess

MODEL = "smollm2"
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Get the current weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}
TIME = {
    "type": "function",
    "name": "get_time",
    "description": "Get the current time in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
# The same tool as chat declares it.
CHAT_WEATHER: Any = {
    "type": "function",
    "function": {k: WEATHER[k] for k in ("name", "description", "parameters", "strict")},
}
LONG_STORY = "Write a long story about a dragon and a knight."


def test_string_input_is_answered_and_billed_once_with_the_same_usage(
    client: openai.OpenAI, gateway: GatewayProcess
) -> None:
    raw = client.responses.with_raw_response.create(
        model=MODEL, input="Say hello.", max_output_tokens=24, temperature=0
    )
    response = raw.parse()
    request_id = raw.headers["x-request-id"]
    assert response.id == f"resp_{request_id}"
    assert response.object == "response"
    assert response.model == "smollm2-135m-instruct"
    assert response.status in ("completed", "incomplete")
    assert response.output_text
    assert response.output[0].type == "message" and response.output[0].id.startswith("msg_")
    assert raw.headers["x-modelyard-deployment"] == "smollm2-local"
    assert raw.headers["x-modelyard-cost-usd"] == "0.000000"  # a local model is free
    usage = response.usage
    assert usage is not None
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert usage.output_tokens_details.reasoning_tokens == 0
    record = billed(gateway, "default", request_id)
    assert (record["prompt_tokens"], record["completion_tokens"]) == (
        usage.input_tokens,
        usage.output_tokens,
    )
    assert (record["status"], record["outcome"]) == (200, "completed")


def test_item_list_reaches_the_model_as_the_same_conversation_as_chat(
    client: openai.OpenAI,
) -> None:
    items: Any = [
        {"role": "developer", "content": "Answer in one word."},
        {"role": "user", "content": [{"type": "input_text", "text": "What is 2+2?"}]},
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Four.", "annotations": []}],
        },
        {"role": "user", "content": "And 3+3?"},
    ]
    response = client.responses.create(
        model=MODEL, instructions="You are terse.", input=items, max_output_tokens=4, temperature=0
    )
    chat = client.chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "developer", "content": "Answer in one word."},
            {"role": "user", "content": "What is 2+2?"},
            {"role": "assistant", "content": "Four."},
            {"role": "user", "content": "And 3+3?"},
        ],
        max_tokens=4,
        temperature=0,
    )
    assert response.usage is not None and chat.usage is not None
    assert response.usage.input_tokens == chat.usage.prompt_tokens
    assert response.instructions == "You are terse."


def test_stream_helper_sees_every_event_in_order_and_the_final_response(
    client: openai.OpenAI,
) -> None:
    with client.responses.stream(
        model=MODEL, input="Say hello in three words.", max_output_tokens=200, temperature=0
    ) as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [event.type for event in events]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    deltas = [event.delta for event in events if event.type == "response.output_text.delta"]
    assert deltas
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * len(deltas),
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert final.output_text == "".join(deltas)
    assert final.status == "completed"
    assert events[0].response.id == events[-1].response.id == final.id  # type: ignore[union-attr]
    added, done = events[2], events[-2]
    assert added.item.id == done.item.id == final.output[0].id  # type: ignore[union-attr]
    assert final.usage is not None and final.usage.output_tokens > 0


def test_raw_stream_ends_incomplete_when_cut_by_max_output_tokens(client: openai.OpenAI) -> None:
    events = list(
        client.responses.create(
            model=MODEL, input=LONG_STORY, max_output_tokens=5, temperature=0, stream=True
        )
    )
    assert events[0].type == "response.created"
    assert events[0].response.status == "in_progress"  # type: ignore[union-attr]
    last = events[-1]
    assert last.type == "response.incomplete"
    assert last.response.incomplete_details is not None
    assert last.response.incomplete_details.reason == "max_output_tokens"
    assert last.response.usage is not None and last.response.usage.output_tokens == 5
    assert last.response.output[0].status == "incomplete"  # type: ignore[union-attr]


def test_function_call_round_trip_with_the_whole_input(client: openai.OpenAI) -> None:
    question: Any = [{"role": "user", "content": "What's the weather like in Paris right now?"}]
    called = client.responses.create(
        model=MODEL,
        input=question,
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice="required",
        max_output_tokens=80,
        temperature=0,
    )
    assert called.status == "completed"
    calls = [item for item in called.output if item.type == "function_call"]
    assert len(calls) >= 1
    assert calls[0].name == "get_weather" and calls[0].id.startswith("fc_")  # type: ignore[union-attr]
    assert isinstance(json.loads(calls[0].arguments)["city"], str)
    outputs = [
        {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny, 21 C."}
        for call in calls
    ]
    answered = client.responses.create(
        model=MODEL,
        input=question + [item.model_dump(exclude_none=True) for item in called.output] + outputs,
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice="none",
        max_output_tokens=24,
        temperature=0,
    )
    assert answered.output_text
    assert [item.type for item in answered.output] == ["message"]
    # The same turns as chat messages make the same prompt: calls and results reached the model.
    chat = client.chat.completions.create(
        model=MODEL,
        messages=[
            *question,
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": call.call_id,
                        "type": "function",
                        "function": {"name": call.name, "arguments": call.arguments},
                    }
                    for call in calls
                ],
            },
            *[
                {"role": "tool", "tool_call_id": call.call_id, "content": "Sunny, 21 C."}
                for call in calls
            ],
        ],
        tools=[CHAT_WEATHER],
        tool_choice="none",
        max_tokens=1,
        temperature=0,
    )
    assert answered.usage is not None and chat.usage is not None
    assert answered.usage.input_tokens == chat.usage.prompt_tokens


def test_named_tool_choice_calls_that_tool(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model=MODEL,
        input="What's the weather like in Paris right now?",
        tools=[WEATHER, TIME],  # type: ignore[list-item]
        tool_choice={"type": "function", "name": "get_time"},
        max_output_tokens=80,
        temperature=0,
    )
    assert [(item.type, getattr(item, "name", None)) for item in response.output] == [
        ("function_call", "get_time")
    ]
    assert response.tool_choice.name == "get_time"  # type: ignore[union-attr]


class City(pydantic.BaseModel):
    name: str
    population: int


def test_parse_with_a_pydantic_model_returns_output_parsed(client: openai.OpenAI) -> None:
    parsed = client.responses.parse(
        model=MODEL,
        input="Give me a city and its population.",
        text_format=City,
        max_output_tokens=120,
        temperature=0,
    )
    assert isinstance(parsed.output_parsed, City)
    assert parsed.text is not None and parsed.text.format.type == "json_schema"


def test_zero_retention_project_stores_nothing_and_cannot_continue(
    client: openai.OpenAI, gateway: GatewayProcess
) -> None:
    response = client.responses.create(
        model=MODEL, input="Say hi.", store=True, max_output_tokens=4, temperature=0
    )
    assert response.store is False
    assert stored_rows(gateway, response.id) == []
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(
            model=MODEL, input="And then?", previous_response_id=response.id, max_output_tokens=4
        )
    assert refused.value.code == "invalid_request"
    assert refused.value.param == "previous_response_id"
    assert "keeps no content" in refused.value.message
    assert "content_retention_days" in refused.value.message
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)


def test_previous_response_id_continues_a_function_call_on_a_project_with_retention(
    gateway: GatewayProcess,
) -> None:
    _, key = project_with_key(gateway, "kept", content_retention_days=1)
    client = sdk(gateway, key)
    question = "What's the weather like in Paris right now?"
    called = client.responses.create(
        model=MODEL,
        input=question,
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice="required",
        max_output_tokens=80,
        temperature=0,
    )
    assert called.store is True
    call = called.output[0]
    assert call.type == "function_call"
    answered = client.responses.create(
        model=MODEL,
        previous_response_id=called.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "Sunny."}],
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice="none",
        max_output_tokens=24,
        temperature=0,
    )
    assert answered.output_text
    assert answered.previous_response_id == called.id
    # The previous turn reached the model: the prompt is the whole conversation's.
    whole = client.responses.create(
        model=MODEL,
        input=[
            {"role": "user", "content": question},
            call.model_dump(exclude_none=True),  # type: ignore[list-item]
            {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny."},
        ],
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice="none",
        max_output_tokens=1,
        temperature=0,
        store=False,
    )
    assert answered.usage is not None and whole.usage is not None
    assert answered.usage.input_tokens == whole.usage.input_tokens
    assert client.responses.retrieve(answered.id).output_text == answered.output_text
    assert stored_rows(gateway, whole.id) == []


@pytest.mark.parametrize(
    ("extra", "code", "param"),
    [
        ({"frobnicate": True}, "unsupported_parameter", "frobnicate"),
        ({"reasoning": {"effort": "low"}}, "unsupported_parameter", "reasoning"),
        ({"tools": [{"type": "web_search"}]}, "unsupported_parameter", "tools[0].type"),
        ({"background": True}, "unsupported_parameter", "background"),
        (
            {"text": {"format": {"type": "json_schema", "name": "x"}}},
            "invalid_parameter",
            "text.format.schema",
        ),
        (
            {"text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "blob"}}}},
            "unsupported_schema",
            "text.format.schema",
        ),
        ({"max_output_tokens": 5000}, "invalid_parameter", "max_output_tokens"),
        (
            {
                "input": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "input_text", "text": "What is this?"},
                            {"type": "input_image", "image_url": "data:image/png;base64,iVBO"},
                        ],
                    }
                ]
            },
            "invalid_parameter",
            "input[0].content[1]",
        ),
    ],
)
def test_refusals_name_this_surfaces_parameter(
    client: openai.OpenAI, extra: dict[str, Any], code: str, param: str
) -> None:
    body = {"input": "Hi.", **extra}
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model=MODEL, extra_body=body)  # type: ignore[call-overload]
    assert (refused.value.code, refused.value.param) == (code, param)
    if param == "max_output_tokens":
        assert "max_output_tokens is too large" in refused.value.message


def test_unknown_model_is_the_sdks_not_found_error(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        client.responses.create(model="no-such-model", input="Hi.")
    assert missing.value.code == "model_not_found"
    assert missing.value.param == "model"
