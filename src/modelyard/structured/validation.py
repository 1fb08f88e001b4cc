"""Validate what a model produced against the request's output contract, whatever the provider.

The local engine's grammar makes violations impossible there; remote providers can still break a
schema, and the gateway must never return a 200 that carries invalid JSON or an undeclared tool.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson
from jsonschema import Draft202012Validator, ValidationError, validators
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


def _decimal_multiple_of(
    validator: Any, multiple: Any, instance: Any, schema: dict[str, Any]
) -> Iterator[ValidationError]:
    """multipleOf in decimal arithmetic: as floats, 1.11 is not a multiple of 0.01."""
    if not validator.is_type(instance, "number"):
        return
    try:
        remainder = Decimal(str(instance)) % Decimal(str(multiple))
    except InvalidOperation:
        remainder = Decimal(1)
    if remainder != 0:
        yield ValidationError(f"{instance!r} is not a multiple of {multiple}")


_Validator = validators.extend(  # type: ignore[no-untyped-call]
    Draft202012Validator, {"multipleOf": _decimal_multiple_of}
)


@functools.lru_cache(maxsize=512)
def _validator(schema_json: bytes) -> Any:
    # The 2020-12 format checker: the generic one checks "time" the draft-3 way (no offset).
    return _Validator(orjson.loads(schema_json), format_checker=Draft202012Validator.FORMAT_CHECKER)
