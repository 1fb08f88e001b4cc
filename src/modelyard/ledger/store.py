"""The ledger in the database: usage records, written idempotently, and their daily rollups.

A record is inserted at most once (its request id is the primary key; a retried batch skips the
ones already there), and only records actually inserted are added to the rollups, in the same
transaction, so every rollup always equals the records it summarises. `usage_daily` keeps every
dimension a report may group by; the coarser ones (by project, by key, by model) keep fewer, and
a report reads the smallest rollup that holds the dimensions it asks for (day and project always:
reports filter on both), which is a function of those dimensions alone.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Connection, Engine, Table, cast, func, select
from sqlalchemy.dialects import postgresql, sqlite

from modelyard.db.schema import (
    usage_daily,
    usage_daily_keys,
    usage_daily_models,
    usage_daily_projects,
    usage_records,
)
from modelyard.ledger.records import UsageRecord

_ROLLUP_KEY = ("day", "project_id", "key_id", "model", "deployment", "route", "arm")
_ROLLUP_SUMS = (
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "cost_micros",
    "errors",
    "latency_ms",
)
# Smallest first (in typical size: projects, then keys or models, then everything): a report
# reads the first whose key holds every dimension it groups by.
_ROLLUPS = tuple(
    (table, tuple(column.name for column in table.primary_key.columns))
    for table in (usage_daily_projects, usage_daily_keys, usage_daily_models, usage_daily)
)


class LedgerStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._dialect = sqlite if engine.dialect.name == "sqlite" else postgresql

    def write(self, records: Sequence[UsageRecord]) -> set[str]:
        """Insert the records not yet in the ledger; returns the ids this call inserted."""
        if not records:
            return set()
        with self._engine.begin() as connection:
            statement = (
                self._dialect.insert(usage_records)
                .on_conflict_do_nothing(index_elements=["request_id"])
                .returning(usage_records.c.request_id)
            )
            rows = connection.execute(statement, [record.row() for record in records])
            inserted = {row[0] for row in rows}
            self._roll_up(connection, [r for r in records if r.request_id in inserted])
        return inserted

    def _roll_up(self, connection: Connection, records: Sequence[UsageRecord]) -> None:
        finest = _totals(records)
        if not finest:
            return
        # The same order of tables and of rows in every transaction: concurrent writers
        # (replicas on PostgreSQL) take their row locks in one order and never deadlock.
        for table, key in _ROLLUPS:
            totals = _coarsen(finest, key) if key != _ROLLUP_KEY else finest
            upsert = self._dialect.insert(table)
            upsert = upsert.on_conflict_do_update(
                index_elements=list(key),
                set_={name: table.c[name] + upsert.excluded[name] for name in _ROLLUP_SUMS},
            )
            connection.execute(
                upsert,
                [
                    dict(zip(key, group, strict=True)) | dict(zip(_ROLLUP_SUMS, sums, strict=True))
                    for group, sums in sorted(totals.items())
                ],
            )

    def costs(self, request_ids: Sequence[str]) -> dict[str, int]:
        with self._engine.connect() as connection:
            rows = connection.execute(
                select(usage_records.c.request_id, usage_records.c.cost_micros).where(
                    usage_records.c.request_id.in_(list(request_ids))
                )
            )
            return {row[0]: int(row[1]) for row in rows}

    def spent_since(self, *, project_id: str | None, key_id: str | None, since: datetime) -> int:
        """Settled cost of a project's or a key's records since `since` (budget rebuilds)."""
        query = select(func.coalesce(func.sum(usage_records.c.cost_micros), 0)).where(
            usage_records.c.created_at >= since
        )
        if project_id is not None:
            query = query.where(usage_records.c.project_id == project_id)
        if key_id is not None:
            query = query.where(usage_records.c.key_id == key_id)
        with self._engine.connect() as connection:
            return int(connection.execute(query).scalar_one())

    def daily(
        self,
        group_by: Sequence[str],
        since: str,
        until: str,
        project_ids: Sequence[str] | None = None,
        only: Mapping[str, Sequence[str]] | None = None,
    ) -> list[dict[str, Any]]:
        """Sums from the rollups between two days (inclusive), grouped by the named dimensions;
        `only` keeps the rows whose dimension has one of the values given for it."""
        only = only or {}
        rollup = rollup_for([*group_by, *only])
        columns = [rollup.c[name] for name in group_by]
        # PostgreSQL sums a bigint into a numeric; cast back, so every value comes out an int.
        sums = [cast(func.sum(rollup.c[name]), BigInteger) for name in _ROLLUP_SUMS]
        query = select(*columns, *sums).where(rollup.c.day >= since, rollup.c.day <= until)
        if project_ids is not None:
            query = query.where(rollup.c.project_id.in_(list(project_ids)))
        for name, values in only.items():
            query = query.where(rollup.c[name].in_(list(values)))
        query = query.group_by(*columns).order_by(*columns)
        names = [*group_by, *_ROLLUP_SUMS]
        with self._engine.connect() as connection:
            # zip, not row._mapping: a report by day and key can be tens of thousands of rows.
            return [dict(zip(names, row, strict=True)) for row in connection.execute(query)]


def rollup_for(group_by: Iterable[str]) -> Table:
    """The smallest rollup holding every dimension asked (`usage_daily` for any other name)."""
    asked = {"day", "project_id", *group_by}
    return next((table for table, key in _ROLLUPS if asked <= set(key)), usage_daily)


def _totals(records: Iterable[UsageRecord]) -> dict[tuple[str, ...], list[int]]:
    """The records' sums by every dimension of `usage_daily` (no key, no route: "")."""
    totals: dict[tuple[str, ...], list[int]] = defaultdict(lambda: [0] * len(_ROLLUP_SUMS))
    for r in records:
        key = (
            r.day,
            r.project_id,
            r.key_id or "",
            r.model,
            r.deployment,
            r.route or "",
            r.arm or "",
        )
        sums = totals[key]
        for index, value in enumerate(
            (
                1,
                r.prompt_tokens,
                r.completion_tokens,
                r.cost_micros,
                int(r.status >= 400),
                r.latency_ms,
            )
        ):
            sums[index] += value
    return totals


def _coarsen(
    finest: dict[tuple[str, ...], list[int]], key: tuple[str, ...]
) -> dict[tuple[str, ...], list[int]]:
    """Sums by every dimension, added up by the fewer dimensions of `key`."""
    positions = [_ROLLUP_KEY.index(name) for name in key]
    totals: dict[tuple[str, ...], list[int]] = defaultdict(lambda: [0] * len(_ROLLUP_SUMS))
    for group, sums in finest.items():
        coarse = totals[tuple(group[i] for i in positions)]
        for index, value in enumerate(sums):
            coarse[index] += value
    return totals
