"""Budgets on both stores: all-or-nothing reservations, exactly-once settlement, the invariant
between budgets and open reservations, windows that expire, and reconciliation after a crash."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

import pytest
from tests.limits.conftest import Counters

from modelyard.limits.errors import ReservationSettled
from modelyard.limits.store import CounterStore
from modelyard.limits.values import BudgetLimit, BudgetState, OverBudget, Reserved

pytestmark = pytest.mark.anyio


async def assert_reserved_matches_open(store: CounterStore, keys: list[str]) -> None:
    """The invariant: each budget's `reserved` is the sum of the open reservations on it."""
    open_now = await store.open_reservations()
    for key in keys:
        expected = sum(r.amount_micros for r in open_now if key in r.budget_keys)
        assert (await store.budget_state(key)).reserved_micros == expected, key


async def test_reserve_holds_the_amount_on_every_budget(counters: Counters) -> None:
    store = counters.store
    budgets = [BudgetLimit("key:day", 1000), BudgetLimit("project:month", 5000)]
    assert await store.reserve("r1", budgets, 300, "replica-a") == Reserved("r1", created=True)
    assert await store.budget_state("key:day") == BudgetState(0, 300)
    assert await store.budget_state("project:month") == BudgetState(0, 300)


async def test_reserve_is_all_or_nothing_across_budgets(counters: Counters) -> None:
    store = counters.store
    await store.reserve("r1", [BudgetLimit("project", 1000)], 800, "a")
    budgets = [BudgetLimit("key", 10_000), BudgetLimit("project", 1000)]
    refused = await store.reserve("r2", budgets, 300, "a")
    assert refused == OverBudget("project", 1000, 200, 300)
    assert "budget 'project' has 200 of 1000" in refused.reason
    assert await store.budget_state("key") == BudgetState(0, 0)
    assert await store.budget_state("project") == BudgetState(0, 800)
    assert [r.reservation_id for r in await store.open_reservations()] == ["r1"]


async def test_reserve_refuses_only_past_the_limit(counters: Counters) -> None:
    store = counters.store
    budget = [BudgetLimit("b", 1000)]
    assert isinstance(await store.reserve("r1", budget, 600, "a"), Reserved)
    assert isinstance(await store.reserve("r2", budget, 400, "a"), Reserved)
    assert await store.reserve("r3", budget, 1, "a") == OverBudget("b", 1000, 0, 1)
    assert isinstance(await store.reserve("r4", budget, 0, "a"), Reserved)


async def test_reserve_is_idempotent_for_same_reservation_id(counters: Counters) -> None:
    store = counters.store
    budget = [BudgetLimit("b", 1000)]
    await store.reserve("r1", budget, 600, "a")
    # Even with another amount, or one that would not fit, the open reservation stands as it is.
    assert await store.reserve("r1", budget, 900, "a") == Reserved("r1", created=False)
    assert await store.budget_state("b") == BudgetState(0, 600)


async def test_settle_counts_once_and_releases_the_rest(counters: Counters) -> None:
    store = counters.store
    budgets = [BudgetLimit("key", 1000), BudgetLimit("project", 1000)]
    await store.reserve("r1", budgets, 700, "a")
    assert await store.settle("r1", 250) is True
    assert await store.settle("r1", 250) is False
    assert await store.settle("never-reserved", 5) is False
    for key in ("key", "project"):
        assert await store.budget_state(key) == BudgetState(250, 0)
    assert await store.open_reservations() == []


async def test_settle_counts_more_than_reserved_when_billed_more(counters: Counters) -> None:
    store = counters.store
    await store.reserve("r1", [BudgetLimit("b", 1000)], 100, "a")
    await store.settle("r1", 1500)
    assert await store.budget_state("b") == BudgetState(1500, 0)
    assert await store.reserve("r2", [BudgetLimit("b", 1000)], 0, "a") == OverBudget(
        "b", 1000, 0, 0
    )


async def test_reserving_a_settled_id_again_is_refused(counters: Counters) -> None:
    store = counters.store
    await store.reserve("r1", [BudgetLimit("b", 1000)], 100, "a")
    await store.settle("r1", 100)
    with pytest.raises(ReservationSettled):
        await store.reserve("r1", [BudgetLimit("b", 1000)], 100, "a")
    assert await store.budget_state("b") == BudgetState(100, 0)


