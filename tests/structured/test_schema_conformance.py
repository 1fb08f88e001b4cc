"""Structured output against the live gateway and SmolLM2, through the official `openai` SDK.

Every schema in the corpus must come back as JSON that validates against it (Draft 2020-12 with
format checking), with `finish_reason: "stop"`: the grammar makes the answer valid, the schema's
bounds let the tiny model finish it. Every schema the gateway cannot enforce must be refused
before generation with `unsupported_schema`, naming the keyword and where it sits.

jsonschema checks `date-time`, `time`, `duration`, `uri` and `hostname` only when optional
packages are installed; this module checks them itself (RFC 3339, RFC 3986, RFC 1123), so no
format goes unchecked. A corpus entry failing for a known gateway bug goes in `KNOWN_BUGS` (a
strict xfail naming the bug), never out of the corpus.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Callable, Collection
from decimal import Decimal
from typing import Any

import openai
import pytest
from jsonschema import Draft202012Validator, FormatChecker

from tests.structured.schema_corpus import (
    SUPPORTED,
    UNSUPPORTED,
    CorpusSchema,
    Schema,
    UnsupportedCase,
    integer,
    obj,
    text,
)

pytestmark = pytest.mark.model

MODEL = "smollm2"
# Generous: an answer cut at max_tokens is not validated, so it must never be the reason to stop.
MAX_TOKENS = 600
SEED = 7
SCHEMA_PARAM = "response_format.json_schema.schema"

# Sampled at temperature 1.0 with a seed; the rest decode greedily.
SAMPLED = frozenset(
    {
        "flat_mixed_scalars",
        "integer_multiple_of",
        "string_length_bounds",
        "mixed_enum",
        "const_fields",
        "top_level_object_array",
        "exact_length_array",
        "tuple_prefix_items",
        "nested_object",
        "order_with_line_items",
        "nullable_any_of",
        "one_of_discriminated",
        "shared_defs",
        "pattern_properties_map",
        "string_patterns",
        "format_date_and_date_time",
        "format_uuid",
        "pydantic_enum_literal_nullable",
        "pydantic_formats_and_tuple",
        "langchain_typed_dict_strict",
    }
)
STREAMED = (
    "flat_mixed_scalars",
    "one_of_discriminated",
    "recursive_root_ref",
    "pydantic_nested_optional",
    "format_network_addresses",
)

# Corpus entries that fail for a known gateway bug, by name: the reason names the bug.
KNOWN_BUGS: dict[str, str] = {}


# --- format checking ----------------------------------------------------------------------

_TIME = r"([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)(\.\d+)?([Zz]|[+-]([01]\d|2[0-3]):[0-5]\d)"
_DUR_TIME = r"T(\d+H(\d+M(\d+S)?)?|\d+M(\d+S)?|\d+S)"
_DUR_DATE = rf"(\d+D|\d+M(\d+D)?|\d+Y(\d+M(\d+D)?)?)({_DUR_TIME})?"
_PATTERNS = {
    "date-time": re.compile(rf"\d{{4}}-\d\d-\d\d[Tt]{_TIME}"),
    "time": re.compile(_TIME),
    "duration": re.compile(rf"P({_DUR_DATE}|{_DUR_TIME}|\d+W)"),
    # RFC 3986 absolute URI: a scheme, then only characters a URI may hold.
    "uri": re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*"),
    "hostname": re.compile(
        r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
        r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
    ),
}


def _format_checker() -> FormatChecker:
    """Draft 2020-12's own checkers, plus the ones jsonschema leaves to optional packages."""
    checker = FormatChecker(formats=())
    checker.checkers = dict(Draft202012Validator.FORMAT_CHECKER.checkers)
    for name, pattern in _PATTERNS.items():
        checker.checks(name)(_matches(pattern))
    checker.checks("date-time", raises=ValueError)(_is_date_time)
    return checker


def _matches(pattern: re.Pattern[str]) -> Callable[[object], bool]:
    # A format constrains strings only; any other type conforms.
    return lambda value: not isinstance(value, str) or pattern.fullmatch(value) is not None


def _is_date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    # The shape by RFC 3339, and a day that exists (no 2023-02-30).
    datetime.date.fromisoformat(value[:10])
    return _PATTERNS["date-time"].fullmatch(value) is not None


FORMAT_CHECKER = _format_checker()


