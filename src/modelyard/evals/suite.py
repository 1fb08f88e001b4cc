"""Task suites: the cases a model is asked, each with the expectation that scores its answer.

A suite is a YAML file (a list under `cases:`) or JSONL (one case per line). It is validated
whole before anything runs; a malformed suite raises `SuiteError` naming the file, the case and
the field. A case's request part (`messages`, `tools`, `tool_choice`, `response_format` and the
sampling parameters) is sent as a chat completion as it is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import orjson
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modelyard.evals.expectation import Expectation
from modelyard.evals.scorers import check_expectation

CASE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"


class Case(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[str, Field(pattern=CASE_ID_PATTERN)]
    tags: Annotated[list[str], Field(min_length=1)]
    language: str | None = None
    messages: Annotated[list[dict[str, Any]], Field(min_length=1)]
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    max_tokens: Annotated[int, Field(ge=1, le=32768)] | None = None
    seed: int | None = None
    expect: Expectation

    def request_body(self, model: str) -> dict[str, Any]:
        """The chat completion this case sends to `model`."""
        body: dict[str, Any] = {"model": model, "messages": self.messages}
        for name in ("tools", "tool_choice", "response_format", "temperature", "top_p"):
            value = getattr(self, name)
            if value is not None:
                body[name] = value
        if self.max_tokens is not None:
            body["max_tokens"] = self.max_tokens
        if self.seed is not None:
            body["seed"] = self.seed
        return body


@dataclass(frozen=True)
class Suite:
    name: str
    path: Path
    cases: tuple[Case, ...]
    license: str | None = None

    def tags(self) -> list[str]:
        return sorted({tag for case in self.cases for tag in case.tags})


class SuiteError(ValueError):
    """A suite that cannot run; the message names the file, the case and the field."""

    def __init__(self, path: Path, case: str | None, field: str | None, problem: str) -> None:
        where = str(path)
        if case is not None:
            where += f", case {case}"
        if field is not None:
            where += f", field '{field}'"
        super().__init__(f"{where}: {problem}")
        self.path, self.case, self.field, self.problem = path, case, field, problem


def load_suite(path: Path) -> Suite:
    """The suite in this file, validated whole (scorer values and options included)."""
    raw_cases, license_text = _read(path)
    cases: list[Case] = []
    seen: set[str] = set()
    for place, raw in raw_cases:
        label = _case_label(raw, place)
        if not isinstance(raw, dict):
            raise SuiteError(path, label, None, "a case must be a mapping")
        try:
            case = Case.model_validate(raw)
        except ValidationError as error:
            first = error.errors()[0]
            field = ".".join(str(part) for part in first["loc"]) or None
            raise SuiteError(path, label, field, first["msg"]) from None
        if case.id in seen:
            raise SuiteError(path, label, "id", f"the id '{case.id}' is used twice")
        seen.add(case.id)
        # Scorer-specific checks (a regex that compiles, a schema that is a schema, ...).
        problem = check_expectation(case.expect)
        if problem is not None:
            field, message = problem
            raise SuiteError(path, label, f"expect.{field}", message)
        cases.append(case)
    if not cases:
        raise SuiteError(path, None, None, "the suite has no cases")
    return Suite(path.stem, path, tuple(cases), license_text)


def _read(path: Path) -> tuple[list[tuple[str, Any]], str | None]:
    """The raw cases, each with its place (a JSONL line, a YAML list position), and the licence."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise SuiteError(path, None, None, f"cannot be read ({error.strerror})") from None
    if path.suffix == ".jsonl":
        cases = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                cases.append((f"on line {number}", orjson.loads(line)))
            except orjson.JSONDecodeError as error:
                problem = f"invalid JSON ({error})"
                raise SuiteError(path, f"on line {number}", None, problem) from None
        return cases, None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise SuiteError(path, None, None, f"invalid YAML ({error})") from None
    if not isinstance(document, dict) or not isinstance(document.get("cases"), list):
        raise SuiteError(path, None, "cases", "a YAML suite is a mapping with a list under 'cases'")
    license_text = document.get("license")
    placed = [(f"#{index + 1}", raw) for index, raw in enumerate(document["cases"])]
    return placed, str(license_text) if license_text is not None else None


def _case_label(raw: Any, place: str) -> str:
    if isinstance(raw, dict) and isinstance(raw.get("id"), str):
        return f"'{raw['id']}'"
    return place
