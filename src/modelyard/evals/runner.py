"""Running an evaluation: every case of the suites, on every model (a deployment, a model or a
route), `repeats` times, through the gateway's own serving path with the caller's key.

Invariants:
- A result is stored once: results already stored for the run are skipped (`--run-id` resumes),
  and the store ignores a (model, case, repeat) it already has.
- Finished results are sent to the store in batches as the run goes, so an interrupted run (even
  killed) loses at most the last batch and the cases in flight.
- Cost comes from the usage ledger: once the cases are done, the run is settled (the store copies
  each result's cost and tokens from its ledger record) until nothing is pending or a timeout.
- At most `concurrency` requests per model are in flight at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import orjson

from modelyard.evals.gateway_client import (
    GatewayClient,
    GatewayError,
    GatewayUnreachable,
    StreamedAnswer,
)
from modelyard.evals.outcome import CaseOutput, CaseResult, Score
from modelyard.evals.progress import Progress
from modelyard.evals.report import result_to_json
from modelyard.evals.scorers import BINARY_SCORERS, ScoringError, score
from modelyard.evals.suite import Case, Suite
from modelyard.evals.wire import result_from_json, result_key

BATCH_SIZE = 20
# A batch is also sent when its first result has waited this long (slow models).
BATCH_MAX_WAIT_S = 10.0
SETTLE_POLL_S = 0.5
# Settling stops when the pending count has not moved for this long: a request refused before
# the gateway admitted it has no usage record, and never will.
SETTLE_QUIET_S = 3.0
# Stored error texts are cut to this length.
MAX_ERROR_CHARS = 2000


@dataclass(frozen=True)
class RunRequest:
    suites: tuple[Suite, ...]
    # The suites as the user named them (bundled names or paths), kept with the run.
    suite_names: tuple[str, ...]
    models: tuple[str, ...]
    repeats: int = 1
    concurrency: int = 4
    run_id: str | None = None
    project: str | None = None
    settle_timeout_s: float = 30.0
    params: dict[str, Any] = field(default_factory=dict)

    def cases(self) -> list[Case]:
        return [case for suite in self.suites for case in suite.cases]


@dataclass(frozen=True)
class RunOutcome:
    run: dict[str, Any]
    ran: int
    skipped: int
    errors: int
    # Results whose ledger record was not written before the settle timeout.
    pending: int


class RunRefused(Exception):
    """The run cannot start (a case id in two suites, a resumed run with other models...)."""


async def run_evaluation(
    client: GatewayClient, request: RunRequest, progress_stream: TextIO
) -> RunOutcome:
    """Run (or resume) the evaluation and return what happened. On cancellation (Ctrl-C) what
    finished is stored and the run is marked interrupted before the cancellation goes on."""
    cases = request.cases()
    _refuse_duplicate_ids(request.suites)
    run = await client.admin("POST", "/admin/evals", _run_body(request))
    _refuse_other_run(run, request)
    run_id = str(run["id"])
    done = {result_key(r) for r in await stored_results(client, run_id)}
    work = [
        (model, case, repeat)
        for model in request.models
        for case in cases
        for repeat in range(request.repeats)
        if (model, case.id, repeat) not in done
    ]
    progress_stream.write(
        f"run {run_id}: {len(work)} results to get, {len(done)} already stored "
        f"(resume with --run-id {run_id})\n"
    )
    progress = Progress(
        dict.fromkeys(request.models, len(cases) * request.repeats), progress_stream
    )
    progress.start({m: sum(1 for key in done if key[0] == m) for m in request.models})
    sink = ResultSink(client, run_id)
    limits = {model: asyncio.Semaphore(request.concurrency) for model in request.models}
    errors = 0

    async def run_one(model: str, case: Case, repeat: int) -> None:
        nonlocal errors
        async with limits[model]:
            result = await run_case(client, run_id, model, case, repeat)
        errors += result.error is not None
        progress.advance(model, error=result.error is not None)
        await sink.add(result)

    try:
        await asyncio.gather(*(run_one(model, case, repeat) for model, case, repeat in work))
        await sink.flush()
    except (asyncio.CancelledError, KeyboardInterrupt):
        try:
            await sink.flush()
        finally:
            with contextlib.suppress(GatewayError, GatewayUnreachable):
                await client.admin("PATCH", f"/admin/evals/{run_id}", {"status": "interrupted"})
        raise
    pending = await settle(client, run_id, request.settle_timeout_s)
    finished = await client.admin("PATCH", f"/admin/evals/{run_id}", {"status": "finished"})
    return RunOutcome(finished, ran=len(work), skipped=len(done), errors=errors, pending=pending)


async def run_case(
    client: GatewayClient, run_id: str, model: str, case: Case, repeat: int
) -> CaseResult:
    """One case on one model: its answer, streamed, scored. A refusal or a broken stream is a
    result with `error` set and score 0, never an exception."""
    try:
        answer = await client.stream_chat(case.request_body(model))
    except GatewayError as refused:
        failed = StreamedAnswer(request_id=refused.request_id, error=str(refused))
        return _result(run_id, model, case, repeat, failed, Score(0.0, False), {})
    except GatewayUnreachable as unreachable:
        failed = StreamedAnswer(error=f"the gateway did not answer: {unreachable}")
        return _result(run_id, model, case, repeat, failed, Score(0.0, False), {})
    extra: dict[str, Any] = {}
    if answer.route:
        extra["route"] = answer.route
    if answer.error is not None:
        return _result(run_id, model, case, repeat, answer, Score(0.0, False), extra)
    output = CaseOutput(answer.content, answer.tool_calls, answer.finish_reason)
    judge_costs: list[int] = []

    async def judge(judge_model: str, messages: list[dict[str, Any]]) -> tuple[str, int]:
        text, cost = await client.judge(judge_model, messages)
        judge_costs.append(cost)
        return text, cost

    try:
        scored = await score(case, output, judge)
    except ScoringError as unscorable:
        answer.error = f"not scored: {unscorable}"
        scored = Score(0.0, False)
    except (GatewayError, GatewayUnreachable) as judge_failed:
        answer.error = f"the judge failed: {judge_failed}"
        scored = Score(0.0, False)
    if judge_costs:
        extra["judge_cost_micros"] = sum(judge_costs)
        extra["judge_calls"] = len(judge_costs)
    return _result(run_id, model, case, repeat, answer, scored, extra)


def _result(
    run_id: str,
    model: str,
    case: Case,
    repeat: int,
    answer: StreamedAnswer,
    scored: Score,
    extra: dict[str, Any],
) -> CaseResult:
    output = output_text(answer)
    failed = answer.error is not None
    return CaseResult(
        run_id=run_id,
        model=model,
        case_id=case.id,
        repeat=repeat,
        tags=tuple(case.tags),
        deployment=answer.deployment,
        score=0.0 if failed else scored.value,
        passed=False if failed else scored.passed,
        binary=case.expect.scorer in BINARY_SCORERS,
        latency_ms=answer.latency_ms,
        ttft_ms=answer.ttft_ms,
        prompt_tokens=answer.prompt_tokens,
        completion_tokens=answer.completion_tokens,
        # The ledger is authoritative: settling copies the cost from the usage record.
        cost_micros=0,
        request_id=answer.request_id,
        output=output,
        output_sha256=hashlib.sha256(output.encode()).hexdigest(),
        error=None if answer.error is None else answer.error[:MAX_ERROR_CHARS],
        detail=scored.detail[:MAX_ERROR_CHARS],
        extra=extra,
    )


def output_text(answer: StreamedAnswer) -> str:
    """The answer as stored: its text, or its text and tool calls as JSON when it called tools."""
    if not answer.tool_calls:
        return answer.content
    calls = [{"name": c.name, "arguments": c.arguments} for c in answer.tool_calls]
    return orjson.dumps({"content": answer.content, "tool_calls": calls}).decode()


class ResultSink:
    """Finished results on their way to the store, sent in batches."""

    def __init__(self, client: GatewayClient, run_id: str) -> None:
        self._client = client
        self._run_id = run_id
        self._waiting: list[CaseResult] = []
        self._oldest = 0.0
        self._lock = asyncio.Lock()

    async def add(self, result: CaseResult) -> None:
        if not self._waiting:
            self._oldest = time.monotonic()
        self._waiting.append(result)
        full = len(self._waiting) >= BATCH_SIZE
        if full or time.monotonic() - self._oldest >= BATCH_MAX_WAIT_S:
            # A batch the gateway did not take stays for the next one; the last flush of the
            # run reports the failure.
            with contextlib.suppress(GatewayError, GatewayUnreachable):
                await self.flush()

    async def flush(self) -> None:
        async with self._lock:
            batch, self._waiting = self._waiting, []
            if not batch:
                return
            body = {"results": [result_to_json(r) for r in batch]}
            try:
                await self._client.admin("POST", f"/admin/evals/{self._run_id}/results", body)
            except BaseException:
                # Kept for the next batch (storing is idempotent), then the failure goes on.
                self._waiting = batch + self._waiting
                raise


async def stored_results(client: GatewayClient, run_id: str) -> list[CaseResult]:
    payload = await client.admin("GET", f"/admin/evals/{run_id}/results")
    rows = payload if isinstance(payload, list) else payload.get("data", payload.get("results"))
    return [result_from_json(row) for row in rows or []]


async def settle(client: GatewayClient, run_id: str, timeout_s: float) -> int:
    """Settle the run's costs from the ledger until none is pending, the pending count stays
    still for `SETTLE_QUIET_S`, or the time is up; the number still pending."""
    deadline = time.monotonic() + timeout_s
    last_pending, last_change = -1, time.monotonic()
    while True:
        settled = await client.admin("POST", f"/admin/evals/{run_id}/settle")
        pending = int(settled.get("pending", 0))
        now = time.monotonic()
        if pending != last_pending:
            last_pending, last_change = pending, now
        if pending == 0 or now >= deadline or now - last_change >= SETTLE_QUIET_S:
            return pending
        await asyncio.sleep(SETTLE_POLL_S)


def _run_body(request: RunRequest) -> dict[str, Any]:
    body: dict[str, Any] = {
        "suites": list(request.suite_names),
        "models": list(request.models),
        "repeats": request.repeats,
        "params": {"concurrency": request.concurrency, **request.params},
    }
    if request.run_id is not None:
        body["id"] = request.run_id
    if request.project is not None:
        body["project"] = request.project
    return body


def _refuse_duplicate_ids(suites: Sequence[Suite]) -> None:
    owner: dict[str, str] = {}
    for suite in suites:
        for case in suite.cases:
            if case.id in owner:
                raise RunRefused(
                    f"the case id '{case.id}' is in both {owner[case.id]} and {suite.path}; "
                    "results are keyed by case id, so ids must be unique across the suites"
                )
            owner[case.id] = str(suite.path)


def _refuse_other_run(run: dict[str, Any], request: RunRequest) -> None:
    """A resumed run must be the same evaluation, or its results would mix two."""
    if request.run_id is None:
        return
    differences = [
        f"{name} {run.get(name)} (asked: {asked})"
        for name, asked in (
            ("models", list(request.models)),
            ("suites", list(request.suite_names)),
            ("repeats", request.repeats),
        )
        if run.get(name) != asked
    ]
    if differences:
        raise RunRefused(
            f"run '{request.run_id}' exists with other settings: " + "; ".join(differences)
        )
