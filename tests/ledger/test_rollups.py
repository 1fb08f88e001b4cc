"""The usage rollups (`usage_daily` and its coarser companions by project, by key and by model)
always equal the records they sum, on SQLite and PostgreSQL: after batches that repeat records
already written, for every grouping `/admin/usage` accepts, with and without a project scope;
and migration 0008 fills the new rollups from what an older database already holds."""

from __future__ import annotations

import itertools
import random
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, Table, insert, inspect, select

from modelyard.db.engine import migrate, open_database
from modelyard.db.schema import (
    usage_daily,
    usage_daily_keys,
    usage_daily_models,
    usage_daily_projects,
    usage_records,
)
from modelyard.ledger.records import UsageRecord
from modelyard.ledger.store import LedgerStore, rollup_for
from modelyard.protocol.admin import USAGE_DIMENSIONS
from tests.support.services import PostgresServer

SUMS = ("requests", "prompt_tokens", "completion_tokens", "cost_micros", "errors", "latency_ms")
ROLLUPS = (usage_daily_projects, usage_daily_keys, usage_daily_models, usage_daily)
FIRST_DAY = datetime(2026, 11, 20, tzinfo=UTC)
EVERY_GROUPING = [
    list(combination)
    for size in range(1, len(USAGE_DIMENSIONS) + 1)
    for combination in itertools.combinations(USAGE_DIMENSIONS, size)
]


