"""What one case produced on one model, and what it scored: the values the runner, the scorers,
the store, the statistics and the reports pass between them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ToolCall:
    name: str
    # The arguments as the model wrote them (a JSON text, possibly invalid).
    arguments: str


@dataclass(frozen=True)
class CaseOutput:
    """The answer to a case: its text, its tool calls, and why it ended."""

    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: str | None = None


@dataclass(frozen=True)
class Score:
    # 0..1; a pass/fail scorer gives 0 or 1.
    value: float
    passed: bool
    detail: str = ""
    # What scoring itself cost (a judge's call), in micro-dollars.
    cost_micros: int = 0


@dataclass(frozen=True)
class CaseResult:
    """One case on one model, one repeat. `model` is the name the run asked for (a model or a
    route); `deployment` the one that answered (x-modelyard-deployment)."""

    run_id: str
    model: str
    case_id: str
    repeat: int
    tags: tuple[str, ...]
    deployment: str | None
    score: float
    passed: bool
    # Whether the scorer gives only pass/fail (Wilson intervals) or graded scores (bootstrap).
    binary: bool
    latency_ms: float
    ttft_ms: float | None
    prompt_tokens: int
    completion_tokens: int
    cost_micros: int
    request_id: str | None
    # The answer's text, or None when the project keeps no content (then `output_sha256`).
    output: str | None
    output_sha256: str
    error: str | None = None
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
