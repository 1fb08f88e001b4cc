"""The ledger in the database: usage records, written idempotently, and their daily rollup.

A record is inserted at most once (its request id is the primary key; a retried batch skips the
ones already there), and only records actually inserted are added to `usage_daily`, in the same
transaction, so the rollup always equals the records it summarises.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.dialects import postgresql, sqlite

from modelyard.db.schema import usage_daily, usage_records
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
        if not totals:
            return
        upsert = self._dialect.insert(usage_daily)
        upsert = upsert.on_conflict_do_update(
            index_elements=list(_ROLLUP_KEY),
            set_={name: usage_daily.c[name] + upsert.excluded[name] for name in _ROLLUP_SUMS},
        )
        connection.execute(
            upsert,
            [
                dict(zip(_ROLLUP_KEY, group, strict=True))
                | dict(zip(_ROLLUP_SUMS, sums, strict=True))
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
    ) -> list[dict[str, Any]]:
        """Sums from the rollup between two days (inclusive), grouped by the named dimensions."""
        columns = [usage_daily.c[name] for name in group_by]
        sums = [func.sum(usage_daily.c[name]).label(name) for name in _ROLLUP_SUMS]
        query = select(*columns, *sums).where(
            usage_daily.c.day >= since, usage_daily.c.day <= until
        )
        if project_ids is not None:
            query = query.where(usage_daily.c.project_id.in_(list(project_ids)))
        query = query.group_by(*columns).order_by(*columns)
        with self._engine.connect() as connection:
            return [
                {str(k): (int(v) if k in _ROLLUP_SUMS else v) for k, v in row._mapping.items()}
                for row in connection.execute(query)
            ]
