"""Evaluation runs and their case results in the database (`eval_runs`, `eval_results`).

A result is stored at most once per (run, model, case, repeat): posting it again changes
nothing, so a resumed runner may resend what it is unsure of. Outputs are kept only for projects
that retain content; the hash always is. The runner's cost and tokens stand until the run is
settled from the ledger, which is authoritative: settling copies them from the usage record of
the result's request id, in the run's project.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from modelyard.audit.events import AuditEvent
from modelyard.audit.log import AuditLog
from modelyard.db.schema import eval_results, eval_runs, usage_records
from modelyard.evals.outcome import CaseResult

RunStatus = Literal["running", "finished", "interrupted"]
# Request ids looked up in the ledger per query (bounded IN lists).
_SETTLE_BATCH = 500


@dataclass(frozen=True)
class EvalRun:
    id: str
    project_id: str
    created_at: datetime
    created_by: str
    suites: tuple[str, ...]
    models: tuple[str, ...]
    repeats: int
    status: RunStatus
    params: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "project_id": self.project_id,
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
            "suites": list(self.suites),
            "models": list(self.models),
            "repeats": self.repeats,
            "status": self.status,
            "params": self.params,
        }

    @classmethod
    def from_row(cls, row: Any) -> EvalRun:
        return cls(
            id=row["id"],
            project_id=row["project_id"],
            created_at=row["created_at"],
            created_by=row["created_by"],
            suites=tuple(row["suites"]),
            models=tuple(row["models"]),
            repeats=row["repeats"],
            status=row["status"],
            params=row["params"],
        )


@dataclass(frozen=True)
class Settlement:
    settled: int
    # Results whose request has no usage record yet.
    pending: int


class EvalStore:
    def __init__(self, engine: Engine, audit: AuditLog) -> None:
        self._engine = engine
        self._audit = audit
        self._dialect = sqlite if engine.dialect.name == "sqlite" else postgresql

    def run(self, run_id: str) -> EvalRun | None:
        with self._engine.connect() as connection:
            row = connection.execute(select(eval_runs).where(eval_runs.c.id == run_id)).mappings()
            found = row.first()
        return EvalRun.from_row(found) if found is not None else None

    def runs(self, project_ids: Sequence[str] | None) -> list[EvalRun]:
        """Newest first; None: every project's."""
        query = select(eval_runs).order_by(eval_runs.c.created_at.desc(), eval_runs.c.id)
        if project_ids is not None:
            query = query.where(eval_runs.c.project_id.in_(list(project_ids)))
        with self._engine.connect() as connection:
            return [EvalRun.from_row(row) for row in connection.execute(query).mappings()]

    def create_run(self, run: EvalRun, event: AuditEvent) -> EvalRun | None:
        """The run, created with its audit record; None when the id is taken already."""
        row = run.to_json() | {"created_at": run.created_at}
        try:
            with self._engine.begin() as connection:
                connection.execute(insert(eval_runs).values(**row))
                self._audit.append_in(connection, event)
        except IntegrityError:
            return None
        return run

    def set_status(self, run: EvalRun, status: RunStatus) -> EvalRun:
        with self._engine.begin() as connection:
            connection.execute(
                update(eval_runs).where(eval_runs.c.id == run.id).values(status=status)
            )
        return replace(run, status=status)

    def add_results(
        self, run_id: str, results: Sequence[CaseResult], keep_output: bool, now: datetime
    ) -> int:
        """Store the results not stored yet; returns how many this call stored."""
        if not results:
            return 0
        rows = [_row(run_id, result, keep_output, now) for result in results]
        statement = (
            self._dialect.insert(eval_results)
            .on_conflict_do_nothing(index_elements=["run_id", "model", "case_id", "repeat"])
            .returning(eval_results.c.case_id)
        )
        with self._engine.begin() as connection:
            return len(connection.execute(statement, rows).all())

    def results(self, run_id: str) -> list[CaseResult]:
        query = (
            select(eval_results)
            .where(eval_results.c.run_id == run_id)
            .order_by(eval_results.c.model, eval_results.c.case_id, eval_results.c.repeat)
        )
        with self._engine.connect() as connection:
            return [_result(row) for row in connection.execute(query).mappings()]

    def settle(self, run: EvalRun) -> Settlement:
        """Copy cost and tokens from the ledger onto every result not settled yet."""
        unsettled = select(eval_results.c.request_id).where(
            eval_results.c.run_id == run.id,
            eval_results.c.settled.is_(False),
            eval_results.c.request_id.is_not(None),
        )
        settled = 0
        with self._engine.begin() as connection:
            request_ids = [row[0] for row in connection.execute(unsettled)]
            for start in range(0, len(request_ids), _SETTLE_BATCH):
                batch = request_ids[start : start + _SETTLE_BATCH]
                # Read whole before writing: an unfinished SELECT would pin SQLite's snapshot,
                # and the first UPDATE after another connection's commit would then fail.
                records = connection.execute(
                    select(
                        usage_records.c.request_id,
                        usage_records.c.cost_micros,
                        usage_records.c.prompt_tokens,
                        usage_records.c.completion_tokens,
                    ).where(
                        usage_records.c.request_id.in_(batch),
                        usage_records.c.project_id == run.project_id,
                    )
                ).all()
                for request_id, cost, prompt, completion in records:
                    settled += connection.execute(
                        update(eval_results)
                        .where(
                            eval_results.c.run_id == run.id,
                            eval_results.c.request_id == request_id,
                            eval_results.c.settled.is_(False),
                        )
                        .values(
                            cost_micros=cost,
                            prompt_tokens=prompt,
                            completion_tokens=completion,
                            settled=True,
                        )
                    ).rowcount
        return Settlement(settled, len(request_ids) - settled)


def output_sha256(output: str) -> str:
    return hashlib.sha256(output.encode("utf-8")).hexdigest()


def _row(run_id: str, result: CaseResult, keep_output: bool, now: datetime) -> dict[str, Any]:
    # The server hashes what it is given, so a stored hash always matches its output.
    digest = output_sha256(result.output) if result.output is not None else result.output_sha256
    return {
        "run_id": run_id,
        "model": result.model,
        "case_id": result.case_id,
        "repeat": result.repeat,
        "tags": list(result.tags),
        "deployment": result.deployment,
        "score": result.score,
        "passed": result.passed,
        "binary": result.binary,
        "latency_ms": result.latency_ms,
        "ttft_ms": result.ttft_ms,
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "cost_micros": result.cost_micros,
        "request_id": result.request_id,
        "output": result.output if keep_output else None,
        "output_sha256": digest,
        "error": result.error,
        "detail": result.detail,
        "extra": result.extra,
        "settled": False,
        "created_at": now,
    }


def _result(row: Any) -> CaseResult:
    return CaseResult(
        run_id=row["run_id"],
        model=row["model"],
        case_id=row["case_id"],
        repeat=row["repeat"],
        tags=tuple(row["tags"]),
        deployment=row["deployment"],
        score=row["score"],
        passed=row["passed"],
        binary=row["binary"],
        latency_ms=row["latency_ms"],
        ttft_ms=row["ttft_ms"],
        prompt_tokens=row["prompt_tokens"],
        completion_tokens=row["completion_tokens"],
        cost_micros=row["cost_micros"],
        request_id=row["request_id"],
        output=row["output"],
        output_sha256=row["output_sha256"],
        error=row["error"],
        detail=row["detail"],
        extra=row["extra"],
    )
