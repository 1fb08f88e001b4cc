"""The two stores give the same answers to the same random sequence of calls.

All the calls fall well inside one 60 s window, so only the times in the answers can differ (the
memory store's clock stands still, Redis's moves on by milliseconds): those are compared within
a second, everything else exactly.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace
from uuid import uuid4

import pytest
from tests.limits.conftest import FakeClock, RedisServer

from modelyard.limits.errors import ReservationSettled
from modelyard.limits.memory_store import MemoryCounterStore
from modelyard.limits.redis_store import RedisCounterStore
from modelyard.limits.store import CounterStore
from modelyard.limits.values import (
    Admitted,
    BudgetLimit,
    OpenReservation,
    RateWindow,
    Throttled,
)

pytestmark = pytest.mark.anyio


def without_times(answer: object) -> object:
    if isinstance(answer, Throttled) and answer.retry_after_s is not None:
        return replace(answer, retry_after_s=round(answer.retry_after_s))
    if isinstance(answer, Admitted):
        return [replace(w, reset_after_s=round(w.reset_after_s)) for w in answer.windows]
    if isinstance(answer, list):
        return [
            (r.reservation_id, r.owner, r.amount_micros, r.budget_keys)
            for r in answer
            if isinstance(r, OpenReservation)
        ]
    return answer


async def test_memory_and_redis_agree_on_a_random_sequence(redis_server: RedisServer) -> None:
    memory = MemoryCounterStore(FakeClock())
    shared = RedisCounterStore(redis_server.url, prefix=f"test:{uuid4().hex}:")
    budget_keys, rate_keys = ["k:day", "p:day", "p:month"], ["k:rpm", "k:tpm", "p:rpm"]

    async def call(store: CounterStore, step: int) -> object:
        # The same seed per step gives both stores the same call.
        pick = random.Random(step)
        action = pick.choice(["reserve", "settle", "admit", "adjust", "enter", "leave", "state"])
        reservation = f"r{pick.randrange(step // 2 + 3)}"
        if action == "reserve":
            budgets = [BudgetLimit(k, 5000) for k in pick.sample(budget_keys, pick.randint(1, 3))]
            try:
                return await store.reserve(reservation, budgets, pick.randrange(800), "a")
            except ReservationSettled:
                return "settled"
        if action == "settle":
            return await store.settle(reservation, pick.randrange(900))
        if action == "admit":
            keys = pick.sample(rate_keys, pick.randint(1, 3))
            windows = [
                RateWindow(k, 40 if "rpm" in k else 4000, pick.randint(1, 400)) for k in keys
            ]
            return await store.admit(f"q{pick.randrange(step + 1)}", windows)
        if action == "adjust":
            return await store.adjust(f"q{pick.randrange(step + 1)}", "k:tpm", pick.randrange(500))
        if action == "enter":
            return await store.enter("k", 3, f"l{pick.randrange(6)}", 30)
        if action == "leave":
            return await store.leave("k", f"l{pick.randrange(6)}")
        return [await store.budget_state(k) for k in budget_keys] + [
            await store.open_reservations(pick.choice([None, "a"]))
        ]

    seen: Counter[str] = Counter()
    try:
        for step in range(400):
            answers = [without_times(await call(store, step)) for store in (memory, shared)]
            assert answers[0] == answers[1], f"step {step}"
            seen[type(answers[0]).__name__ if answers[0] is not False else "False"] += 1
    finally:
        await shared.aclose()
    # The sequence reaches the refusals, not only the easy answers.
    assert min(seen[name] for name in ("OverBudget", "Throttled", "str", "False")) >= 5, seen
