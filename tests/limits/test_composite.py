"""The composite operations on both stores: `admit_request` takes a lease, logs rate windows and
reserves budgets all at once or not at all, `finish_request` adjusts and leaves in one step, and
`settle_many` settles a batch as `settle` would each; and the two stores agree on them.

"Holds nothing" is probed without changing anything that is there: `leave` and `adjust` answer
False for a lease or a log entry the request does not have, and budgets are read back.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from tests.limits.conftest import Counters, FakeClock, RedisServer

from modelyard.limits.errors import CounterStoreUnavailable, ReservationSettled
from modelyard.limits.memory_store import MemoryCounterStore
from modelyard.limits.redis_store import SETTLE_CHUNK, RedisCounterStore
from modelyard.limits.store import CounterStore
from modelyard.limits.values import (
    Admitted,
    BudgetLimit,
    BudgetState,
    Finished,
    LeaseRefused,
    LeaseRequest,
    OverBudget,
    RateWindow,
    Reserved,
    Throttled,
)

pytestmark = pytest.mark.anyio

LEASE = LeaseRequest("concurrency:k", 2, 30)
RPM, TPM = RateWindow("rpm:k", 3, 1), RateWindow("tpm:k", 1000, 400)
BUDGETS = [BudgetLimit("budget:k:day", 10_000), BudgetLimit("budget:p:day", 1000)]


async def admit(
    store: CounterStore,
    request_id: str,
    *,
    lease: LeaseRequest | None = LEASE,
    windows: list[RateWindow] | None = None,
    budgets: list[BudgetLimit] | None = None,
    amount: int = 300,
) -> object:
    return await store.admit_request(
        request_id,
        lease=lease,
        windows=[RPM, TPM] if windows is None else windows,
        budgets=BUDGETS if budgets is None else budgets,
        amount_micros=amount,
        owner="replica-a",
    )


async def assert_holds_nothing(store: CounterStore, request_id: str) -> None:
    assert await store.leave(LEASE.key, request_id) is False
    for window in (RPM, TPM):
        assert await store.adjust(request_id, window.key, 0) is False
    assert request_id not in [r.reservation_id for r in await store.open_reservations()]


async def test_admit_request_takes_the_lease_windows_and_reservation(counters: Counters) -> None:
    store = counters.store
    admitted = await admit(store, "r1")
    assert isinstance(admitted, Admitted)
    assert [(w.key, w.limit, w.remaining) for w in admitted.windows] == [
        ("rpm:k", 3, 2),
        ("tpm:k", 1000, 600),
    ]
    assert all(0 < w.reset_after_s <= 60 for w in admitted.windows)
    [reservation] = await store.open_reservations()
    assert (reservation.reservation_id, reservation.owner, reservation.amount_micros) == (
        "r1",
        "replica-a",
        300,
    )
    assert reservation.budget_keys == ("budget:k:day", "budget:p:day")
    for budget in BUDGETS:
        assert await store.budget_state(budget.key) == BudgetState(0, 300)
    # The lease is held under the request id, the windows log it under the request id.
    assert await store.enter(LEASE.key, 2, "other", 30)
    assert not await store.enter(LEASE.key, 2, "third", 30)
    assert await store.adjust("r1", "tpm:k", 100) is True
    assert await store.leave(LEASE.key, "r1") is True


async def test_a_refused_lease_holds_nothing(counters: Counters) -> None:
    store = counters.store
    assert isinstance(await admit(store, "r1"), Admitted)
    assert isinstance(await admit(store, "r2", budgets=[]), Admitted)
    # The windows and budgets would refuse too: the lease is the first step, so it is named.
    refused = await admit(store, "r3", amount=900)
    assert refused == LeaseRefused(LEASE.key, 2)
    assert isinstance(refused, LeaseRefused) and "allows 2 at once" in refused.reason
    await assert_holds_nothing(store, "r3")
    assert await store.budget_state("budget:p:day") == BudgetState(0, 300)


async def test_a_throttled_request_holds_nothing(counters: Counters) -> None:
    store = counters.store
    for n in range(3):
        assert isinstance(await admit(store, f"r{n}", windows=[RPM], budgets=[]), Admitted)
        assert await store.leave(LEASE.key, f"r{n}") is True
    # The RPM window is full and the budget would refuse too: the windows come first.
    refused = await admit(store, "r3", amount=2000)
    assert isinstance(refused, Throttled)
    # The same answer as `admit` alone gives.
    alone = await store.admit("probe", [RPM, TPM])
    assert isinstance(alone, Throttled) and alone.retry_after_s is not None
    assert refused == replace(alone, retry_after_s=refused.retry_after_s)
    assert refused.retry_after_s == pytest.approx(alone.retry_after_s, abs=0.5)
    await assert_holds_nothing(store, "r3")
    for budget in BUDGETS:
        assert await store.budget_state(budget.key) == BudgetState(0, 0)


async def test_an_over_budget_request_holds_nothing(counters: Counters) -> None:
    store = counters.store
    assert isinstance(await admit(store, "r1", lease=None, amount=800), Admitted)
    refused = await admit(store, "r2", amount=300)
    assert refused == OverBudget("budget:p:day", 1000, 200, 300)
    assert refused == await store.reserve("probe", BUDGETS, 300, "replica-a")
    # Unlike entering, admitting and reserving one after another, no window counts it.
    await assert_holds_nothing(store, "r2")
    admitted = await admit(store, "r3", lease=None, budgets=[])
    assert isinstance(admitted, Admitted)
    assert [w.remaining for w in admitted.windows] == [1, 200]
    for budget in BUDGETS:
        assert await store.budget_state(budget.key) == BudgetState(0, 800)


async def test_admit_request_is_idempotent_for_the_same_request_id(counters: Counters) -> None:
    store = counters.store
    one_lease = LeaseRequest(LEASE.key, 1, 30)
    first = await admit(store, "r1", lease=one_lease)
    # Another request fills the budget meanwhile: the open reservation stands as it is.
    await store.reserve("other", BUDGETS, 700, "replica-a")
    again = await admit(store, "r1", lease=one_lease, amount=900)
    assert isinstance(first, Admitted) and isinstance(again, Admitted)
    assert [w.remaining for w in again.windows] == [w.remaining for w in first.windows] == [2, 600]
    assert await store.budget_state("budget:p:day") == BudgetState(0, 1000)
    amounts = {r.reservation_id: r.amount_micros for r in await store.open_reservations()}
    assert amounts == {"r1": 300, "other": 700}
    # The lease was renewed, not taken twice: at a cap of one, no one else gets in.
    assert await admit(store, "r2", lease=one_lease, budgets=[]) == LeaseRefused(LEASE.key, 1)


async def test_admit_request_refuses_a_settled_id_and_holds_nothing(counters: Counters) -> None:
    store = counters.store
    assert isinstance(await admit(store, "r1", lease=None, windows=[]), Admitted)
    assert await store.settle_many([("r1", 250)]) == [True]
    with pytest.raises(ReservationSettled):
        await admit(store, "r1")
    await assert_holds_nothing(store, "r1")
    assert await store.budget_state("budget:p:day") == BudgetState(250, 0)


async def test_admit_request_without_lease_or_windows_only_reserves(counters: Counters) -> None:
    store = counters.store
    assert await admit(store, "r1", lease=None, windows=[]) == Admitted(())
    assert await store.budget_state("budget:k:day") == BudgetState(0, 300)
    assert await store.reserve("r1", BUDGETS, 300, "replica-a") == Reserved("r1", created=False)


async def test_racing_requests_are_admitted_exactly_up_to_the_tightest_limit(
    counters: Counters,
) -> None:
    """40 requests race for a cap of 20, 12 a minute and a budget of 8 worst cases: exactly 8
    get in, and the 32 refused ones leave no lease, log entry or reservation behind."""
    store = counters.store
    lease, rpm = LeaseRequest("cc", 20, 30), RateWindow("rpm", 12, 1)
    budget = [BudgetLimit("shared", 8 * 100)]
    answers: list[object] = []

    async def request(n: int) -> None:
        await asyncio.sleep(random.random() * 0.02)
        answers.append(
            await admit(store, f"q{n}", lease=lease, windows=[rpm], budgets=budget, amount=100)
        )

    async with asyncio.timeout(30):
        await asyncio.gather(*(request(n) for n in range(40)))
    assert sum(isinstance(a, Admitted) for a in answers) == 8
    assert sum(isinstance(a, OverBudget) for a in answers) == 32
    assert await store.budget_state("shared") == BudgetState(0, 800)
    probe = await store.admit("probe", [rpm])
    assert isinstance(probe, Admitted) and probe.windows[0].remaining == 12 - 9
    held = [await store.enter("cc", 20, f"probe-{n}", 30) for n in range(13)]
    assert held == [True] * 12 + [False]


async def test_finish_request_adjusts_and_leaves_at_once(counters: Counters) -> None:
    store = counters.store
    assert isinstance(await admit(store, "r1"), Admitted)
    finished = await store.finish_request(
        "r1", lease_key=LEASE.key, tpm_adjustments=[("tpm:k", 100), ("tpm:other", 5)]
    )
    assert finished == Finished((True, False), left=True)
    admitted = await admit(store, "r2", lease=None, budgets=[])
    assert isinstance(admitted, Admitted) and admitted.windows[1].remaining == 1000 - 100 - 400
    # Again: the amount stays what it was, and there is no lease left to release.
    again = await store.finish_request("r1", lease_key=LEASE.key, tpm_adjustments=[("tpm:k", 100)])
    assert again == Finished((True,), left=False)
    assert await store.finish_request("r1", lease_key=None, tpm_adjustments=[]) == Finished(
        (), left=False
    )
    assert await store.finish_request(
        "unknown", lease_key=LEASE.key, tpm_adjustments=[("tpm:k", 1)]
    ) == Finished((False,), left=False)


async def test_settle_many_settles_each_once(counters: Counters) -> None:
    store = counters.store
    for n in range(3):
        await store.reserve(f"r{n}", BUDGETS, 300, "replica-a")
    settled = await store.settle_many([("r0", 100), ("never", 5), ("r2", 200), ("r0", 100)])
    assert settled == [True, False, True, False]
    for budget in BUDGETS:
        assert await store.budget_state(budget.key) == BudgetState(300, 300)
    assert [r.reservation_id for r in await store.open_reservations()] == ["r1"]
    assert await store.settle_many([("r0", 100), ("r1", 50), ("r2", 200)]) == [False, True, False]
    assert await store.budget_state("budget:p:day") == BudgetState(350, 0)
    assert await store.settle_many([]) == []
    with pytest.raises(ReservationSettled):
        await store.reserve("r2", BUDGETS, 300, "replica-a")


async def test_settle_many_spans_several_scripts(counters: Counters) -> None:
    store = counters.store
    count = 2 * SETTLE_CHUNK + 5
    budget = [BudgetLimit("b", 10**12)]
    for n in range(0, count, 2):
        await store.reserve(f"r{n}", budget, 1000, "replica-a")
    settled = await store.settle_many([(f"r{n}", n) for n in range(count)])
    assert settled == [n % 2 == 0 for n in range(count)]
    assert await store.budget_state("b") == BudgetState(sum(range(0, count, 2)), 0)
    assert await store.open_reservations() == []


async def test_settle_many_counts_nothing_in_a_window_that_has_ended(counters: Counters) -> None:
    store = counters.store
    now = datetime.now(UTC) if counters.kind == "redis" else datetime.fromtimestamp(1.8e9, UTC)
    day = BudgetLimit("key:day", 1000, expires_at=now + timedelta(seconds=0.5))
    total = BudgetLimit("key:total", 5000)
    await store.reserve("r1", [day, total], 100, "a")
    await store.reserve("r2", [total], 100, "a")
    await counters.advance(0.6)
    assert await store.settle_many([("r1", 90), ("r2", 80)]) == [True, True]
    assert await store.budget_state("key:day") == BudgetState(0, 0)
    assert await store.budget_state("key:total") == BudgetState(170, 0)


def comparable(answer: object) -> object:
    """An answer with its times rounded to the second (the two clocks differ by milliseconds)."""
    if isinstance(answer, Throttled) and answer.retry_after_s is not None:
        return replace(answer, retry_after_s=round(answer.retry_after_s))
    if isinstance(answer, Admitted):
        return [replace(w, reset_after_s=round(w.reset_after_s)) for w in answer.windows]
    return answer


async def test_memory_and_redis_agree_on_a_random_sequence(redis_server: RedisServer) -> None:
    memory = MemoryCounterStore(FakeClock())
    shared = RedisCounterStore(redis_server.url, prefix=f"test:{uuid4().hex}:")
    budget_keys = ["k:day", "p:day", "p:month"]

    async def call(store: CounterStore, step: int) -> object:
        pick = random.Random(step)  # the same seed per step gives both stores the same call
        action = pick.choice(["admit", "admit", "finish", "settle", "state"])
        request_id = f"q{pick.randrange(step // 2 + 3)}"
        if action == "admit":
            lease = pick.choice([None, LeaseRequest("cc", 3, 30)])
            windows = [
                RateWindow(k, 20, 1) if "rpm" in k else RateWindow(k, 3000, pick.randint(1, 500))
                for k in pick.sample(["k:rpm", "k:tpm", "p:rpm"], pick.randint(0, 3))
            ]
            budgets = [BudgetLimit(k, 6000) for k in pick.sample(budget_keys, pick.randint(0, 3))]
            try:
                return await store.admit_request(
                    request_id,
                    lease=lease,
                    windows=windows,
                    budgets=budgets,
                    amount_micros=pick.randrange(900),
                    owner="a",
                )
            except ReservationSettled:
                return "settled"
        if action == "finish":
            return await store.finish_request(
                request_id,
                lease_key=pick.choice([None, "cc"]),
                tpm_adjustments=[("k:tpm", pick.randrange(600))][: pick.randint(0, 1)],
            )
        if action == "settle":
            ids = [f"q{pick.randrange(step // 2 + 3)}" for _ in range(pick.randint(1, 4))]
            return await store.settle_many([(i, pick.randrange(900)) for i in ids])
        # Sorted by id: the memory store's clock stands still, so it cannot order by time.
        return [await store.budget_state(k) for k in budget_keys] + sorted(
            (r.reservation_id, r.amount_micros, r.budget_keys)
            for r in await store.open_reservations()
        )

    seen: set[str] = set()
    try:
        for step in range(300):
            answers = [comparable(await call(store, step)) for store in (memory, shared)]
            assert answers[0] == answers[1], f"step {step}"
            seen.add(type(answers[0]).__name__)
    finally:
        await shared.aclose()
    # The sequence reaches every kind of answer, refusals included.
    assert {"LeaseRefused", "Throttled", "OverBudget", "Finished", "str"} <= seen, seen


async def test_a_stopped_redis_refuses_the_composites(own_redis_server: RedisServer) -> None:
    store = RedisCounterStore(own_redis_server.url)
    try:
        assert isinstance(await admit(store, "r1"), Admitted)
        own_redis_server.stop()
        calls = [
            lambda: admit(store, "r2"),
            lambda: store.finish_request("r1", lease_key=LEASE.key, tpm_adjustments=[]),
            lambda: store.settle_many([("r1", 10)]),
        ]
        for call in calls:
            with pytest.raises(CounterStoreUnavailable) as raised:
                async with asyncio.timeout(1.0):
                    await call()
            assert raised.value.status == 503
    finally:
        await store.aclose()
