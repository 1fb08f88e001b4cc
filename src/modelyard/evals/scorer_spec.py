"""What every scorer is made of: a pydantic model of an expectation's `value` and `options`
(unknown options refused, no coercion: `"yes"` is not a boolean), `problem()` for the checks a
type cannot express, and, for all but the judge, `grade()`. Also the refusal to score.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from modelyard.evals.outcome import CaseOutput, Score

# (field within the expectation, problem)
Problem = tuple[str, str]


class ScoringError(Exception):
    """An answer that could not be scored, which is not a score of 0 (no judge given, a judge
    reply without a verdict, a schema reference that resolves nowhere). `cost_micros` is what
    trying cost (a judge call)."""

    def __init__(self, message: str, cost_micros: int = 0) -> None:
        super().__init__(message)
        self.cost_micros = cost_micros


class ScorerSpec(BaseModel):
    """An expectation's value and options, typed for one scorer."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    def problem(self) -> Problem | None:
        return None


class GradedSpec(ScorerSpec):
    """A scorer that grades the answer on its own (every one but the judge)."""

    def grade(self, output: CaseOutput) -> Score:
        raise NotImplementedError


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def verdict(passed: bool, detail: str = "") -> Score:
    """A pass/fail score."""
    return Score(value=1.0 if passed else 0.0, passed=passed, detail=detail)