async def test_a_budget_window_expires_with_its_counters(counters: Counters) -> None:
    store = counters.store
    now = datetime.now(UTC) if counters.kind == "redis" else datetime.fromtimestamp(1.8e9, UTC)
    day = BudgetLimit("key:day", 1000, expires_at=now + timedelta(seconds=0.5))
    total = BudgetLimit("key:total", 5000)
    await store.reserve("r1", [day, total], 900, "a")
    await store.settle("r1", 900)
    assert isinstance(await store.reserve("r2", [day, total], 200, "a"), OverBudget)
    await store.reserve("r3", [day, total], 100, "a")
    await counters.advance(0.6)
    assert await store.budget_state("key:day") == BudgetState(0, 0)
    # Settling into a window that has ended counts nothing there, and does not revive it.
    assert await store.settle("r3", 100) is True
    assert await store.budget_state("key:day") == BudgetState(0, 0)
    assert await store.budget_state("key:total") == BudgetState(1000, 0)


async def test_reserved_equals_the_open_reservations_on_each_budget(counters: Counters) -> None:
    store = counters.store
    rng = random.Random(7)
    keys = [f"budget-{n}" for n in range(4)]
    open_ids: list[str] = []
    for n in range(120):
        if open_ids and rng.random() < 0.4:
            await store.settle(open_ids.pop(rng.randrange(len(open_ids))), rng.randrange(50))
        else:
            chosen = rng.sample(keys, rng.randint(1, 3))
            budgets = [BudgetLimit(key, 2000) for key in chosen]
            if isinstance(await store.reserve(f"r{n}", budgets, rng.randrange(100), "a"), Reserved):
                open_ids.append(f"r{n}")
        if n % 20 == 0:
            await assert_reserved_matches_open(store, keys)
    await assert_reserved_matches_open(store, keys)


async def test_a_restarted_replica_finds_what_it_left_open(counters: Counters) -> None:
    store = counters.store
    budgets = [BudgetLimit("key", 10_000), BudgetLimit("project", 10_000)]
    await store.reserve("a-1", budgets, 100, "replica-a")
    await counters.advance(0.002)
    await store.reserve("b-1", budgets, 200, "replica-b")
    await counters.advance(0.002)
    await store.reserve("a-2", budgets[:1], 300, "replica-a")
    await store.settle("a-1", 90)
    # Replica a crashes with a-2 open; its successor opens a new store on the same counters.
    successor = counters.reopen()
    left = await successor.open_reservations("replica-a")
    assert [(r.reservation_id, r.owner, r.amount_micros, r.budget_keys) for r in left] == [
        ("a-2", "replica-a", 300, ("key",))
    ]
    assert left[0].created_at.tzinfo is not None
    assert [r.reservation_id for r in await successor.open_reservations()] == ["b-1", "a-2"]
    assert await successor.settle("a-2", 0) is True
    assert await successor.open_reservations("replica-a") == []
    assert await successor.budget_state("key") == BudgetState(90, 200)
    await assert_reserved_matches_open(successor, ["key", "project"])


async def test_concurrent_reservations_never_overspend(counters: Counters) -> None:
    """200 requests race for a budget that holds 50 worst cases; each costs 98-100% of it."""
    store = counters.store
    worst = 10_000
    budget = [BudgetLimit("shared", 50 * worst)]
    actual = [worst - (n * 7) % 200 for n in range(200)]
    admitted: list[int] = []

    async def request(n: int) -> None:
        await asyncio.sleep(random.random() * 0.05)
        if isinstance(await store.reserve(f"req-{n}", budget, worst, "a"), Reserved):
            admitted.append(n)
            await asyncio.sleep(random.random() * 0.01)
            assert await store.settle(f"req-{n}", actual[n])
            assert not await store.settle(f"req-{n}", actual[n])

    async with asyncio.timeout(30):
        await asyncio.gather(*(request(n) for n in range(200)))
    state = await store.budget_state("shared")
    assert state == BudgetState(sum(actual[n] for n in admitted), 0)
    assert state.spent_micros <= 50 * worst
    # A serial ledger admits while what was spent leaves room for one more worst case.
    spent, exact = 0, 0
    for cost in actual:
        if spent + worst <= 50 * worst:
            spent += cost
            exact += 1
    assert abs(len(admitted) - exact) <= 0.05 * exact
