"""Cost arithmetic in integer micro-dollars, and the ledger table: idempotent writes and a daily
rollup that always equals the records it sums, on a real SQLite database."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from modelyard.catalog.cards import Price
from modelyard.db.engine import open_database
from modelyard.db.schema import usage_daily, usage_records
from modelyard.ledger.cost import cost_micros, worst_case_micros
from modelyard.ledger.records import UsageRecord
from modelyard.ledger.store import LedgerStore
from modelyard.money import dollars
from modelyard.protocol.generation import Usage
from tests.support.services import PostgresServer

# $2.50 in, $1.25 cached in, $10.00 out per 1M tokens.
PRICE = Price(2_500_000, 10_000_000, 1_250_000)
NOW = datetime(2026, 11, 27, 12, tzinfo=UTC)


def test_cost_is_exact_integer_micro_dollars() -> None:
    assert cost_micros(PRICE, Usage(1_000_000, 1_000_000)) == 12_500_000
    assert cost_micros(PRICE, Usage(1000, 500)) == 2_500 + 5_000
    # Cached prompt tokens are charged at the cached price.
    assert cost_micros(PRICE, Usage(1000, 0, cached_prompt_tokens=400)) == 1_500 + 500


def test_a_fraction_of_a_micro_dollar_is_charged_as_one() -> None:
    assert cost_micros(PRICE, Usage(1, 0)) == 3  # 2.5 micro-dollars rounds up
    assert sum(cost_micros(PRICE, Usage(1, 0)) for _ in range(1000)) >= cost_micros(
        PRICE, Usage(1000, 0)
    )


def test_the_worst_case_bounds_every_actual_cost() -> None:
    worst = worst_case_micros(PRICE, prompt_tokens_bound=300, max_output_tokens=200)
    for prompt in range(0, 301, 50):
        for completion in range(0, 201, 40):
            for cached in (0, prompt):
                assert (
                    cost_micros(PRICE, Usage(prompt, completion, cached_prompt_tokens=cached))
                    <= worst
                )


def test_dollars_are_exact_decimal_text() -> None:
    assert dollars(12_500_001) == "12.500001"
    assert dollars(0) == "0.000000"


def record(
    request_id: str,
    *,
    project: str = "p1",
    key: str | None = "k1",
    cost: int = 100,
    at: datetime = NOW,
    status: int = 200,
) -> UsageRecord:
    return UsageRecord(
        request_id=request_id,
        created_at=at,
        subject="dev",
        key_id=key,
        project_id=project,
        model="m",
        deployment="d",
        route_reason="only",
        prompt_tokens=10,
        cached_prompt_tokens=0,
        completion_tokens=5,
        cost_micros=cost,
        reserved_micros=cost * 2,
        latency_ms=12,
        status=status,
        outcome="completed" if status < 400 else "failed",
        client_disconnected=False,
        usage_estimated=False,
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> LedgerStore:
    """The same ledger on both databases (each counts inserted rows its own way)."""
    if request.param == "sqlite":
        return LedgerStore(open_database(f"sqlite:///{tmp_path / 'ledger.db'}"))
    postgres: PostgresServer = request.getfixturevalue("postgres_server")
    url = postgres.create_database(f"ledger_{uuid.uuid4().hex[:12]}")
    return LedgerStore(open_database(url))


def test_a_record_is_written_once_however_often_it_is_sent(store: LedgerStore) -> None:
    assert store.write([record("r1"), record("r2")]) == {"r1", "r2"}
    assert store.write([record("r2"), record("r3")]) == {"r3"}
    assert store.costs(["r1", "r2", "r3", "nope"]) == {"r1": 100, "r2": 100, "r3": 100}
    rows = store.daily(["day", "project_id"], "2026-11-27", "2026-11-27")
    assert rows == [
        {
            "day": "2026-11-27",
            "project_id": "p1",
            "requests": 3,
            "prompt_tokens": 30,
            "completion_tokens": 15,
            "cost_micros": 300,
            "errors": 0,
            "latency_ms": 36,
        }
    ]


def test_the_rollup_equals_the_records(store: LedgerStore) -> None:
    batch = [
        record(
            f"r{i}",
            project=f"p{i % 3}",
            key=None if i % 4 == 0 else f"k{i % 5}",
            cost=i,
            at=NOW - timedelta(days=i % 2),
            status=500 if i % 7 == 0 else 200,
        )
        for i in range(200)
    ]
    store.write(batch[:120])
    store.write(batch[100:])  # overlaps: the 20 repeated records must not count twice
    engine = store._engine
    with engine.connect() as connection:
        from_records = connection.execute(
            select(usage_records.c.project_id, func.count(), func.sum(usage_records.c.cost_micros))
            .group_by(usage_records.c.project_id)
            .order_by(usage_records.c.project_id)
        ).all()
        from_rollup = connection.execute(
            select(
                usage_daily.c.project_id,
                func.sum(usage_daily.c.requests),
                func.sum(usage_daily.c.cost_micros),
            )
            .group_by(usage_daily.c.project_id)
            .order_by(usage_daily.c.project_id)
        ).all()
    assert [tuple(r) for r in from_records] == [tuple(r) for r in from_rollup]
    assert sum(r[1] for r in from_records) == 200
    errors = store.daily(["project_id"], "2026-11-01", "2026-11-30")
    assert sum(r["errors"] for r in errors) == sum(1 for r in batch if r.status >= 400)


def test_spend_since_a_window_start(store: LedgerStore) -> None:
    store.write(
        [
            record("old", at=NOW - timedelta(days=2), cost=7),
            record("new", cost=5),
            record("other", project="p2", key="k9", cost=11),
        ]
    )
    assert store.spent_since(project_id="p1", key_id=None, since=NOW - timedelta(hours=1)) == 5
    assert store.spent_since(project_id="p1", key_id=None, since=NOW - timedelta(days=3)) == 12
    assert store.spent_since(project_id=None, key_id="k9", since=NOW - timedelta(days=3)) == 11


def test_a_batch_that_fails_leaves_nothing_behind(store: LedgerStore) -> None:
    engine = store._engine
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE usage_daily"))
    with pytest.raises(Exception):  # noqa: B017 - any database error
        store.write([record("r1")])
    assert store.costs(["r1"]) == {}
