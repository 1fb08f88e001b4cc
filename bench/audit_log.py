"""Audit log throughput on SQLite: synchronous appends, the background writer, and verify.

Owns one benchmark, on a fresh SQLite file in a temporary directory (WAL, as `open_database`
sets it up). It measures:

- **sync append**: `AuditLog.append`, one transaction per record, as an admin mutation pays;
- **writer submit**: the cost to the caller (the request path) of offering an event to the audit
  `BackgroundWriter`, as the gateway does for refusals;
- **writer batch**: records per second from the first offer until `stop` has written them all;
- **verify**: records per second `AuditLog.verify` recomputes, over a log of `--rows` records
  inserted directly with `chained_record` (appending that many one by one takes longer).

There are no targets; the exit status is non-zero only when the benchmark could not run.

Run: `.venv/bin/python bench/audit_log.py [--appends 2000] [--events 50000] [--rows 500000]`
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, insert

from modelyard.audit.events import AuditEvent, chained_record
from modelyard.audit.log import AuditLog
from modelyard.db.background_writer import BackgroundWriter
from modelyard.db.engine import open_database
from modelyard.db.schema import audit_events


def event(n: int) -> AuditEvent:
    return AuditEvent(
        actor="myd-abcdefgh1234-…",
        action="models.use",
        object=f"model:m{n % 17}",
        outcome="denied",
        reason="role viewer on project p1 lacks models.use",
        project_id="p1",
        client_ip="10.0.0.1",
        request_id=f"req-{n:012d}",
    )


def bench_sync_append(engine: Engine, count: int) -> float:
    audit = AuditLog(engine)
    start = time.perf_counter()
    for n in range(count):
        audit.append(event(n))
    return count / (time.perf_counter() - start)


async def bench_writer(engine: Engine, count: int) -> tuple[float, float]:
    audit = AuditLog(engine)
    writer = BackgroundWriter("audit log", audit.append_batch, capacity=count)
    writer.start()
    start = time.perf_counter()
    for n in range(count):
        if not writer.offer(audit.stamped(event(n))):
            raise SystemExit("the writer refused an event below its capacity")
    submitted = time.perf_counter()
    unwritten = await writer.stop(deadline_s=300)
    if unwritten:
        raise SystemExit(f"the writer left {unwritten} events unwritten")
    done = time.perf_counter()
    return (submitted - start) / count * 1e6, count / (done - start)


def bench_verify(engine: Engine, rows: int) -> float:
    audit = AuditLog(engine)
    before = audit.verify()
    head, first = before.head_hash, before.records + 1
    at = datetime.now(UTC)
    with engine.begin() as connection:
        batch = []
        for seq in range(first, first + rows):
            record = chained_record(
                event(seq), seq=seq, at=at + timedelta(microseconds=seq), prev_hash=head
            )
            batch.append(record)
            head = record["hash"]
            if len(batch) == 10_000:
                connection.execute(insert(audit_events), batch)
                batch = []
        if batch:
            connection.execute(insert(audit_events), batch)
    start = time.perf_counter()
    report = audit.verify(expected_head=head)
    elapsed = time.perf_counter() - start
    if not report.ok:
        raise SystemExit(f"verify found a problem in an untouched log: {report.problem}")
    return report.records / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--appends", type=int, default=2000)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--rows", type=int, default=500_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        engine = open_database(f"sqlite:///{Path(directory) / 'audit.db'}")
        try:
            sync_rate = bench_sync_append(engine, args.appends)
            submit_us, writer_rate = asyncio.run(bench_writer(engine, args.events))
            verify_rate = bench_verify(engine, args.rows)
        finally:
            engine.dispose()
    print(f"sync append    {sync_rate:>12,.0f} appends/s  ({args.appends} records)")
    print(f"writer submit  {submit_us:>12,.1f} µs/event   (caller's cost)")
    print(f"writer batch   {writer_rate:>12,.0f} appends/s  ({args.events} records)")
    total = args.rows + args.appends + args.events
    print(f"verify         {verify_rate:>12,.0f} records/s  ({total} records)")


if __name__ == "__main__":
    main()
