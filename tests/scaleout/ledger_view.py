"""Reading the usage ledger straight from the gateway's database, as an auditor would: rows of
`usage_records`, and waiting until the background writer has committed the ones expected."""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import Any

import sqlalchemy as sa

from modelyard.db.schema import usage_records

Row = dict[str, Any]


def usage_rows(
    database_url: str, *, key_id: str | None = None, request_ids: Collection[str] = ()
) -> list[Row]:
    """The records of one key, or of the given request ids."""
    query = sa.select(usage_records)
    if key_id is not None:
        query = query.where(usage_records.c.key_id == key_id)
    if request_ids:
        query = query.where(usage_records.c.request_id.in_(list(request_ids)))
    engine = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]
    finally:
        engine.dispose()


def wait_for_rows(
    database_url: str,
    count: int,
    *,
    key_id: str | None = None,
    request_ids: Collection[str] = (),
    timeout_s: float = 30.0,
) -> list[Row]:
    """At least `count` records (and then a moment for stragglers that should not be there)."""
    deadline = time.monotonic() + timeout_s
    while len(rows := usage_rows(database_url, key_id=key_id, request_ids=request_ids)) < count:
        assert time.monotonic() < deadline, f"{len(rows)} of {count} usage records written"
        time.sleep(0.1)
    # A duplicate or an unexpected record would be written within the writer's linger.
    time.sleep(0.3)
    return usage_rows(database_url, key_id=key_id, request_ids=request_ids)
