"""The three background writers (usage ledger, content log, audit log) against real SQLite
files that go away and come back: nothing is lost or written twice, however long the outage, a
full backlog refuses new work instead of writing on the caller's thread, and the event loop
never waits on the database."""

from __future__ import annotations

import asyncio
import collections
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, func, select, text

from modelyard.app import create_app
from modelyard.audit.content_log import ContentLog, ContentRecord
from modelyard.audit.events import AuditEvent
from modelyard.audit.log import AuditLog
from modelyard.db.background_writer import BackgroundWriter
from modelyard.db.engine import open_database
from modelyard.db.schema import audit_events, content_log, projects, usage_records
from modelyard.ledger.records import UsageRecord
from modelyard.ledger.store import LedgerStore
from modelyard.settings import Settings
from modelyard.state import AppState
from tests.ledger.test_cost_and_store import record
from tests.remote.fixtures import remote_catalog

OUTAGE_S = 300.0


@pytest.fixture()
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture()
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = open_database(f"sqlite:///{tmp_path / 'modelyard.db'}")
    with engine.begin() as connection:
        connection.execute(
            projects.insert().values(id="p1", created_at=datetime.now(UTC), created_by="admin")
        )
    yield engine
    engine.dispose()


class VirtualClock:
    """The writer's backoff sleeps in virtual time, so a five-minute outage passes in a moment;
    the database really is away until the clock has passed `OUTAGE_S`."""

    def __init__(self, engine: Engine, table: str) -> None:
        self.now = 0.0
        self._engine = engine
        self._table = table
        self.restored = False
        self.sleeps = 0

    def take_away(self) -> None:
        with self._engine.begin() as connection:
            connection.execute(text(f"ALTER TABLE {self._table} RENAME TO {self._table}_away"))

    async def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        self.now += seconds
        if self.now >= OUTAGE_S and not self.restored:
            with self._engine.begin() as connection:
                connection.execute(text(f"ALTER TABLE {self._table}_away RENAME TO {self._table}"))
            self.restored = True
        await asyncio.sleep(0)


def count(engine: Engine, table: Any) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(table)).scalar_one())


def denial(n: int) -> AuditEvent:
    return AuditEvent(
        actor="anonymous",
        action="auth.login",
        object="POST /v1/chat/completions",
        outcome="failed",
        reason="invalid API key",
        project_id=None,
        client_ip="10.0.0.1",
        request_id=f"req-{n}",
    )


def content(n: int) -> ContentRecord:
    return ContentRecord("p1", f"req-{n}", "m", [{"role": "user", "content": "hi"}], [], 7)


async def outlive_an_outage(
    engine: Engine, table: str, write: Callable[[Sequence[Any]], object], items: list[Any]
) -> tuple[BackgroundWriter[Any], VirtualClock]:
    clock = VirtualClock(engine, table)
    writer: BackgroundWriter[Any] = BackgroundWriter(
        table, write, capacity=len(items), batch_size=50, sleep=clock.sleep
    )
    writer.start()
    clock.take_away()
    for n, item in enumerate(items):
        assert writer.offer(item)
        if n % 100 == 0:
            await asyncio.sleep(0.01)
    assert await writer.stop(deadline_s=60) == 0
    return writer, clock


@pytest.mark.anyio
async def test_no_audit_record_is_dropped_in_a_five_minute_outage(engine: Engine) -> None:
    audit = AuditLog(engine)
    events = [audit.stamped(denial(n)) for n in range(600)]
    writer, clock = await outlive_an_outage(engine, "audit_events", audit.append_batch, events)
    assert clock.now >= OUTAGE_S and clock.restored
    assert writer.failures == clock.sleeps and writer.failures > 100
    assert count(engine, audit_events) == 600
    with engine.connect() as connection:
        ids = connection.execute(select(audit_events.c.request_id)).scalars().all()
    assert sorted(ids) == sorted(f"req-{n}" for n in range(600))
    assert audit.verify().ok


@pytest.mark.anyio
async def test_no_content_record_is_dropped_in_a_five_minute_outage(engine: Engine) -> None:
    store = ContentLog(engine)
    records = [content(n) for n in range(400)]
    writer, clock = await outlive_an_outage(engine, "content_log", store.write, records)
    assert clock.restored and writer.failures > 100
    with engine.connect() as connection:
        ids = connection.execute(select(content_log.c.request_id)).scalars().all()
    assert sorted(ids) == sorted(f"req-{n}" for n in range(400))


