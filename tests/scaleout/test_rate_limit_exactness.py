"""Acceptance: a key limited to 600 requests per minute, hammered by 200 clients for 130 s (more
than two full windows), on one process and on two replicas at once (different keys, so the two
runs share the wall time; the limit keeps the admitted rate at 10/s per run). Runtime: ~140 s.

Clients honour Retry-After (plus up to 250 ms of jitter) and ask again at once after a success.
Every admitted request must have one usage record. Times are the gateway's, never the clients':

- No 60 s window starting at any admitted request holds more than 600 of them, by the records'
  `created_at` and, for two replicas, also by the times the shared limiter logged (read from its
  Redis log during the run). A record carries the counter store's own admission time, so the two
  agree (checked directly below, with Redis paused mid-request).
- In steady state the limiter gives back every slot it frees: each whole minute after the first
  (counted from the first admission, up to when the clients stopped) admits at least 98%.

The fewest admitted in any sliding window after the first minute is printed, not asserted: it
measures the clients. The first minute opens with 200 requests admitted within a quarter of a
second; a minute later their slots free up at that pace while the clients, asleep on
whole-second Retry-After values, come back over the next second, so a window starting inside
such a burst misses the slots not yet taken again (5-15% here).
"""

from __future__ import annotations

import asyncio
import bisect
import random
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.scaleout.counters_view import read_rate_log, watch_rate_log
from tests.scaleout.ledger_view import wait_for_rows
from tests.scaleout.topology import Key, Topology, new_key
from tests.scaleout.traffic import Reply, async_client, post_chat
from tests.support.services import RedisServer

RPM = 600
CLIENTS = 200
DURATION_S = 130.0
JITTER_S = 0.25
WINDOW = timedelta(seconds=60)
STEADY_SHARE = 0.98
CHAT: dict[str, Any] = {
    "model": "acme-small",
    "messages": [{"role": "user", "content": "Once more, please."}],
    "max_tokens": 8,
}


@dataclass(frozen=True)
class Run:
    topology: Topology
    key: Key
    replies: list[Reply]
    # Request id -> when the shared limiter logged it; empty for in-process counters.
    logged: dict[str, datetime]


async def keep_requesting(
    client: httpx.AsyncClient, topology: Topology, index: int, key: Key, stop_at: float
) -> list[Reply]:
    jitter = random.Random(index)
    replies: list[Reply] = []
    while time.monotonic() < stop_at:
        reply = await post_chat(client, topology.gateway(index), key.secret, CHAT)
        replies.append(reply)
        if reply.status != 200:
            pause = reply.retry_after_s if reply.status == 429 else 1.0
            pause += jitter.uniform(0, JITTER_S)
            await asyncio.sleep(min(pause, max(stop_at - time.monotonic(), 0)))
    return replies


async def hammer(topology: Topology, key: Key, stop_at: float) -> Run:
    stop = asyncio.Event()
    watching = None
    if topology.redis_url is not None:
        watching = asyncio.create_task(
            watch_rate_log(topology.redis_url, f"rpm:key:{key.id}", stop)
        )
    async with async_client(CLIENTS) as client:
        per_client = await asyncio.gather(
            *(keep_requesting(client, topology, i, key, stop_at) for i in range(CLIENTS))
        )
    stop.set()
    logged = {} if watching is None else await watching
    return Run(topology, key, [reply for replies in per_client for reply in replies], logged)


async def hammer_both(runs: list[tuple[Topology, Key]]) -> tuple[list[Run], datetime]:
    stopped_at = datetime.now(UTC) + timedelta(seconds=DURATION_S)
    stop_at = time.monotonic() + DURATION_S
    done = await asyncio.gather(*(hammer(topology, key, stop_at) for topology, key in runs))
    return list(done), stopped_at


def counts_per_window(times: list[datetime]) -> list[int]:
    """For each time t (sorted), how many fall in [t, t + 60 s)."""
    return [bisect.bisect_left(times, t + WINDOW) - i for i, t in enumerate(times)]


