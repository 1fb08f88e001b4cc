"""The circuit breaker on a clock the test moves: what opens it, how long it stays open, the one
probe at a time, and what the probe's ending does."""

from __future__ import annotations

from typing import Any

import pytest

from modelyard.routing.breaker import (
    WINDOW_CAP,
    BreakerPolicy,
    BreakerSnapshot,
    BreakerState,
    CircuitBreaker,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# Only the trigger under test can open the breaker in each test.
RUN_ONLY = BreakerPolicy(consecutive_failures=3, min_requests=1_000_000)
RATE_ONLY = BreakerPolicy(
    consecutive_failures=1_000_000, error_rate=0.5, window_s=30.0, min_requests=10
)


def attempt(breaker: CircuitBreaker, ok: bool) -> None:
    assert breaker.admit()
    if ok:
        breaker.succeeded()
    else:
        breaker.failed()


def opened(policy: BreakerPolicy, clock: Clock) -> CircuitBreaker:
    breaker = CircuitBreaker(policy, clock)
    for _ in range(policy.consecutive_failures):
        attempt(breaker, ok=False)
    assert breaker.state is BreakerState.OPEN
    return breaker


def test_a_new_breaker_is_closed_and_admits() -> None:
    breaker = CircuitBreaker(clock=Clock())
    assert breaker.state is BreakerState.CLOSED
    assert all(breaker.admit() for _ in range(100))
    assert breaker.snapshot() == BreakerSnapshot(BreakerState.CLOSED, 0, 0, 0, None)


def test_consecutive_failures_open_it() -> None:
    breaker = CircuitBreaker(RUN_ONLY, Clock())
    attempt(breaker, ok=False)
    attempt(breaker, ok=False)
    assert breaker.state is BreakerState.CLOSED
    attempt(breaker, ok=False)
    assert breaker.state is BreakerState.OPEN
    assert not breaker.admit()


def test_a_success_resets_the_run_of_failures() -> None:
    breaker = CircuitBreaker(RUN_ONLY, Clock())
    for _ in range(5):
        attempt(breaker, ok=False)
        attempt(breaker, ok=False)
        assert breaker.snapshot().consecutive_failures == 2
        attempt(breaker, ok=True)
        assert breaker.snapshot().consecutive_failures == 0
    assert breaker.state is BreakerState.CLOSED


def test_the_error_rate_opens_it_once_the_window_holds_min_requests() -> None:
    breaker = CircuitBreaker(RATE_ONLY, Clock())
    for _ in range(4):
        attempt(breaker, ok=False)
        attempt(breaker, ok=True)
    attempt(breaker, ok=False)  # 5 failures of 9: past the rate, short of min_requests
    assert breaker.state is BreakerState.CLOSED
    attempt(breaker, ok=True)  # 5 of 10, but a success never opens it
    assert breaker.state is BreakerState.CLOSED
    attempt(breaker, ok=False)  # 6 of 11
    assert breaker.state is BreakerState.OPEN


def test_an_error_rate_below_the_policy_keeps_it_closed() -> None:
    breaker = CircuitBreaker(RATE_ONLY, Clock())
    for _ in range(50):
        attempt(breaker, ok=True)
        attempt(breaker, ok=True)
        attempt(breaker, ok=False)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.snapshot().recent_failures == 50


def test_a_rate_exactly_at_the_policy_opens_it() -> None:
    # 7 / 25 == 0.28, which a multiplication in floats would miss (0.28 * 25 > 7).
    policy = BreakerPolicy(consecutive_failures=1_000_000, error_rate=0.28, min_requests=25)
    breaker = CircuitBreaker(policy, Clock())
    for _ in range(18):
        attempt(breaker, ok=True)
    for _ in range(6):
        attempt(breaker, ok=False)
    assert breaker.state is BreakerState.CLOSED
    attempt(breaker, ok=False)
    assert breaker.state is BreakerState.OPEN


def test_attempts_older_than_the_window_age_out() -> None:
    clock = Clock()
    breaker = CircuitBreaker(RATE_ONLY, clock)
    for _ in range(9):
        attempt(breaker, ok=False)
    clock.now += 30.0  # exactly window_s later: those nine are out of the window
    attempt(breaker, ok=False)
    assert breaker.state is BreakerState.CLOSED
    snapshot = breaker.snapshot()
    assert (snapshot.recent_attempts, snapshot.recent_failures) == (1, 1)


def test_the_window_is_pruned_on_snapshot_too() -> None:
    clock = Clock()
    breaker = CircuitBreaker(RATE_ONLY, clock)
    attempt(breaker, ok=False)
    clock.now += 10.0
    attempt(breaker, ok=True)
    assert breaker.snapshot().recent_attempts == 2
    clock.now += 25.0
    snapshot = breaker.snapshot()
    assert (snapshot.recent_attempts, snapshot.recent_failures) == (1, 0)


def test_the_window_keeps_only_the_latest_attempts() -> None:
    policy = BreakerPolicy(consecutive_failures=1_000_000, error_rate=1.0)
    breaker = CircuitBreaker(policy, Clock())
    for _ in range(WINDOW_CAP // 2):
        attempt(breaker, ok=False)
        attempt(breaker, ok=True)
    for _ in range(WINDOW_CAP):
        attempt(breaker, ok=True)
    snapshot = breaker.snapshot()
    assert (snapshot.recent_attempts, snapshot.recent_failures) == (WINDOW_CAP, 0)


def test_open_refuses_until_the_cool_down_then_lets_exactly_one_probe_through() -> None:
    clock = Clock()
    breaker = opened(RUN_ONLY, clock)
    start = clock.now
    clock.now = start + 4.9
    assert not breaker.admit()
    assert breaker.state is BreakerState.OPEN
    assert breaker.snapshot().retry_in_s == pytest.approx(0.1)
    clock.now = start + 5.0
    assert breaker.admit()  # the probe
    assert breaker.state is BreakerState.HALF_OPEN
    assert not breaker.admit()
    clock.now += 100.0
    assert not breaker.admit()  # still one probe at a time, however long it takes


def test_reading_the_state_does_not_take_the_probe() -> None:
    clock = Clock()
    breaker = opened(RUN_ONLY, clock)
    clock.now += 5.0
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.snapshot().state is BreakerState.HALF_OPEN
    assert breaker.snapshot().retry_in_s is None
    assert breaker.admit()
    assert not breaker.admit()


def test_the_probe_s_success_closes_it_and_resets_counts_and_cool_down() -> None:
    clock = Clock()
    breaker = opened(RUN_ONLY, clock)
    clock.now += 5.0
    assert breaker.admit()
    breaker.failed()  # the cool-down is now 10 s
    clock.now += 10.0
    assert breaker.admit()
    breaker.succeeded()
    assert breaker.snapshot() == BreakerSnapshot(BreakerState.CLOSED, 0, 0, 0, None)
    assert all(breaker.admit() for _ in range(10))
    for _ in range(3):
        attempt(breaker, ok=False)
    assert breaker.snapshot().retry_in_s == pytest.approx(5.0)  # back to the policy's


def test_failed_probes_double_the_cool_down_up_to_the_maximum() -> None:
    clock = Clock()
    policy = BreakerPolicy(consecutive_failures=3, cooldown_s=5.0, max_cooldown_s=60.0)
    breaker = opened(policy, clock)
    cool_downs = []
    for _ in range(6):
        retry_in_s = breaker.snapshot().retry_in_s
        assert retry_in_s is not None
        cool_downs.append(retry_in_s)
        clock.now += retry_in_s - 0.5
        assert not breaker.admit()
        clock.now += 0.5
        assert breaker.admit()
        breaker.failed()
        assert breaker.state is BreakerState.OPEN
    assert cool_downs == [5.0, 10.0, 20.0, 40.0, 60.0, 60.0]


def test_a_released_probe_frees_the_slot_and_counts_nothing() -> None:
    clock = Clock()
    breaker = opened(RUN_ONLY, clock)
    before = breaker.snapshot()
    clock.now += 5.0
    assert breaker.admit()
    assert not breaker.admit()
    breaker.released()
    assert breaker.state is BreakerState.HALF_OPEN
    after = breaker.snapshot()
    assert (after.consecutive_failures, after.recent_failures) == (
        before.consecutive_failures,
        before.recent_failures,
    )
    assert breaker.admit()  # the next probe
    assert not breaker.admit()


def test_released_in_closed_counts_nothing() -> None:
    breaker = CircuitBreaker(RUN_ONLY, Clock())
    attempt(breaker, ok=False)
    assert breaker.admit()
    breaker.released()
    assert breaker.snapshot() == BreakerSnapshot(BreakerState.CLOSED, 1, 1, 1, None)


def test_verdicts_of_earlier_attempts_change_nothing_while_open() -> None:
    clock = Clock()
    breaker = opened(RUN_ONLY, clock)
    breaker.succeeded()
    breaker.failed()
    breaker.released()
    snapshot = breaker.snapshot()
    assert snapshot.state is BreakerState.OPEN
    assert snapshot.retry_in_s == pytest.approx(5.0)
    assert snapshot.consecutive_failures == 3


def test_snapshot_counts_the_window() -> None:
    clock = Clock()
    breaker = CircuitBreaker(RATE_ONLY, clock)
    for ok in [True, False, True, False, False]:
        attempt(breaker, ok)
        clock.now += 1.0
    assert breaker.snapshot() == BreakerSnapshot(BreakerState.CLOSED, 2, 5, 3, None)


@pytest.mark.parametrize(
    "changes",
    [
        {"consecutive_failures": 0},
        {"error_rate": 0.0},
        {"error_rate": 1.5},
        {"window_s": 0.0},
        {"min_requests": 0},
        {"cooldown_s": 0.0},
        {"cooldown_s": 10.0, "max_cooldown_s": 5.0},
        {"max_cooldown_s": float("inf")},
    ],
)
def test_a_policy_that_cannot_work_is_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        BreakerPolicy(**changes)


def test_a_disabled_breaker_never_opens() -> None:
    breaker = CircuitBreaker(BreakerPolicy(consecutive_failures=1, enabled=False))
    for _ in range(50):
        assert breaker.admit()
        breaker.failed()
    assert breaker.state is BreakerState.CLOSED
