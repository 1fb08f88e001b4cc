"""Validate what a model produced against the request's output contract, whatever the provider.

The local engine's grammar makes violations impossible there; remote providers can still break a
schema, and the gateway must never return a 200 that carries invalid JSON or an undeclared tool.
"""

from __future__ import annotations

import functools
from typing import Any

import orjson
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import best_match

from modelyard.errors import InvalidModelOutput
from modelyard.structured.contract import OutputContract


def validate_content(text: str, contract: OutputContract) -> None:
    if contract.json_schema is None:
        return
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise InvalidModelOutput("The model's answer is not valid JSON.") from None
    _validate(value, contract.json_schema, "The model's answer does not match the response schema")


def validate_tool_call(name: str, arguments: str, contract: OutputContract) -> None:
    tool = contract.declared_tool(name)
    if tool is None:
        raise InvalidModelOutput(
            f"The model called '{name}', which is not one of the declared tools."
        )
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        raise InvalidModelOutput(
            f"The model's arguments for '{name}' are not valid JSON."
        ) from None
    _validate(
        value, tool.parameters, f"The model's arguments for '{name}' do not match its parameters"
    )


def _validate(value: Any, schema: dict[str, Any], what: str) -> None:
    error = best_match(
        _validator(orjson.dumps(schema, option=orjson.OPT_SORT_KEYS)).iter_errors(value)
    )
    if error is not None:
        location = "/".join(str(part) for part in error.absolute_path) or "(root)"
        raise InvalidModelOutput(f"{what} at '{location}': {error.message[:200]}")


@functools.lru_cache(maxsize=512)
def _validator(schema_json: bytes) -> Draft202012Validator:
    return Draft202012Validator(orjson.loads(schema_json), format_checker=FormatChecker())
