"""Output contracts: derived once from the request, refusing what cannot be enforced."""

from __future__ import annotations

from typing import Any

import pytest

from modelyard.catalog.cards import Capability
from modelyard.errors import InvalidModelOutput, InvalidParameter, UnsupportedSchema
from modelyard.protocol.chat import ChatCompletionRequest
from modelyard.structured.contract import contract_for
from modelyard.structured.schema_support import check_schema
from modelyard.structured.validation import validate_content, validate_tool_call

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
TIME = {"type": "function", "function": {"name": "get_time"}}


def request(**fields: Any) -> ChatCompletionRequest:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields}
    return ChatCompletionRequest.model_validate(body)


def test_plain_requests_are_unconstrained() -> None:
    contract = contract_for(request())
    assert not contract.constrained
    assert contract.required_capabilities() == frozenset()


def test_tools_default_to_auto_with_parallel_calls() -> None:
    contract = contract_for(request(tools=[WEATHER, TIME]))
    assert contract.tool_mode == "auto"
    assert contract.parallel_tool_calls
    assert [t.name for t in contract.callable_tools] == ["get_weather", "get_time"]
    assert contract.required_capabilities() == {Capability.TOOLS}


@pytest.mark.parametrize("choice", ["required", "any"])
def test_required_and_mistral_any_force_a_call(choice: str) -> None:
    assert contract_for(request(tools=[WEATHER], tool_choice=choice)).tool_mode == "required"


def test_named_choice_narrows_callable_tools_but_keeps_declared() -> None:
    choice = {"type": "function", "function": {"name": "get_time"}}
    contract = contract_for(request(tools=[WEATHER, TIME], tool_choice=choice))
    assert contract.tool_mode == "required"
    assert [t.name for t in contract.callable_tools] == ["get_time"]
    assert contract.declared_tool("get_weather") is not None


def test_none_disables_calls_and_parallel_false_is_kept() -> None:
    assert contract_for(request(tools=[WEATHER], tool_choice="none")).tool_mode == "none"
    contract = contract_for(request(tools=[WEATHER], parallel_tool_calls=False))
    assert not contract.parallel_tool_calls


def test_named_tool_must_be_declared() -> None:
    choice = {"type": "function", "function": {"name": "launch"}}
    with pytest.raises(InvalidParameter) as caught:
        contract_for(request(tools=[WEATHER], tool_choice=choice))
    assert caught.value.param == "tool_choice.function.name"


def test_duplicate_tool_names_are_refused() -> None:
    with pytest.raises(InvalidParameter) as caught:
        contract_for(request(tools=[WEATHER, WEATHER]))
    assert caught.value.param == "tools[1].function.name"


def test_response_formats_map_to_schemas_and_capabilities() -> None:
    json_object = contract_for(request(response_format={"type": "json_object"}))
    assert json_object.json_schema == {"type": "object"}
    assert json_object.required_capabilities() == {Capability.JSON_OUTPUT}
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    spec = {"type": "json_schema", "json_schema": {"name": "A", "schema": schema, "strict": True}}
    contract = contract_for(request(response_format=spec))
    assert contract.json_schema == schema
    assert contract.required_capabilities() == {Capability.JSON_SCHEMA}


@pytest.mark.parametrize(
    ("schema", "keyword", "location"),
    [
        ({"type": "array", "uniqueItems": True}, "uniqueItems", "'#'"),
        ({"properties": {"a": {"not": {"type": "string"}}}}, "not", "'#/properties/a'"),
        ({"$defs": {"x": {"items": {"contains": {}}}}}, "contains", "'#/$defs/x/items'"),
        ({"anyOf": [{"type": "string", "format": "weird"}]}, "weird", "'#/anyOf/0/format'"),
        ({"$ref": "https://example.com/s.json"}, "https://example.com/s.json", "'#/$ref'"),
    ],
)
def test_unsupported_keywords_are_named_with_their_location(
    schema: dict[str, Any], keyword: str, location: str
) -> None:
    with pytest.raises(UnsupportedSchema) as caught:
        check_schema(schema, "response_format.json_schema.schema")
    assert keyword in caught.value.message
    assert location in caught.value.message
    assert caught.value.param == "response_format.json_schema.schema"


def test_annotations_and_recursion_are_accepted() -> None:
    check_schema(
        {
            "title": "Tree",
            "$defs": {"node": {"type": "object", "properties": {"kids": {"items": {"$ref": "#"}}}}},
            "$ref": "#/$defs/node",
            "description": "a tree",
        },
        "p",
    )


def test_validation_rejects_invalid_json_undeclared_tools_and_bad_arguments() -> None:
    contract = contract_for(request(tools=[WEATHER], response_format={"type": "json_object"}))
    validate_content('{"ok": true}', contract)
    with pytest.raises(InvalidModelOutput):
        validate_content("not json", contract)
    with pytest.raises(InvalidModelOutput):
        validate_content("[1, 2]", contract)
    validate_tool_call("get_weather", '{"city": "Paris"}', contract)
    with pytest.raises(InvalidModelOutput, match="not one of the declared tools"):
        validate_tool_call("rm_rf", "{}", contract)
    with pytest.raises(InvalidModelOutput, match="do not match"):
        validate_tool_call("get_weather", '{"town": "Paris"}', contract)


def test_locations_escape_slashes_and_tildes_in_names() -> None:
    schema = {"properties": {"a/b": {"properties": {"c~d": {"not": {}}}}}}
    with pytest.raises(UnsupportedSchema) as caught:
        check_schema(schema, "p")
    assert "'#/properties/a~1b/properties/c~0d'" in caught.value.message


def test_decimal_multiples_and_rfc3339_times_validate() -> None:
    price = {"type": "object", "properties": {"p": {"type": "number", "multipleOf": 0.01}}}
    spec = {"type": "json_schema", "json_schema": {"name": "P", "schema": price}}
    contract = contract_for(request(response_format=spec))
    validate_content('{"p": 1.11}', contract)
    with pytest.raises(InvalidModelOutput):
        validate_content('{"p": 1.111}', contract)
    time_schema = {"type": "string", "format": "time"}
    timed = contract_for(
        request(
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "T", "schema": time_schema},
            }
        )
    )
    validate_content('"10:20:30+02:00"', timed)
