"""Feedback on served requests: a score in [0, 1] and labels that a project's caller attaches to
one of its usage records, and the per-group count and mean the usage report shows beside cost.

One feedback per request and rater (the key id, or the subject of a caller without a key); a
second from the same rater replaces the first. Feedback only ever names a request of the same
project's ledger, so nobody rates another project's traffic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Engine, and_, func, select
from sqlalchemy.dialects import postgresql, sqlite

from modelyard.db.schema import feedback, usage_records
from modelyard.errors import NotFound

# The usage report's dimensions, as usage_daily keeps them: absent values are "".
_DIMENSIONS = ("day", "project_id", "key_id", "model", "deployment", "route", "arm")


@dataclass(frozen=True)
class Feedback:
    request_id: str
    project_id: str
    rater: str
    key_id: str | None
    subject: str
    score: float
    labels: tuple[str, ...]
    created_at: datetime


@dataclass(frozen=True)
class FeedbackTally:
    count: int
    total: float

    @property
    def mean(self) -> float:
        return self.total / self.count


class FeedbackStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._dialect = sqlite if engine.dialect.name == "sqlite" else postgresql

    def give(self, given: Feedback) -> bool:
        """Store the feedback; True when it replaced this rater's earlier one. NotFound when the
        request is not one of the project's usage records (yet: the ledger is written a moment
        after the answer)."""
        served = select(usage_records.c.request_id).where(
            usage_records.c.request_id == given.request_id,
            usage_records.c.project_id == given.project_id,
        )
        earlier = select(feedback.c.rater).where(
            feedback.c.request_id == given.request_id, feedback.c.rater == given.rater
        )
        row = {
            "request_id": given.request_id,
            "rater": given.rater,
            "project_id": given.project_id,
            "key_id": given.key_id,
            "subject": given.subject,
            "score": given.score,
            "labels": list(given.labels),
            "created_at": given.created_at,
        }
        upsert = self._dialect.insert(feedback).values(**row)
        upsert = upsert.on_conflict_do_update(
            index_elements=["request_id", "rater"],
            set_={name: upsert.excluded[name] for name in ("score", "labels", "created_at")},
        )
        with self._engine.begin() as connection:
            if connection.execute(served).first() is None:
                raise NotFound(
                    f"The request '{given.request_id}' does not exist in this project's usage "
                    "records (they are written a moment after the answer; retry shortly).",
                    param="request_id",
                )
            replaced = connection.execute(earlier).first() is not None
            connection.execute(upsert)
        return replaced

    def tallies(
        self,
        group_by: Sequence[str],
        since: str,
        until: str,
        project_ids: Sequence[str] | None = None,
    ) -> dict[tuple[Any, ...], FeedbackTally]:
        """Count and sum of scores of the feedback on requests made between two days
        (inclusive), grouped by the usage report's dimensions (values as the report has them)."""
        columns = [self._dimension(name).label(name) for name in group_by]
        start = datetime.combine(date.fromisoformat(since), time(), UTC)
        end = datetime.combine(date.fromisoformat(until), time(), UTC) + timedelta(days=1)
        query = (
            select(*columns, func.count().label("n"), func.sum(feedback.c.score).label("total"))
            .select_from(
                feedback.join(
                    usage_records,
                    and_(
                        usage_records.c.request_id == feedback.c.request_id,
                        usage_records.c.project_id == feedback.c.project_id,
                    ),
                )
            )
            .where(usage_records.c.created_at >= start, usage_records.c.created_at < end)
            .group_by(*columns)
        )
        if project_ids is not None:
            query = query.where(usage_records.c.project_id.in_(list(project_ids)))
        with self._engine.connect() as connection:
            return {
                tuple(row[: len(group_by)]): FeedbackTally(int(row.n), float(row.total))
                for row in connection.execute(query)
            }

    def _dimension(self, name: str) -> ColumnElement[Any]:
        if name not in _DIMENSIONS:
            raise ValueError(f"not a usage dimension: {name}")
        if name == "day":
            created = usage_records.c.created_at
            if self._dialect is postgresql:
                return func.to_char(func.timezone("UTC", created), "YYYY-MM-DD")
            return func.substr(created, 1, 10)
        column = usage_records.c[name]
        if name in ("key_id", "route", "arm"):
            return func.coalesce(column, "")
        return column
