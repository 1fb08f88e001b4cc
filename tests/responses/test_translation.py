"""The Responses request as the canonical chat request, and canonical error parameters as this
surface names them: pure functions, pinned without a gateway."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from modelyard.api.parsing import parse_model
from modelyard.errors import InvalidParameter, ModelyardError, UnsupportedParameter
from modelyard.protocol.generation import ToolCallDelta
from modelyard.protocol.responses import UNSUPPORTED_PARAMETERS, ResponsesRequest
from modelyard.protocol.responses_chat import (
    Translation,
    assistant_message,
    in_surface_terms,
    surface_param,
    to_chat_request,
)

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    "strict": True,
}


def translate(body: dict[str, Any], previous: list[dict[str, Any]] | None = None) -> Translation:
    parsed = parse_model(orjson.dumps(body), ResponsesRequest, UNSUPPORTED_PARAMETERS)
    return to_chat_request(parsed, previous or [])


def sent(translation: Translation) -> dict[str, Any]:
    return translation.request.model_dump(mode="json", exclude_none=True, by_alias=True)


def test_string_input_is_one_user_message_after_the_instructions() -> None:
    translation = translate({"model": "m", "input": "Hello", "instructions": "Be terse."})
    assert sent(translation)["messages"] == [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "Hello"},
    ]
    assert translation.origins == ("instructions", "input")
    # What a later turn continues from leaves the instructions out.
    assert translation.conversation == ({"role": "user", "content": "Hello"},)


def test_function_calls_join_the_assistant_turn_and_outputs_become_tool_messages() -> None:
    translation = translate(
        {
            "model": "m",
            "input": [
                {"role": "user", "content": "Weather in Paris and Rome?"},
                {
                    "type": "message",
                    "id": "msg_1",
                    "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": "Checking.", "annotations": []}],
                },
                {
                    "type": "function_call",
                    "id": "fc_1",
                    "status": "completed",
                    "call_id": "call_1",
                    "name": "get_weather",
                    "arguments": '{"city":"Paris"}',
                },
                {
                    "type": "function_call",
                    "call_id": "call_2",
                    "name": "get_weather",
                    "arguments": '{"city":"Rome"}',
                },
                {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
                {
                    "type": "function_call_output",
                    "call_id": "call_2",
                    "output": [{"type": "input_text", "text": "rainy"}],
                },
            ],
            "tools": [WEATHER],
        }
    )
    messages = sent(translation)["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "tool"]
    assert messages[1]["content"] == [{"type": "text", "text": "Checking."}]
    assert [c["id"] for c in messages[1]["tool_calls"]] == ["call_1", "call_2"]
    assert messages[2] == {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}
    assert messages[3]["content"] == [{"type": "text", "text": "rainy"}]
    assert translation.origins == ("input[0]", "input[1]", "input[4]", "input[5]")


def test_calls_without_an_assistant_message_before_them_open_one() -> None:
    call = {"type": "function_call", "call_id": "c", "name": "get_weather", "arguments": "{}"}
    messages = sent(translate({"model": "m", "input": [{"role": "user", "content": "x"}, call]}))[
        "messages"
    ]
    assert messages[1]["role"] == "assistant" and "content" not in messages[1]
    assert messages[1]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": "{}"}


def test_previous_conversation_comes_after_the_new_instructions() -> None:
    previous = [{"role": "user", "content": "I am Ada."}, {"role": "assistant", "content": "Hi."}]
    translation = translate(
        {"model": "m", "input": "Who am I?", "instructions": "Be terse."}, previous
    )
    assert [m["content"] for m in sent(translation)["messages"]] == [
        "Be terse.",
        "I am Ada.",
        "Hi.",
        "Who am I?",
    ]
    assert translation.origins[1:3] == ("previous_response_id", "previous_response_id")
    assert [m["content"] for m in translation.conversation] == ["I am Ada.", "Hi.", "Who am I?"]


def test_settings_map_onto_their_canonical_names() -> None:
    body = sent(
        translate(
            {
                "model": "m",
                "input": "x",
                "tools": [WEATHER],
                "tool_choice": {"type": "function", "name": "get_weather"},
                "parallel_tool_calls": False,
                "text": {
                    "format": {
                        "type": "json_schema",
                        "name": "city",
                        "schema": {"type": "object"},
                        "strict": True,
                    }
                },
                "max_output_tokens": 50,
                "temperature": 0.2,
                "top_p": 0.9,
                "metadata": {"k": "v"},
                "user": "u1",
                "store": True,
                "stream": True,
            }
        )
    )
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": WEATHER["parameters"],
                "strict": True,
            },
        }
    ]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "city", "schema": {"type": "object"}, "strict": True},
    }
    assert (body["max_completion_tokens"], body["temperature"], body["top_p"]) == (50, 0.2, 0.9)
    assert (body["parallel_tool_calls"], body["user"], body["stream"]) == (False, "u1", True)
    assert "metadata" not in body and "store" not in body


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"reasoning": {"effort": "low"}}, "reasoning"),
        ({"include": ["message.output_text.logprobs"]}, "include"),
        ({"truncation": "auto"}, "truncation"),
        ({"background": True}, "background"),
        ({"conversation": "conv_1"}, "conversation"),
        ({"tools": [WEATHER, {"type": "web_search"}]}, "tools[1].type"),
        ({"tool_choice": {"type": "file_search"}}, "tool_choice.type"),
        ({"input": [{"type": "reasoning", "id": "rs_1", "summary": []}]}, "input[0].type"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
            "input[0].content[0].type",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]},
            "input[0].content[0].file_id",
        ),
    ],
)
def test_what_is_not_honoured_is_refused_by_name(body: dict[str, Any], param: str) -> None:
    with pytest.raises(UnsupportedParameter) as refused:
        translate({"model": "m", "input": "x", **body})
    assert refused.value.param == param


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"frobnicate": 1}, "frobnicate"),
        ({"text": {"format": {"type": "json_schema", "name": "x"}}}, "text.format.schema"),
        ({"temperature": "1"}, "temperature"),
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
        ({"input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
        ({"input": ["not an item"]}, "input[0]"),
        ({"input": [{"role": "user", "content": [7]}]}, "input[0].content[0]"),
        ({"tools": [WEATHER, None]}, "tools[1]"),
        (
            {"input": [{"role": "system", "content": [{"type": "input_image", "image_url": "u"}]}]},
            "input[0].content[0]",
        ),
    ],
)
def test_invalid_values_name_the_parameter(body: dict[str, Any], param: str) -> None:
    with pytest.raises((InvalidParameter, UnsupportedParameter)) as refused:
        translate({"model": "m", "input": "x", **body})
    assert refused.value.param == param


def test_canonical_parameters_are_reported_as_this_surface_names_them() -> None:
    origins = ("instructions", "previous_response_id", "input[0]", "input[2]")
    assert surface_param("response_format", origins) == "text.format"
    assert surface_param("response_format.json_schema.schema", origins) == "text.format.schema"
    assert surface_param("max_completion_tokens", origins) == "max_output_tokens"
    assert surface_param("tools[1].function.parameters", origins) == "tools[1].parameters"
    assert surface_param("tool_choice.function.name", origins) == "tool_choice.name"
    assert surface_param("messages[3].content[1]", origins) == "input[2].content[1]"
    assert surface_param("messages[1].content", origins) == "previous_response_id"
    assert surface_param("messages[0]", origins) == "instructions"
    assert surface_param("messages", origins) == "input"
    assert surface_param("model", origins) == "model"


def test_an_error_names_the_parameter_in_its_message_too() -> None:
    error: ModelyardError = InvalidParameter(
        "max_completion_tokens is too large: 5000.", param="max_completion_tokens"
    )
    in_surface_terms(error, ())
    assert (error.param, error.message) == (
        "max_output_tokens",
        "max_output_tokens is too large: 5000.",
    )


def test_an_answer_continues_as_one_assistant_message() -> None:
    call = ToolCallDelta(0, 0, "call_1", "get_weather", '{"city":"Paris"}')
    assert assistant_message("", (call,)) == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
            }
        ],
    }
    assert assistant_message("Hi.", ()) == {"role": "assistant", "content": "Hi."}
