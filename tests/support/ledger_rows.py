"""A gateway's usage records read straight from its SQLite database, and waiting until its
background writer has committed the ones expected."""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa

from modelyard.db.schema import usage_records
from tests.support.gateway import GatewayProcess


def ledger_rows(gateway: GatewayProcess, project: str) -> list[dict[str, Any]]:
    engine = sa.create_engine(f"sqlite:///{gateway.data_dir / 'modelyard.db'}")
    try:
        with engine.connect() as connection:
            query = sa.select(usage_records).where(usage_records.c.project_id == project)
            return [dict(row._mapping) for row in connection.execute(query)]
    finally:
        engine.dispose()


def wait_rows(
    gateway: GatewayProcess, project: str, count: int, timeout_s: float = 10.0
) -> list[dict[str, Any]]:
    """The project's usage records, once at least `count` of them are written."""
    deadline = time.monotonic() + timeout_s
    while len(rows := ledger_rows(gateway, project)) < count:
        assert time.monotonic() < deadline, f"{len(rows)} of {count} usage records written"
        time.sleep(0.05)
    return rows


def request_record(
    gateway: GatewayProcess, request_id: str, timeout_s: float = 10.0
) -> dict[str, Any]:
    """The one usage record of a request (whatever its project), once it is written; fails if
    there is none by then, or more than one."""
    engine = sa.create_engine(f"sqlite:///{gateway.data_dir / 'modelyard.db'}")
    query = sa.select(usage_records).where(usage_records.c.request_id == request_id)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            with engine.connect() as connection:
                rows = [dict(row._mapping) for row in connection.execute(query)]
            if rows:
                (row,) = rows
                return row
            assert time.monotonic() < deadline, f"no usage record for {request_id}"
            time.sleep(0.05)
    finally:
        engine.dispose()