def assert_conforms(content: str | None, schema: Schema) -> None:
    assert content is not None, "a JSON answer has content"
    value = json.loads(content)
    errors = sorted(
        Draft202012Validator(schema, format_checker=FORMAT_CHECKER).iter_errors(value), key=str
    )
    assert not errors, f"{content!r} breaks the schema: {[error.message for error in errors]}"


# --- requests -----------------------------------------------------------------------------


def response_format(name: str, schema: Schema) -> Any:
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


def sampling(case: CorpusSchema) -> dict[str, Any]:
    if case.name in SAMPLED:
        return {"temperature": 1.0, "seed": SEED}
    return {"temperature": 0}


def corpus_params(names: Collection[str] | None = None) -> list[Any]:
    return [
        pytest.param(
            case,
            id=case.name,
            marks=[pytest.mark.xfail(reason=KNOWN_BUGS[case.name], strict=True)]
            if case.name in KNOWN_BUGS
            else [],
        )
        for case in SUPPORTED
        if names is None or case.name in names
    ]


def user(prompt: str) -> list[Any]:
    return [{"role": "user", "content": prompt}]


# --- supported schemas --------------------------------------------------------------------


def test_corpus_covers_fifty_distinct_schemas() -> None:
    assert len({case.name for case in SUPPORTED}) == len(SUPPORTED) >= 50
    assert len({case.name for case in UNSUPPORTED}) == len(UNSUPPORTED) >= 12
    assert SAMPLED | set(STREAMED) <= {case.name for case in SUPPORTED}
    for case in SUPPORTED:
        Draft202012Validator.check_schema(case.schema)


@pytest.mark.parametrize("case", corpus_params())
def test_answer_is_json_that_matches_the_schema(client: openai.OpenAI, case: CorpusSchema) -> None:
    completion = client.chat.completions.create(
        model=MODEL,
        messages=user(case.prompt),
        response_format=response_format(case.name, case.schema),
        max_tokens=MAX_TOKENS,
        **sampling(case),
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "stop", f"cut at max_tokens: {choice.message.content!r}"
    assert_conforms(choice.message.content, case.schema)


@pytest.mark.parametrize("case", corpus_params(STREAMED))
def test_streamed_answer_joins_into_json_that_matches_the_schema(
    client: openai.OpenAI, case: CorpusSchema
) -> None:
    stream = client.chat.completions.create(
        model=MODEL,
        messages=user(case.prompt),
        response_format=response_format(case.name, case.schema),
        max_tokens=MAX_TOKENS,
        stream=True,
        **sampling(case),
    )
    parts: list[str] = []
    finish_reasons: list[str] = []
    for chunk in stream:
        for choice in chunk.choices:
            parts.append(choice.delta.content or "")
            if choice.finish_reason is not None:
                finish_reasons.append(choice.finish_reason)
    assert finish_reasons == ["stop"], f"cut at max_tokens: {''.join(parts)!r}"
    assert len([part for part in parts if part]) > 1, "the answer arrives in several deltas"
    assert_conforms("".join(parts), case.schema)


def test_json_object_mode_answers_with_an_object(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model=MODEL,
        messages=user('Describe a cat as JSON with keys "name" and "age".'),
        response_format={"type": "json_object"},
        max_tokens=MAX_TOKENS,
        temperature=0,
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "stop", f"cut at max_tokens: {choice.message.content!r}"
    assert isinstance(json.loads(choice.message.content or ""), dict)


def test_properties_come_out_in_schema_order(client: openai.OpenAI) -> None:
    # Order matters to clients: a reasoning field placed before the answer must be written first.
    schema = obj({"reasoning": text(60), "answer": integer(0, 99)})
    completion = client.chat.completions.create(
        model=MODEL,
        messages=user("What is 6 times 7? Think, then answer."),
        response_format=response_format("ordered", schema),
        max_tokens=MAX_TOKENS,
        temperature=0,
    )
    assert list(json.loads(completion.choices[0].message.content or "")) == [
        "reasoning",
        "answer",
    ]


def test_decimal_multiple_of_accepts_cents(client: openai.OpenAI) -> None:
    # As floats 1.11 is not a multiple of 0.01; the gateway must judge in decimal, as we do here.
    schema = obj({"price": {"type": "number", "minimum": 0, "maximum": 10, "multipleOf": 0.01}})
    completion = client.chat.completions.create(
        model=MODEL,
        messages=user("A coffee costs one euro and eleven cents. What is the price?"),
        response_format=response_format("price", schema),
        max_tokens=MAX_TOKENS,
        temperature=0,
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "stop", f"cut at max_tokens: {choice.message.content!r}"
    price = json.loads(choice.message.content or "", parse_float=Decimal)["price"]
    assert 0 <= price <= 10
    assert Decimal(price) % Decimal("0.01") == 0


# --- unsupported schemas ------------------------------------------------------------------


def assert_refused(error: openai.BadRequestError, param: str, case: UnsupportedCase) -> None:
    assert error.status_code == 400
    assert error.code == "unsupported_schema"
    assert error.param == param
    assert f"'{case.names}'" in error.message, error.message
    assert f"'{case.location}'" in error.message, error.message


@pytest.mark.parametrize("case", UNSUPPORTED, ids=lambda case: case.name)
def test_unenforceable_schema_is_refused_naming_keyword_and_location(
    client: openai.OpenAI, case: UnsupportedCase
) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model=MODEL,
            messages=user("Answer."),
            response_format=response_format(case.name, case.schema),
            max_tokens=8,
        )
    assert_refused(refused.value, SCHEMA_PARAM, case)


@pytest.mark.parametrize("case", UNSUPPORTED, ids=lambda case: case.name)
def test_tool_with_unenforceable_parameters_is_refused_naming_keyword_and_location(
    client: openai.OpenAI, case: UnsupportedCase
) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model=MODEL,
            messages=user("Answer."),
            tools=[tool(case.name, case.schema)],
            max_tokens=8,
        )
    assert_refused(refused.value, "tools[0].function.parameters", case)


def test_refusal_names_the_tool_by_its_index(client: openai.OpenAI) -> None:
    case = UNSUPPORTED[0]
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model=MODEL,
            messages=user("Answer."),
            tools=[tool("fine", obj({"a": text()})), tool("broken", case.schema)],
            tool_choice="required",
            max_tokens=8,
        )
    assert_refused(refused.value, "tools[1].function.parameters", case)