def whole_minutes(times: list[datetime], stopped_at: datetime) -> list[int]:
    """Admitted per minute after the first, minutes counted from the first admission."""
    counts = []
    start = times[0] + WINDOW
    while start + WINDOW <= stopped_at:
        counts.append(bisect.bisect_left(times, start + WINDOW) - bisect.bisect_left(times, start))
        start += WINDOW
    return counts


def check(run: Run, stopped_at: datetime) -> None:
    statuses = Counter((r.status, r.code or r.transport_error) for r in run.replies)
    admitted = {r.request_id for r in run.replies if r.status == 200}
    # A reply the client never read (its connection reset: seen about once in 4,000 requests
    # on a loaded 2-core machine, cause not found yet) may still have been admitted and billed;
    # it must then be recorded like any other, and it counts against the windows below.
    unanswered = sum(count for (status, _), count in statuses.items() if status == 0)
    assert {outcome for outcome in statuses if outcome[0] != 0} <= {
        (200, ""),
        (429, "rate_limited"),
    }, statuses
    assert unanswered <= len(run.replies) // 1000, statuses
    rows = wait_for_rows(run.topology.database_url, len(admitted), key_id=run.key.id)
    recorded_ids = {row["request_id"] for row in rows}
    assert len(recorded_ids) == len(rows), "a request recorded twice"
    assert admitted <= recorded_ids
    assert len(recorded_ids - admitted) <= unanswered
    recorded = sorted(row["created_at"] for row in rows)
    by_record = counts_per_window(recorded)
    minutes = whole_minutes(recorded, stopped_at)
    after_first = [
        count
        for t, count in zip(recorded, by_record, strict=True)
        if t >= recorded[0] + WINDOW and t + WINDOW <= stopped_at
    ]
    if run.logged:
        assert set(run.logged) == recorded_ids
        by_limiter = counts_per_window(sorted(run.logged.values()))
    else:
        by_limiter = by_record
    fewest = min(after_first, default=0)
    print(
        f"\n[{run.topology.name}] {statuses[(200, '')]} admitted,"
        f" {statuses[(429, 'rate_limited')]} throttled, {unanswered} unanswered"
        f" in {DURATION_S:.0f} s; most in a sliding"
        f" window: {max(by_limiter)} by the limiter's times, {max(by_record)} by the records';"
        f" whole minutes after the first {minutes}; fewest in a sliding window after the first"
        f" minute {fewest} ({fewest / RPM:.1%})"
    )
    assert max(by_limiter) <= RPM
    assert max(by_record) <= RPM
    assert minutes, "no whole minute after the first"
    assert min(minutes) >= STEADY_SHARE * RPM


def test_six_hundred_per_minute_holds_in_every_sliding_window(
    one_process: Topology, replicas: Topology
) -> None:
    limits = {"requests_per_minute": RPM}
    runs = [
        (topology, new_key(topology, "paced-" + topology.name.replace(" ", "-"), limits))
        for topology in (one_process, replicas)
    ]
    done, stopped_at = asyncio.run(hammer_both(runs))
    for run in done:
        check(run, stopped_at)


def test_a_usage_record_is_timed_when_the_limiter_counted_the_request(
    replicas: Topology, redis_server: RedisServer
) -> None:
    key = new_key(replicas, "timed", {"requests_per_minute": RPM})

    async def one_request_during_a_slow_redis() -> Reply:
        async with async_client(1) as client:
            redis_server.process.send_signal(signal.SIGSTOP)
            threading.Timer(0.3, redis_server.process.send_signal, (signal.SIGCONT,)).start()
            return await post_chat(client, replicas.gateway(0), key.secret, CHAT)

    reply = asyncio.run(one_request_during_a_slow_redis())
    assert reply.status == 200, reply
    (row,) = wait_for_rows(replicas.database_url, 1, key_id=key.id)
    logged = asyncio.run(read_rate_log(replicas.shared_counters, f"rpm:key:{key.id}"))
    skew = logged[reply.request_id] - row["created_at"]
    print(f"\n[record time] the limiter counted the request {skew.total_seconds():.3f} s later")
    assert abs(skew) < timedelta(milliseconds=50)
