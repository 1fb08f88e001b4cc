"""Wire models of evaluation runs (/admin/evals) and of feedback (/v1/feedback). Strict: unknown
fields are refused. A result's fields are those of `evals.outcome.CaseResult` (its JSON form:
`dataclasses.asdict`, tags as a list)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

RUN_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
RunId = Annotated[str, StringConstraints(pattern=RUN_ID_PATTERN)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
RequestId = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Label = Annotated[str, StringConstraints(min_length=1, max_length=100)]
NonNegative = Annotated[float, Field(ge=0)]
Count = Annotated[int, Field(ge=0)]
# Results of one POST; a runner posts as it goes, in batches.
MAX_RESULTS_PER_POST = 1000


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RunCreate(_Wire):
    # Absent: the server names the run. An id that exists already resumes that run.
    id: RunId | None = None
    # Absent: the project the caller acts in.
    project: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")] | None = None
    suites: Annotated[list[Name], Field(min_length=1, max_length=100)]
    models: Annotated[list[Name], Field(min_length=1, max_length=100)]
    repeats: Annotated[int, Field(ge=1, le=100)] = 1
    params: dict[str, Any] = Field(default_factory=dict)


class RunPatch(_Wire):
    status: Literal["finished", "interrupted"]


class ResultIn(_Wire):
    run_id: RunId
    model: Name
    case_id: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    repeat: Annotated[int, Field(ge=0, le=10_000)]
    tags: Annotated[list[Label], Field(max_length=50)]
    deployment: Name | None
    score: Annotated[float, Field(ge=0, le=1)]
    passed: bool
    binary: bool
    latency_ms: NonNegative
    ttft_ms: NonNegative | None
    prompt_tokens: Count
    completion_tokens: Count
    cost_micros: Count
    request_id: RequestId | None
    output: Annotated[str, StringConstraints(max_length=1_000_000)] | None
    output_sha256: Sha256
    error: Annotated[str, StringConstraints(max_length=10_000)] | None = None
    detail: Annotated[str, StringConstraints(max_length=10_000)] = ""
    extra: dict[str, Any] = Field(default_factory=dict)


class ResultsPost(_Wire):
    results: Annotated[list[ResultIn], Field(max_length=MAX_RESULTS_PER_POST)]


class FeedbackPost(_Wire):
    request_id: RequestId
    score: Annotated[float, Field(ge=0, le=1)]
    labels: Annotated[list[Label], Field(max_length=20)] = Field(default_factory=list)
