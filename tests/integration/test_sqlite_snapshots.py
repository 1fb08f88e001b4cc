"""SQLite under a concurrent writer (the usage ledger's thread): settling an evaluation run while
usage records are still being written never fails, and a connection whose write failed with
"database is locked" does not go back to the pool to fail every later write the same way."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import OperationalError

from modelyard.audit.events import AuditEvent
from modelyard.audit.log import AuditLog
from modelyard.db.engine import open_database
from modelyard.db.schema import projects, usage_records
from modelyard.evals.outcome import CaseResult
from modelyard.evals.store import EvalRun, EvalStore
from modelyard.ledger.store import LedgerStore
from tests.ledger.test_cost_and_store import record

NOW = datetime(2026, 12, 5, 12, tzinfo=UTC)


@pytest.fixture()
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = open_database(f"sqlite:///{tmp_path / 'modelyard.db'}")
    with engine.begin() as connection:
        connection.execute(insert(projects).values(id="p1", created_at=NOW, created_by="dev"))
    yield engine
    engine.dispose()


@contextmanager
def ledger_writing(engine: Engine) -> Iterator[list[str]]:
    """Usage records committed one by one on another thread, as the ledger writer does."""
    written: list[str] = []
    stop = threading.Event()

    def write() -> None:
        store = LedgerStore(engine)
        while not stop.is_set():
            request_id = f"background-{uuid.uuid4().hex}"
            store.write([record(request_id)])
            written.append(request_id)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    try:
        yield written
    finally:
        stop.set()
        thread.join(timeout=30)


def result(request_id: str, case: int) -> CaseResult:
    return CaseResult(
        run_id="run-1", model="m", case_id=f"case-{case}", repeat=0, tags=("easy",),
        deployment="d", score=1.0, passed=True, binary=True, latency_ms=3.0, ttft_ms=1.0,
        prompt_tokens=0, completion_tokens=0, cost_micros=0, request_id=request_id,
        output="right", output_sha256="",
    )  # fmt: skip


def test_settling_a_run_while_the_ledger_writes_never_fails(engine: Engine) -> None:
    store = EvalStore(engine, AuditLog(engine))
    run = EvalRun("run-1", "p1", NOW, "dev", ("suite",), ("m",), 1, "running", {})
    event = AuditEvent("dev", "evals.create", "eval:run-1", "allowed", "test", project_id="p1")
    assert store.create_run(run, event) == run
    answered = [f"answer-{n}" for n in range(300)]
    LedgerStore(engine).write([record(request_id, cost=7) for request_id in answered[:150]])
    store.add_results("run-1", [result(r, n) for n, r in enumerate(answered)], True, NOW)

    with ledger_writing(engine) as background:
        # Each settle reads the ledger and then updates results while commits go on beside it.
        first = store.settle(run)
        LedgerStore(engine).write([record(request_id, cost=7) for request_id in answered[150:]])
        second = store.settle(run)
        assert len(background) > 0

    assert (first.settled, first.pending) == (150, 150)
    assert (second.settled, second.pending) == (150, 0)
    assert {r.cost_micros for r in store.results("run-1")} == {7}


def test_a_locked_write_does_not_leave_a_stale_connection_in_the_pool(engine: Engine) -> None:
    # An unfinished SELECT pins the connection's snapshot; once another connection commits, its
    # UPDATE fails at once with "database is locked" (SQLite cannot move the snapshot forward).
    LedgerStore(engine).write([record(f"r{n}") for n in range(50)])
    with (
        ledger_writing(engine) as background,
        pytest.raises(OperationalError, match="locked"),
        engine.begin() as connection,
    ):
        rows = connection.execute(select(usage_records.c.request_id))
        for (request_id,) in rows:
            while len(background) < 2:  # another connection commits after the SELECT began
                time.sleep(0.001)
            connection.execute(
                update(usage_records)
                .where(usage_records.c.request_id == request_id)
                .values(latency_ms=1)
            )

    with ledger_writing(engine) as background:
        for n in range(100):
            with engine.begin() as connection:
                connection.execute(
                    update(usage_records)
                    .where(usage_records.c.request_id == f"r{n % 50}")
                    .values(latency_ms=n)
                )
        assert len(background) > 0
