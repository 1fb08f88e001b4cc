"""The scorers that read the answer as JSON: json_schema, json_fields, tool_call.

An answer is JSON when its text parses, or else when its first fenced block (```json ... ```)
does. Values compare by type (`true` is not `1`, `"1"` is not `1`), numbers within a tolerance.
Field paths are names joined by dots with list indices in brackets: `total`, `a.b`,
`items[0].name`, `[2]` (a name holds any character but `.`, `[` and `]`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, Any, Literal

import orjson
from jsonschema import Draft202012Validator, SchemaError, validators
from jsonschema.exceptions import best_match
from pydantic import BaseModel, ConfigDict, Field
from referencing import Registry
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012, specification_with

from modelyard.evals.outcome import CaseOutput, Score, ToolCall
from modelyard.evals.scorer_spec import GradedSpec, Options, Problem, ScoringError, verdict

_FENCED = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\r?\n(.*?)```", re.DOTALL)
_NAME = re.compile(r"[^.\[\]]+")
_INDEX = re.compile(r"\[(\d+)\]")

Step = str | int


class NotJson(ValueError):
    pass


def json_answer(text: str) -> Any:
    """The JSON value of an answer: its whole text, or its first fenced block."""
    try:
        return orjson.loads(text.strip())
    except orjson.JSONDecodeError:
        pass
    fenced = _FENCED.search(text)
    if fenced is not None:
        try:
            return orjson.loads(fenced.group(1).strip())
        except orjson.JSONDecodeError:
            pass
    raise NotJson("the answer is not JSON" if text.strip() else "the answer is empty")


def parse_path(path: str) -> tuple[Step, ...]:
    """The steps of a field path (`items[0].name` -> ("items", 0, "name"))."""
    steps: list[Step] = []
    position = 0
    while position < len(path):
        index = _INDEX.match(path, position)
        if index is not None:
            steps.append(int(index.group(1)))
            position = index.end()
            continue
        if path[position] == "[":
            raise ValueError(f"expected an index such as [0] at character {position + 1}")
        if steps:
            if path[position] != ".":
                raise ValueError(f"expected '.' or '[' at character {position + 1}")
            position += 1
        name = _NAME.match(path, position)
        if name is None:
            raise ValueError(f"expected a name at character {position + 1}")
        steps.append(name.group(0))
        position = name.end()
    if not steps:
        raise ValueError("the path is empty")
    return tuple(steps)


_MISSING = object()


def _follow(document: Any, steps: tuple[Step, ...]) -> Any:
    for step in steps:
        if isinstance(step, int):
            if not isinstance(document, list) or step >= len(document):
                return _MISSING
        elif not isinstance(document, dict) or step not in document:
            return _MISSING
        document = document[step]
    return document


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def difference(
    expected: Any, actual: Any, tolerance: float, subset: bool, at: str = ""
) -> str | None:
    """Where `actual` first differs from `expected` (None when it matches). With `subset`,
    objects may hold keys `expected` does not name, at every depth."""
    if _is_number(expected) and _is_number(actual):
        return None if abs(expected - actual) <= tolerance else f"differs at '{at}'"
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key, value in expected.items():
            inner = f"{at}.{key}" if at else str(key)
            if key not in actual:
                return f"missing '{inner}'"
            found = difference(value, actual[key], tolerance, subset, inner)
            if found is not None:
                return found
        if not subset and actual.keys() - expected.keys():
            return f"keys the expectation does not name at '{at or '(top)'}'"
        return None
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            return f"{len(actual)} items instead of {len(expected)} at '{at}'"
        for index, (one, other) in enumerate(zip(expected, actual, strict=True)):
            found = difference(one, other, tolerance, subset, f"{at}[{index}]")
            if found is not None:
                return found
        return None
    same = type(expected) is type(actual) and expected == actual
    return None if same else f"differs at '{at}'"


class JsonSchemaOptions(Options):
    pass


class JsonSchemaMatch(GradedSpec):
    """The answer is JSON valid against `value` (its `$schema` draft, 2020-12 by default)."""

    value: dict[str, Any]
    options: JsonSchemaOptions = JsonSchemaOptions()

    def problem(self) -> Problem | None:
        if not isinstance(self.value.get("$schema", ""), str):
            return "value.$schema", "must be the URI of a JSON schema draft"
        try:
            _validator_class(self.value).check_schema(self.value)
        except SchemaError as error:
            where = "/".join(str(part) for part in error.absolute_path)
            return "value", f"not a valid JSON schema at '{where}': {error.message[:200]}"
        specification = specification_with(self.value.get("$schema", ""), default=DRAFT202012)
        resolver = Registry().resolver_with_root(specification.create_resource(self.value))
        for reference in _references(self.value):
            try:
                resolver.lookup(reference)
            except Unresolvable:
                # Nothing is fetched: a schema refers only within itself.
                return "value", f"the reference {reference!r} resolves nowhere in the schema"
        return None

    def grade(self, output: CaseOutput) -> Score:
        try:
            document = json_answer(output.content)
        except NotJson as error:
            return verdict(False, str(error))
        validator = _validator_class(self.value)(
            self.value, format_checker=Draft202012Validator.FORMAT_CHECKER
        )
        try:
            failure = best_match(validator.iter_errors(document))
        except Unresolvable as error:
            raise ScoringError(f"a reference of the schema resolves nowhere ({error})") from None
        if failure is None:
            return verdict(True)
        # The keyword and the place, not jsonschema's message: that one quotes the answer.
        where = "/".join(str(part) for part in failure.absolute_path) or "(root)"
        return verdict(False, f"fails the schema's '{failure.validator}' at '{where}'")


def _validator_class(schema: dict[str, Any]) -> Any:
    return validators.validator_for(schema, default=Draft202012Validator)


def _references(schema: Any) -> Iterator[str]:
    """Every `$ref` in a schema (keywords' values included: a harmless over-approximation)."""
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _references(value)
    elif isinstance(schema, list):
        for item in schema:
            yield from _references(item)


class JsonFieldsOptions(Options):
    tolerance: Annotated[float, Field(ge=0)] = 1e-9


class JsonFieldsMatch(GradedSpec):
    """Graded: the share of `value`'s paths whose value in the JSON answer equals the expected
    one (numbers within `tolerance`); passed when all do."""

    value: Annotated[dict[str, Any], Field(min_length=1)]
    options: JsonFieldsOptions = JsonFieldsOptions()

    def problem(self) -> Problem | None:
        for path in self.value:
            try:
                parse_path(path)
            except ValueError as error:
                return "value", f"the path {path!r} does not parse: {error}"
        return None

    def grade(self, output: CaseOutput) -> Score:
        try:
            document = json_answer(output.content)
        except NotJson as error:
            return Score(value=0.0, passed=False, detail=str(error))
        wrong: list[str] = []
        for path, expected in self.value.items():
            found = _follow(document, parse_path(path))
            if found is _MISSING:
                wrong.append(f"{path}: missing")
            elif difference(expected, found, self.options.tolerance, subset=False) is not None:
                wrong.append(f"{path}: differs")
        matched = len(self.value) - len(wrong)
        detail = f"{matched} of {len(self.value)} fields match" + (
            "; " + ", ".join(wrong) if wrong else ""
        )
        return Score(value=matched / len(self.value), passed=not wrong, detail=detail)


class ExpectedCall(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    name: Annotated[str, Field(min_length=1)]
    arguments: dict[str, Any] | None = None


class ToolCallOptions(Options):
    # "subset": the call may pass arguments the expectation does not name; "exact": it may not.
    arguments: Literal["subset", "exact"] = "subset"
    # Any of the answer's tool calls may match, not only the first.
    any: bool = False


class ToolCallMatch(GradedSpec):
    """The answer's first tool call (any, with `any`) has `value.name` and, when given,
    `value.arguments` (numbers equal within 1e-9)."""

    value: ExpectedCall
    options: ToolCallOptions = ToolCallOptions()

    def grade(self, output: CaseOutput) -> Score:
        if not output.tool_calls:
            return verdict(False, "no tool call")
        calls = output.tool_calls if self.options.any else output.tool_calls[:1]
        reasons = [self._mismatch(call) for call in calls]
        if None in reasons:
            return verdict(True)
        if len(reasons) == 1:
            return verdict(False, str(reasons[0]))
        return verdict(False, f"none of the {len(reasons)} tool calls matches")

    def _mismatch(self, call: ToolCall) -> str | None:
        if call.name != self.value.name:
            return f"the tool called is not '{self.value.name}'"
        if self.value.arguments is None:
            return None
        try:
            arguments = orjson.loads(call.arguments) if call.arguments.strip() else {}
        except orjson.JSONDecodeError:
            return "the arguments are not JSON"
        if not isinstance(arguments, dict):
            return "the arguments are not a JSON object"
        found = difference(
            self.value.arguments, arguments, 1e-9, subset=self.options.arguments == "subset"
        )
        return None if found is None else f"arguments: {found}"
