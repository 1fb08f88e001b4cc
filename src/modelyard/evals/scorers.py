"""The scorers, by name: checking an expectation before a run, and scoring one answer.

What a scorer is made of is in `scorer_spec.py`; the scorers live in `text_scorers.py` (exact,
regex, contains_all, contains_any, numeric, label), `json_scorers.py` (json_schema,
json_fields, tool_call) and `judge.py` (judge). All are pass/fail but json_fields (the share of
fields that match) and judge (the judge's score).

Scorers call no model themselves: the judge scorer is handed a `JudgeCall` by the runner. An
answer that cannot be scored (no judge given, a judge reply without a readable verdict, a schema
reference that resolves nowhere) raises `ScoringError`, which is not a score of 0: the runner
records it as the case's error. Exceptions raised by the `JudgeCall` itself pass through
unchanged. A score's `detail` never quotes the answer, which the project may keep no copy of.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from modelyard.evals.expectation import Expectation
from modelyard.evals.json_scorers import JsonFieldsMatch, JsonSchemaMatch, ToolCallMatch
from modelyard.evals.judge import JudgeRubric, UnreadableVerdict, judging_messages, read_verdict
from modelyard.evals.outcome import CaseOutput, Score
from modelyard.evals.scorer_spec import GradedSpec, Problem, ScorerSpec, ScoringError
from modelyard.evals.text_scorers import (
    ContainsAll,
    ContainsAny,
    ExactMatch,
    LabelMatch,
    NumericMatch,
    RegexMatch,
)

if TYPE_CHECKING:
    from modelyard.evals.suite import Case

# (judge model or route, chat messages) -> (reply text, its cost in micro-dollars)
JudgeCall = Callable[[str, list[dict[str, Any]]], Awaitable[tuple[str, int]]]

SCORERS: dict[str, type[ScorerSpec]] = {
    "exact": ExactMatch,
    "regex": RegexMatch,
    "contains_all": ContainsAll,
    "contains_any": ContainsAny,
    "numeric": NumericMatch,
    "json_schema": JsonSchemaMatch,
    "json_fields": JsonFieldsMatch,
    "tool_call": ToolCallMatch,
    "label": LabelMatch,
    "judge": JudgeRubric,
}
BINARY_SCORERS: frozenset[str] = frozenset(SCORERS) - {"json_fields", "judge"}

__all__ = ["BINARY_SCORERS", "SCORERS", "JudgeCall", "ScoringError", "check_expectation", "score"]


def check_expectation(expectation: Expectation) -> Problem | None:
    """(field within `expect`, problem) when the expectation cannot be scored, else None."""
    spec_class = SCORERS[expectation.scorer]
    try:
        spec = spec_class.model_validate(
            {"value": expectation.value, "options": expectation.options}
        )
    except ValidationError as error:
        return _first_problem(error, expectation.scorer, spec_class)
    return spec.problem()


async def score(case: Case, output: CaseOutput, judge: JudgeCall | None = None) -> Score:
    """What `output` scores on `case`'s expectation (see the module docstring for errors)."""
    problem = check_expectation(case.expect)
    if problem is not None:
        raise ScoringError(f"expect.{problem[0]}: {problem[1]}")
    spec = SCORERS[case.expect.scorer].model_validate(
        {"value": case.expect.value, "options": case.expect.options}
    )
    if isinstance(spec, GradedSpec):
        return spec.grade(output)
    assert isinstance(spec, JudgeRubric)
    return await _ask_judge(spec, case, output, judge)


async def _ask_judge(
    spec: JudgeRubric, case: Case, output: CaseOutput, judge: JudgeCall | None
) -> Score:
    if judge is None:
        raise ScoringError(f"case {case.id} is scored by a judge, and no judge was given")
    deployment = spec.options.deployment
    reply, cost_micros = await judge(
        deployment, judging_messages(case.messages, output, spec.value)
    )
    try:
        verdict = read_verdict(reply)
    except UnreadableVerdict as error:
        raise ScoringError(
            f"the judge {deployment} gave no verdict: {error}", cost_micros
        ) from None
    passed = verdict.score >= spec.options.pass_at
    detail = f"judged {verdict.score:.2f} by {deployment} (passes at {spec.options.pass_at:g})"
    return Score(value=verdict.score, passed=passed, detail=detail, cost_micros=cost_micros)


def _first_problem(error: ValidationError, scorer: str, spec_class: type[ScorerSpec]) -> Problem:
    first = error.errors()[0]
    field = ".".join(str(part) for part in first["loc"])
    if first["type"] == "extra_forbidden" and first["loc"][0] == "options":
        options_class = spec_class.model_fields["options"].annotation
        known = _option_names(options_class)
        takes = ", ".join(known) if known else "no options"
        return field, f"the {scorer} scorer has no option '{first['loc'][-1]}' (it takes {takes})"
    if first["type"] == "missing":
        return field, f"the {scorer} scorer requires it"
    return field, first["msg"]


def _option_names(annotation: Any) -> list[str]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return sorted(annotation.model_fields)
    return []
