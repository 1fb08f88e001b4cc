"""Hand-built evaluation results for tests of statistics, recommendations and reports."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from modelyard.evals.outcome import CaseResult

_DEFAULT = CaseResult(
    run_id="run-1",
    model="model",
    case_id="case",
    repeat=0,
    tags=("qa",),
    deployment=None,
    score=1.0,
    passed=True,
    binary=True,
    latency_ms=100.0,
    ttft_ms=None,
    prompt_tokens=10,
    completion_tokens=5,
    cost_micros=0,
    request_id=None,
    output="answer",
    output_sha256="0" * 64,
)


def case_result(model: str, case_id: str, score: float = 1.0, **fields: Any) -> CaseResult:
    """A result of `model` on `case_id`: deployment `<model>-dep`, passed when the score is 1
    (unless given), request id `req-<model>-<case>-<repeat>`; any other field as given."""
    fields.setdefault("deployment", f"{model}-dep")
    fields.setdefault("passed", score >= 1.0)
    repeat = fields.get("repeat", 0)
    fields.setdefault("request_id", f"req-{model}-{case_id}-{repeat}")
    return replace(_DEFAULT, model=model, case_id=case_id, score=score, **fields)