@pytest.mark.anyio
async def test_no_usage_record_is_lost_or_settled_twice_while_the_database_is_away(
    engine: Engine,
) -> None:
    settled: collections.Counter[str] = collections.Counter()

    async def settle(records: Sequence[UsageRecord]) -> None:
        settled.update(r.request_id for r in records)

    clock = VirtualClock(engine, "usage_records")
    writer = BackgroundWriter(
        "usage ledger",
        LedgerStore(engine).write,
        capacity=1000,
        batch_size=50,
        after_write=settle,
        sleep=clock.sleep,
    )
    writer.start()
    clock.take_away()
    for i in range(600):
        assert writer.claim()
        writer.submit(record(f"r{i}"))
    while not clock.restored:
        assert not settled, "nothing may be settled before it is written"
        await asyncio.sleep(0.01)
    assert await writer.stop(deadline_s=20) == 0
    assert count(engine, usage_records) == 600
    assert len(settled) == 600 and set(settled.values()) == {1}
    assert writer.backlog() == 0


@pytest.mark.anyio
async def test_a_full_backlog_refuses_until_items_are_written(engine: Engine) -> None:
    writer = BackgroundWriter("usage ledger", LedgerStore(engine).write, capacity=3)
    assert [writer.claim() for _ in range(4)] == [True, True, True, False]
    assert writer.refused == 1
    writer.release()
    assert writer.claim() and not writer.offer(record("extra"))
    assert writer.refused == 2
    writer.start()
    for i in range(3):
        writer.submit(record(f"r{i}"))
    assert await writer.stop(deadline_s=10) == 0
    assert writer.backlog() == 0 and writer.offer(record("after"))


@pytest.mark.anyio
async def test_a_stalled_database_never_stalls_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database is write-locked by another process for the whole test (every write waits
    out SQLite's 30 s busy timeout); clients with a wrong key keep coming. Refusals are queued
    for the audit log until its backlog is full, then answered 503 and counted; the loop keeps
    ticking throughout."""
    for name in [name for name in os.environ if name.startswith("MODELYARD_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("ACME_KEY", "sk-x")
    catalog = remote_catalog(tmp_path / "catalog.yaml", "http://127.0.0.1:9/v1")
    settings = Settings(
        data_dir=tmp_path / "data",
        catalog=catalog,
        admin_key="admin-key-0123456789abcdef",
        writer_backlog=20,
        audit_failed_logins_per_minute=1000,
    )
    app = create_app(settings)
    state: AppState = app.state.modelyard
    holder = sqlite3.connect(tmp_path / "data" / "modelyard.db", isolation_level=None)
    stalls: list[float] = []
    statuses: collections.Counter[tuple[int, str]] = collections.Counter()

    async def tick() -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(0.005)
            stalls.append(loop.time() - before - 0.005)

    async with app.router.lifespan_context(app):
        holder.execute("BEGIN IMMEDIATE")  # hold the write lock: every write now waits
        ticker = asyncio.get_running_loop().create_task(tick())
        transport = httpx.ASGITransport(app=app, client=("10.9.8.7", 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            for _ in range(4):
                replies = await asyncio.gather(
                    *(
                        client.get("/v1/models", headers={"Authorization": "Bearer wrong"})
                        for _ in range(25)
                    )
                )
                for reply in replies:
                    statuses[(reply.status_code, reply.json()["error"]["code"])] += 1
        ticker.cancel()
        holder.execute("ROLLBACK")
        audit_backlog = state.audit_writer.backlog()
        refused = state.audit_writer.refused
    holder.close()
    longest = max(stalls)
    print(f"longest event-loop stall under a locked database: {longest * 1000:.1f} ms")
    assert statuses[(401, "invalid_api_key")] == 20
    assert statuses[(503, "backlog_full")] == 80 == refused
    assert audit_backlog == 20
    assert longest < 1.0, f"the loop stalled {longest:.2f} s: something wrote on it"
    engine = open_database(settings.database())
    try:
        with engine.connect() as connection:
            logins = connection.execute(
                select(func.count()).where(audit_events.c.action == "auth.login")
            ).scalar_one()
        assert logins == 20  # the queued ones, written once the database was free
    finally:
        engine.dispose()
