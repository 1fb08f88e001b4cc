"""Usage reports over a million usage records: the daily rollup versus aggregating the records.

Owns one benchmark. It writes `--records` usage records (90 days, 50 projects, 500 keys, 8 models)
through `LedgerStore.write`, in batches as the ledger writer does, into a fresh SQLite file (or
`--database-url`), then times the report queries `/admin/usage` runs from the rollups, over all
90 days and over 30 of them, next to the same 30 days' sums computed from `usage_records`, and
checks that both agree. The groupings are those of the console's Usage page (by day and G, by G,
by day; G one of model, key, project, route and arm, deployment) and a few more. Targets: reports
stay fast at a million records (issue 6); each query of the Usage page well under 50 ms over 90
days on SQLite (issue 18, whose page-time target is 100 ms for its three queries).

Run: `.venv/bin/python bench/usage_report.py [--records 1000000] [--database-url URL]`
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select

from modelyard.db.engine import open_database
from modelyard.db.schema import usage_records
from modelyard.ledger.records import UsageRecord
from modelyard.ledger.store import LedgerStore

BATCH = 2_000
# What the console's Usage page asks (api/console/usage.py: by day and G, by G, by day), then
# groupings that only the full rollup serves.
CONSOLE_DIMENSIONS = (["model"], ["key_id"], ["project_id"], ["route", "arm"], ["deployment"])
GROUPINGS = [
    ["day"],
    *(["day", *g] for g in CONSOLE_DIMENSIONS),
    *CONSOLE_DIMENSIONS,
    ["project_id", "model"],
    ["key_id", "model"],
    ["day", "key_id", "model"],
]


def records(count: int, seed: int = 7) -> list[UsageRecord]:
    rng = random.Random(seed)
    start = datetime(2026, 9, 1, tzinfo=UTC)
    out = []
    for i in range(count):
        key = rng.randrange(500)
        prompt, completion = rng.randrange(10, 2000), rng.randrange(1, 800)
        out.append(
            UsageRecord(
                request_id=f"r{i:08d}",
                created_at=start + timedelta(seconds=rng.randrange(90 * 86_400)),
                subject=f"key:{key}",
                key_id=f"k{key:03d}",
                project_id=f"p{key % 50:02d}",
                model=f"m{(model := rng.randrange(8))}",
                deployment=f"d{model}",
                route_reason="bench",
                prompt_tokens=prompt,
                cached_prompt_tokens=0,
                completion_tokens=completion,
                cost_micros=prompt * 3 + completion * 12,
                reserved_micros=prompt * 3 + 800 * 12,
                latency_ms=rng.randrange(50, 5000),
                status=200 if rng.random() > 0.02 else 502,
                outcome="completed",
                client_disconnected=False,
                usage_estimated=False,
            )
        )
    return out


def timed(work: object, repeats: int = 5) -> tuple[float, object]:
    assert callable(work)
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = work()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    url = args.database_url or f"sqlite:///{Path(tempfile.mkdtemp()) / 'usage.db'}"
    engine = open_database(url)
    store = LedgerStore(engine)
    rows = records(args.records)
    started = time.perf_counter()
    for i in range(0, len(rows), BATCH):
        store.write(rows[i : i + BATCH])
    elapsed = time.perf_counter() - started
    rate = len(rows) / elapsed
    print(f"wrote {len(rows)} records in {elapsed:.1f} s ({rate:,.0f} records/s, with rollup)")
    since, until = "2026-10-01", "2026-10-30"
    lo = datetime(2026, 10, 1, tzinfo=UTC)
    hi = datetime(2026, 10, 31, tzinfo=UTC)
    print(f"  {'group by':22s} {'90 days':>10s} {'30 days':>10s} {'records, 30 days':>18s}")
    for group_by in GROUPINGS:
        all_ms, _ = timed(lambda g=group_by: store.daily(g, "2026-09-01", "2026-11-29"))
        rollup_ms, report = timed(lambda g=group_by: store.daily(g, since, until))
        day = (
            func.strftime("%Y-%m-%d", usage_records.c.created_at)
            if engine.dialect.name == "sqlite"
            else func.to_char(usage_records.c.created_at, "YYYY-MM-DD")
        )
        columns = [day.label("day") if g == "day" else usage_records.c[g] for g in group_by]
        raw_query = (
            select(*columns, func.count(), func.sum(usage_records.c.cost_micros))
            .where(usage_records.c.created_at >= lo, usage_records.c.created_at < hi)
            .group_by(*columns)
        )

        def raw(q: object = raw_query) -> list[object]:
            with engine.connect() as connection:
                return list(connection.execute(q))  # type: ignore[call-overload]

        raw_ms, raw_rows = timed(raw, repeats=3)
        assert isinstance(report, list) and isinstance(raw_rows, list)
        same = sum(r["cost_micros"] for r in report) == sum(int(r[-1]) for r in raw_rows)
        print(
            f"  {','.join(group_by):22s} {all_ms:7.2f} ms {rollup_ms:7.2f} ms "
            f"{raw_ms:15.1f} ms   ({len(report)} rows; totals "
            f"{'agree' if same else 'DISAGREE'})"
        )


if __name__ == "__main__":
    main()