def usage(count: int, seed: int = 18) -> list[UsageRecord]:
    """Records over six days, three projects, keys and none, two models with two deployments
    each, requests that named a model or one of two routes, and successes beside 4xx and 5xx."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        project, model = rng.randrange(3), rng.randrange(2)
        route = rng.choice([None, "chat", "code"])
        key = rng.randrange(5)
        at = FIRST_DAY + timedelta(days=rng.randrange(6), seconds=rng.randrange(86_400))
        out.append(
            UsageRecord(
                request_id=f"req{seed}x{i:05d}",
                created_at=at,
                subject=f"user{key}",
                key_id=None if key == 0 else f"key{key}p{project}",
                project_id=f"p{project}",
                model=f"model{model}",
                deployment=f"model{model}dep{rng.randrange(2)}",
                route_reason="test",
                prompt_tokens=rng.randrange(1, 500),
                cached_prompt_tokens=0,
                completion_tokens=rng.randrange(0, 300),
                cost_micros=rng.randrange(1, 10_000),
                reserved_micros=10_000,
                latency_ms=rng.randrange(5, 3_000),
                status=rng.choice([200, 200, 200, 200, 429, 502]),
                outcome="completed",
                client_disconnected=False,
                usage_estimated=False,
                route=route,
                arm=None if route is None else rng.choice(["arm0", "arm1"]),
            )
        )
    return out


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A database migrated to the newest revision, on each database Modelyard runs on."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ledger.db'}"
    else:
        postgres: PostgresServer = request.getfixturevalue("postgres_server")
        url = postgres.create_database(f"rollups_{uuid.uuid4().hex[:12]}")
    engine = open_database(url)
    yield engine
    engine.dispose()


def ledger_rows(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(select(usage_records))]


def summed(rows: Iterable[dict[str, Any]], key: Sequence[str]) -> dict[tuple[str, ...], list[int]]:
    """Usage records summed by the named dimensions, as the API defines them: the UTC day of
    `created_at`, "" for no key or no route, an error for any status from 400."""
    totals: dict[tuple[str, ...], list[int]] = defaultdict(lambda: [0] * len(SUMS))
    for row in rows:
        dimensions = {
            "day": row["created_at"].astimezone(UTC).date().isoformat(),
            "project_id": row["project_id"],
            "key_id": row["key_id"] or "",
            "model": row["model"],
            "deployment": row["deployment"],
            "route": row["route"] or "",
            "arm": row["arm"] or "",
        }
        sums = totals[tuple(dimensions[name] for name in key)]
        measures = (
            1,
            row["prompt_tokens"],
            row["completion_tokens"],
            row["cost_micros"],
            int(row["status"] >= 400),
            row["latency_ms"],
        )
        for index, value in enumerate(measures):
            sums[index] += value
    return totals


def table_rows(engine: Engine, table: Table) -> dict[tuple[str, ...], list[int]]:
    key = [column.name for column in table.primary_key.columns]
    with engine.connect() as connection:
        return {
            tuple(row[name] for name in key): [int(row[name]) for name in SUMS]
            for row in connection.execute(select(table)).mappings()
        }


def assert_every_rollup_equals_the_records(engine: Engine) -> None:
    rows = ledger_rows(engine)
    for table in ROLLUPS:
        key = [column.name for column in table.primary_key.columns]
        assert table_rows(engine, table) == dict(summed(rows, key)), table.name


def write_with_retries(store: LedgerStore) -> list[UsageRecord]:
    records = usage(420)
    assert store.write(records[:150]) == {r.request_id for r in records[:150]}
    assert store.write(records[150:300]) == {r.request_id for r in records[150:300]}
    # A batch retried after its commit was not acknowledged: its records are all there already.
    assert store.write(records[150:300]) == set()
    # A batch that overlaps earlier ones: only its new records count.
    assert store.write(records[100:420]) == {r.request_id for r in records[300:420]}
    return records


def test_every_rollup_equals_the_records_after_retried_batches(engine: Engine) -> None:
    store = LedgerStore(engine)
    records = write_with_retries(store)
    assert len(ledger_rows(engine)) == len(records)
    assert_every_rollup_equals_the_records(engine)
    # The data has what each rollup must tell apart: errors, no key, no route, several arms.
    with engine.connect() as connection:
        assert sum(connection.execute(select(usage_daily_projects.c.errors)).scalars()) > 0
        assert "" in set(connection.execute(select(usage_daily_keys.c.key_id)).scalars())
        arms = set(connection.execute(select(usage_daily_models.c.arm)).scalars())
        assert arms == {"", "arm0", "arm1"}


@pytest.mark.parametrize("scope", [None, ["p1"], ["p0", "p2"], []], ids=str)
def test_reports_equal_the_records_for_every_grouping(
    engine: Engine, scope: list[str] | None
) -> None:
    store = LedgerStore(engine)
    write_with_retries(store)
    # Days 2 to 5 of the 6: the range is inclusive at both ends and leaves records out.
    since, until = "2026-11-21", "2026-11-24"
    rows = [
        row
        for row in ledger_rows(engine)
        if since <= row["created_at"].astimezone(UTC).date().isoformat() <= until
        and (scope is None or row["project_id"] in scope)
    ]
    assert rows or scope == []
    for group_by in EVERY_GROUPING:
        expected = [
            dict(zip(group_by, group, strict=True)) | dict(zip(SUMS, sums, strict=True))
            for group, sums in sorted(summed(rows, group_by).items())
        ]
        assert store.daily(group_by, since, until, scope) == expected, group_by


def test_a_report_narrowed_to_some_values_equals_those_rows_of_the_whole_report(
    engine: Engine,
) -> None:
    store = LedgerStore(engine)
    write_with_retries(store)
    whole = store.daily(["day", "key_id"], "2026-11-20", "2026-11-25")
    keys = sorted({row["key_id"] for row in whole})[:2]

    narrowed = store.daily(["day", "key_id"], "2026-11-20", "2026-11-25", only={"key_id": keys})

    assert narrowed == [row for row in whole if row["key_id"] in keys]
    assert 0 < len(narrowed) < len(whole)
    # A narrowing dimension that is not grouped by still picks a rollup that holds it.
    by_day = store.daily(["day"], "2026-11-20", "2026-11-25", only={"model": ["nowhere"]})
    assert by_day == []


def test_a_report_names_its_dimensions_in_the_order_asked(engine: Engine) -> None:
    store = LedgerStore(engine)
    write_with_retries(store)
    report = store.daily(["model", "day"], "2026-11-20", "2026-11-25")
    assert [list(row)[:2] for row in report] == [["model", "day"]] * len(report)
    assert [(row["model"], row["day"]) for row in report] == sorted(
        (row["model"], row["day"]) for row in report
    )
    assert len(report) == 2 * 6


def test_a_report_reads_the_smallest_rollup_that_holds_its_dimensions() -> None:
    sizes = {table: len(table.primary_key.columns) for table in ROLLUPS}
    for group_by in EVERY_GROUPING:
        chosen = rollup_for(group_by)
        held = {column.name for column in chosen.primary_key.columns}
        assert set(group_by) <= held, group_by
        # No rollup with fewer dimensions holds them all.
        assert not [
            table
            for table in ROLLUPS
            if sizes[table] < sizes[chosen]
            and set(group_by) <= {column.name for column in table.primary_key.columns}
        ], group_by
    assert rollup_for(["day"]) is usage_daily_projects
    assert rollup_for(["project_id"]) is usage_daily_projects
    assert rollup_for(["day", "key_id"]) is usage_daily_keys
    assert rollup_for(["route", "arm"]) is usage_daily_models
    assert rollup_for(["day", "deployment"]) is usage_daily_models
    assert rollup_for(["key_id", "model"]) is usage_daily
    # The same dimensions in another order, or repeated, read the same rollup.
    assert rollup_for(["arm", "route", "arm"]) is usage_daily_models


def _alembic(connection: Any) -> Config:
    config = Config()
    config.set_main_option(
        "script_location", str(resources.files("modelyard.db").joinpath("migrations"))
    )
    config.attributes["connection"] = connection
    return config


def test_the_migration_fills_the_new_rollups_from_an_older_database(engine: Engine) -> None:
    new_tables = {"usage_daily_projects", "usage_daily_keys", "usage_daily_models"}
    with engine.begin() as connection:
        command.downgrade(_alembic(connection), "0007")
    assert new_tables.isdisjoint(inspect(engine).get_table_names())
    # What a database at 0007 holds: the records and their full rollup, as 0007's ledger wrote.
    records = usage(300)
    rows = [record.row() for record in records]
    full_key = [column.name for column in usage_daily.primary_key.columns]
    with engine.begin() as connection:
        connection.execute(insert(usage_records), rows)
        connection.execute(
            insert(usage_daily),
            [
                dict(zip(full_key, group, strict=True)) | dict(zip(SUMS, sums, strict=True))
                for group, sums in summed(rows, full_key).items()
            ],
        )
    migrate(engine)
    assert new_tables <= set(inspect(engine).get_table_names())
    assert_every_rollup_equals_the_records(engine)
    # Later writes add to the backfilled rows.
    store = LedgerStore(engine)
    assert len(store.write(usage(90, seed=19))) == 90
    assert_every_rollup_equals_the_records(engine)
