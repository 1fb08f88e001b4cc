"""The ledger writer against a real SQLite database that goes away and comes back: every record
is written exactly once, settled exactly once, and slots refuse new work when the backlog is
full."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Sequence
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from modelyard.db.engine import open_database
from modelyard.db.schema import usage_records
from modelyard.ledger.records import UsageRecord
from modelyard.ledger.store import LedgerStore
from modelyard.ledger.writer import LedgerWriter
from tests.ledger.test_cost_and_store import record


@pytest.fixture()
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_no_record_is_lost_or_doubled_while_the_database_is_away(tmp_path: Path) -> None:
    engine = open_database(f"sqlite:///{tmp_path / 'ledger.db'}")
    settled: collections.Counter[str] = collections.Counter()

    async def on_written(records: Sequence[UsageRecord]) -> None:
        settled.update(r.request_id for r in records)

    writer = LedgerWriter(
        LedgerStore(engine), on_written, capacity=1000, batch_size=50, max_backoff_s=0.2
    )
    writer.start()
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE usage_records RENAME TO usage_records_away"))
    for i in range(600):
        assert writer.claim_slot()
        writer.submit(record(f"r{i}"))
        if i % 100 == 0:
            await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)
    assert writer.failures > 0, "the outage was not noticed"
    assert len(settled) == 0, "nothing may be settled before it is written"
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE usage_records_away RENAME TO usage_records"))
    assert await writer.close(deadline_s=20) == 0
    with engine.connect() as connection:
        count = connection.execute(select(func.count()).select_from(usage_records)).scalar_one()
    assert count == 600
    assert len(settled) == 600 and set(settled.values()) == {1}
    assert writer.pending() == 0


@pytest.mark.anyio
async def test_a_full_backlog_refuses_new_slots_until_records_are_written(tmp_path: Path) -> None:
    engine = open_database(f"sqlite:///{tmp_path / 'ledger.db'}")

    async def on_written(records: Sequence[UsageRecord]) -> None:
        return None

    writer = LedgerWriter(LedgerStore(engine), on_written, capacity=3)
    assert [writer.claim_slot() for _ in range(4)] == [True, True, True, False]
    writer.release_slot()
    assert writer.claim_slot()
    writer.start()
    for i in range(3):
        writer.submit(record(f"r{i}"))
    assert await writer.close(deadline_s=10) == 0
    assert writer.claim_slot()