LOOKAHEAD = obj({"word": {"type": "string", "pattern": "^(?=a)[a-z]{1,8}$"}})
OVERLAPPING_ONE_OF = obj({"n": {"oneOf": [{"type": "integer"}, {"type": "number"}]}})


@pytest.mark.parametrize(
    ("schema", "named"),
    [
        pytest.param(LOOKAHEAD, "look-around", id="look_around_pattern"),
        pytest.param(OVERLAPPING_ONE_OF, "oneOf", id="overlapping_one_of"),
    ],
)
def test_schema_the_grammar_cannot_compile_is_refused_with_its_param(
    client: openai.OpenAI, schema: Schema, named: str
) -> None:
    # These pass the keyword check but not the grammar compiler: still a 400, never a 500.
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model=MODEL,
            messages=user("Answer."),
            response_format=response_format("uncompilable", schema),
            max_tokens=8,
        )
    assert refused.value.code == "unsupported_schema"
    assert refused.value.param == SCHEMA_PARAM
    assert named in refused.value.message


def test_tool_the_grammar_cannot_compile_is_refused_naming_its_index(
    client: openai.OpenAI,
) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model=MODEL,
            messages=user("Answer."),
            tools=[tool("fine", obj({"a": text()})), tool("uncompilable", LOOKAHEAD)],
            max_tokens=8,
        )
    assert refused.value.code == "unsupported_schema"
    assert refused.value.param == "tools[1].function.parameters"


def test_location_escapes_slash_and_tilde_in_names(client: openai.OpenAI) -> None:
    # JSON Pointer (RFC 6901): '/' becomes '~1' and '~' becomes '~0' inside a segment.
    case = UnsupportedCase(
        "escaped_names",
        obj({"a/b": obj({"~c": {"type": "array", "uniqueItems": True}})}),
        "uniqueItems",
        "#/properties/a~1b/properties/~0c",
    )
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model=MODEL,
            messages=user("Answer."),
            response_format=response_format(case.name, case.schema),
            max_tokens=8,
        )
    assert_refused(refused.value, SCHEMA_PARAM, case)


def tool(name: str, parameters: Schema) -> Any:
    return {
        "type": "function",
        "function": {"name": name, "description": f"The {name} tool.", "parameters": parameters},
    }
