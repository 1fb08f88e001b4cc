"""Reading the shared counters in Redis: budgets the way a replica does, through a
`RedisCounterStore` of the test's own, and a rate window's log straight from Redis. Keys are
composed here from their documented shape (`budget:{scope}:{id}:{period}:{window}`, and
`modelyard:rl:<window>` under the default prefix), not by the gateway's code."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import datetime
from typing import cast

from redis.asyncio import Redis

from modelyard.limits.redis_store import RedisCounterStore
from modelyard.limits.values import BudgetState, OpenReservation, from_epoch_us
from modelyard.policy.spending import Period, window_label


def key_budget_states(redis_url: str, key_id: str, at: datetime) -> dict[Period, BudgetState]:
    """The day, month and total counters of a key, for the windows containing `at`."""

    async def read() -> dict[Period, BudgetState]:
        store = RedisCounterStore(redis_url)
        try:
            return {
                period: await store.budget_state(
                    f"budget:key:{key_id}:{period}:{window_label(period, at)}"
                )
                for period in Period
            }
        finally:
            await store.aclose()

    return asyncio.run(read())


def settled_key_budget_states(
    redis_url: str, key_id: str, at: datetime, timeout_s: float = 15.0
) -> dict[Period, BudgetState]:
    """The counters once no reservation is open on them any more (or as they are at timeout)."""
    deadline = time.monotonic() + timeout_s
    while True:
        states = key_budget_states(redis_url, key_id, at)
        if all(s.reserved_micros == 0 for s in states.values()) or time.monotonic() > deadline:
            return states
        time.sleep(0.1)


def open_reservations(redis_url: str, owner: str) -> list[OpenReservation]:
    async def read() -> list[OpenReservation]:
        store = RedisCounterStore(redis_url)
        try:
            return await store.open_reservations(owner)
        finally:
            await store.aclose()

    return asyncio.run(read())


async def read_rate_log(redis_url: str, window_key: str) -> dict[str, datetime]:
    """When the shared limiter logged each request still in one sliding window (`rl:<key>`, a
    sorted set of request ids scored in µs since the epoch)."""
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        entries = await client.zrange(f"modelyard:rl:{window_key}", 0, -1, withscores=True)
    finally:
        await client.aclose()
    return {
        request_id: from_epoch_us(int(at_us))
        for request_id, at_us in cast(list[tuple[str, float]], entries)
    }


async def watch_rate_log(
    redis_url: str, window_key: str, stop: asyncio.Event, every_s: float = 5.0
) -> dict[str, datetime]:
    """Every request the limiter logged in a window until `stop`: an entry stays 60 s, so
    reading the log every few seconds, and once more after `stop`, sees them all."""
    logged: dict[str, datetime] = {}
    while True:
        logged.update(await read_rate_log(redis_url, window_key))
        if stop.is_set():
            return logged
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)
