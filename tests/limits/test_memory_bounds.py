"""The in-process store's memory is bounded by its windows, not by how many requests it saw:
deadlines keep one heap entry per name however often they move, settled ids are capped, and a
steady stream of requests (each leasing, logging, reserving, finishing and settling) reaches a
steady size once the longest window has turned over."""

from __future__ import annotations

import random
import tracemalloc

import pytest
from tests.limits.conftest import FakeClock

from modelyard.limits.deadlines import Deadlines
from modelyard.limits.errors import ReservationSettled
from modelyard.limits.memory_store import MemoryCounterStore
from modelyard.limits.values import Admitted, BudgetLimit, LeaseRequest, RateWindow

pytestmark = pytest.mark.anyio


def test_deadlines_pop_exactly_what_a_plain_dictionary_says_is_due() -> None:
    rng = random.Random(7)
    for _ in range(200):
        deadlines, model, now = Deadlines(), {}, 0
        for _ in range(200):
            name, roll = f"n{rng.randrange(6)}", rng.random()
            if roll < 0.6:
                at = now + rng.randrange(1, 40)
                deadlines.set(name, at)
                model[name] = at
            elif roll < 0.7:
                deadlines.discard(name)
                model.pop(name, None)
            else:
                now += rng.randrange(0, 15)
                due = sorted(name for name, at in model.items() if at <= now)
                assert sorted(deadlines.pop_due(now)) == due
                for name in due:
                    del model[name]
            assert len(deadlines) == len(model)


def test_a_deadline_moved_later_on_every_request_keeps_one_heap_entry() -> None:
    deadlines = Deadlines()
    for at in range(1, 50_001):
        deadlines.set("rpm:key:k", at + 60)
    assert len(deadlines._heap) == 1
    assert deadlines.pop_due(50_000) == []
    assert deadlines.pop_due(50_060) == ["rpm:key:k"]


async def test_settled_ids_are_capped_newest_kept() -> None:
    store = MemoryCounterStore(settled_max=100)
    budgets = [BudgetLimit("budget:k:day", 10**12)]
    for index in range(300):
        await store.reserve(f"r{index}", budgets, 1, "owner")
        await store.settle(f"r{index}", 1)
    with pytest.raises(ReservationSettled):
        await store.reserve("r299", budgets, 1, "owner")
    assert (await store.reserve("r0", budgets, 1, "owner")).created  # forgotten: the cap


async def test_steady_requests_reach_a_steady_size() -> None:
    clock = FakeClock()
    store = MemoryCounterStore(clock, settled_max=2_000)
    lease = LeaseRequest("concurrency:key:k", 100, 600)
    windows = [
        RateWindow("rpm:key:k", 10**9, 1),
        RateWindow("tpm:key:k", 10**12, 50),
        RateWindow("rpm:project:p", 10**9, 1),
        RateWindow("tpm:project:p", 10**12, 50),
    ]
    budgets = [BudgetLimit(f"budget:{scope}:day", 10**12) for scope in ("key:k", "project:p")]
    sequence = 0

    async def requests(count: int) -> None:
        nonlocal sequence
        for _ in range(count):
            sequence += 1
            request_id = f"{sequence:024x}"
            admitted = await store.admit_request(
                request_id,
                lease=lease,
                windows=windows,
                budgets=budgets,
                amount_micros=10,
                owner="owner",
            )
            assert isinstance(admitted, Admitted)
            await store.finish_request(
                request_id,
                lease_key=lease.key,
                tpm_adjustments=[("tpm:key:k", 40), ("tpm:project:p", 40)],
            )
            await store.settle_many([(request_id, 8)])
            await clock.advance(0.02)  # 50 requests/s: 3,000 in every 60 s window

    # Traced from the start: what the store holds at any time was allocated while tracing.
    tracemalloc.start()
    try:
        await requests(7_000)  # 140 s: every window has turned over, the settled ids are capped
        steady = tracemalloc.get_traced_memory()[0]
        await requests(12_000)  # four minutes more
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    # Growing with requests, it would be at least 12,000 x ~100 bytes (one id each) more.
    assert after - steady < 100_000, (steady, after)
