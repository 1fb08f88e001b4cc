"""The counter store for one process: budgets, sliding logs and leases in dictionaries.

Every method does its work synchronously under one `threading.Lock` and never awaits while
holding it, so each operation is atomic for asyncio tasks and for threads alike. Expiries (budget
windows, idle logs and lease sets, remembered settlements) are deadlines swept at the start of
every operation, in O(log n) each. The clock is injectable (seconds since the epoch, as
`time.time`); counters are kept in integer microseconds. Nothing survives the process.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from modelyard.limits.deadlines import Deadlines
from modelyard.limits.errors import ReservationSettled
from modelyard.limits.sliding_log import SlidingLog
from modelyard.limits.values import (
    Admitted,
    BudgetLimit,
    BudgetState,
    OpenReservation,
    OverBudget,
    RateWindow,
    Reserved,
    Throttled,
    WindowState,
    check_budgets,
    check_count,
    check_key,
    check_windows,
    epoch_ms,
    from_epoch_us,
)

SETTLED_TTL_S = 3600.0


@dataclass
class _Budget:
    spent: int = 0
    reserved: int = 0


@dataclass
class _Leases:
    expiry: dict[str, int] = field(default_factory=dict)
    heap: list[tuple[int, str]] = field(default_factory=list)

    def prune(self, now: int) -> None:
        while self.heap and self.heap[0][0] <= now:
            at, lease_id = heapq.heappop(self.heap)
            if self.expiry.get(lease_id) == at:
                del self.expiry[lease_id]

    def hold(self, lease_id: str, until: int) -> None:
        self.expiry[lease_id] = until
        heapq.heappush(self.heap, (until, lease_id))


class MemoryCounterStore:
    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        *,
        settled_ttl_s: float = SETTLED_TTL_S,
    ) -> None:
        self._clock = clock
        self._settled_ttl_us = round(settled_ttl_s * 1_000_000)
        self._lock = threading.Lock()
        self._budgets: dict[str, _Budget] = {}
        self._budget_expiry = Deadlines()
        self._reservations: dict[str, OpenReservation] = {}
        # Settled ids, remembered for a while so a late duplicate `reserve` is refused.
        self._settled = Deadlines()
        self._logs: dict[str, SlidingLog] = {}
        self._log_expiry = Deadlines()
        self._leases: dict[str, _Leases] = {}
        self._lease_expiry = Deadlines()

    def _begin(self) -> int:
        """Now, in microseconds, after dropping everything that expired by then."""
        now = round(self._clock() * 1_000_000)
        for key in self._budget_expiry.pop_due(now):
            del self._budgets[key]
        for key in self._log_expiry.pop_due(now):
            del self._logs[key]
        for key in self._lease_expiry.pop_due(now):
            del self._leases[key]
        self._settled.pop_due(now)
        return now

    async def reserve(
        self,
        reservation_id: str,
        budgets: Sequence[BudgetLimit],
        amount_micros: int,
        owner: str,
    ) -> Reserved | OverBudget:
        check_key("reservation_id", reservation_id)
        check_key("owner", owner)
        check_count("amount_micros", amount_micros)
        check_budgets(budgets)
        with self._lock:
            now = self._begin()
            if reservation_id in self._reservations:
                return Reserved(reservation_id, created=False)
            if reservation_id in self._settled:
                raise ReservationSettled(reservation_id)
            for budget in budgets:
                state = self._budgets.get(budget.key, _Budget())
                if state.spent + state.reserved + amount_micros > budget.limit_micros:
                    remaining = budget.limit_micros - state.spent - state.reserved
                    return OverBudget(
                        budget.key, budget.limit_micros, max(remaining, 0), amount_micros
                    )
            for budget in budgets:
                self._budgets.setdefault(budget.key, _Budget()).reserved += amount_micros
                if budget.expires_at is not None:
                    self._budget_expiry.set(budget.key, epoch_ms(budget.expires_at) * 1000)
            self._reservations[reservation_id] = OpenReservation(
                reservation_id,
                owner,
                amount_micros,
                tuple(budget.key for budget in budgets),
                from_epoch_us(now),
            )
            return Reserved(reservation_id, created=True)

    async def settle(self, reservation_id: str, actual_micros: int) -> bool:
        check_count("actual_micros", actual_micros)
        with self._lock:
            now = self._begin()
            reservation = self._reservations.pop(reservation_id, None)
            if reservation is None:
                return False
            for key in reservation.budget_keys:
                # A budget whose window has ended is gone; nothing is counted there.
                state = self._budgets.get(key)
                if state is not None:
                    state.reserved -= reservation.amount_micros
                    state.spent += actual_micros
            self._settled.set(reservation_id, now + self._settled_ttl_us)
            return True

    async def open_reservations(self, owner: str | None = None) -> list[OpenReservation]:
        with self._lock:
            self._begin()
            found = [r for r in self._reservations.values() if owner in (None, r.owner)]
        return sorted(found, key=lambda r: (r.created_at, r.reservation_id))

    async def budget_state(self, key: str) -> BudgetState:
        with self._lock:
            self._begin()
            state = self._budgets.get(key, _Budget())
            return BudgetState(state.spent, state.reserved)

    async def admit(self, request_id: str, windows: Sequence[RateWindow]) -> Admitted | Throttled:
        check_key("request_id", request_id)
        check_windows(windows)
        with self._lock:
            now = self._begin()
            logs = [self._logs.get(window.key, SlidingLog()) for window in windows]
            refusal: Throttled | None = None
            for window, log in zip(windows, logs, strict=True):
                log.prune(now - window.window_us)
                if request_id in log.amounts or log.total + window.amount <= window.limit:
                    continue
                retry_us = log.retry_after_us(window.amount, window.limit, window.window_us, now)
                throttled = Throttled(
                    window.key,
                    window.limit,
                    max(window.limit - log.total, 0),
                    window.amount,
                    None if retry_us is None else retry_us / 1_000_000,
                )
                if refusal is None or _frees_later(throttled, refusal):
                    refusal = throttled
            if refusal is not None:
                return refusal
            states = []
            for window, log in zip(windows, logs, strict=True):
                if request_id not in log.amounts:
                    at = log.append(now, request_id, window.amount)
                    self._logs[window.key] = log
                    self._log_expiry.set(window.key, at + window.window_us)
                newest = log.newest or now
                states.append(
                    WindowState(
                        window.key,
                        window.limit,
                        max(window.limit - log.total, 0),
                        (newest + window.window_us - now) / 1_000_000,
                    )
                )
            return Admitted(tuple(states))

    async def adjust(self, request_id: str, key: str, actual_amount: int) -> bool:
        check_count("actual_amount", actual_amount)
        with self._lock:
            self._begin()
            log = self._logs.get(key)
            return log is not None and log.adjust(request_id, actual_amount)

    async def enter(self, key: str, cap: int, lease_id: str, ttl_s: float) -> bool:
        check_key("lease_id", lease_id)
        check_count("cap", cap)
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        with self._lock:
            now = self._begin()
            leases = self._leases.get(key, _Leases())
            leases.prune(now)
            if lease_id not in leases.expiry and len(leases.expiry) >= cap:
                return False
            until = now + round(ttl_s * 1_000_000)
            leases.hold(lease_id, until)
            self._leases[key] = leases
            self._lease_expiry.set(key, max(until, self._lease_expiry.get(key) or 0))
            return True

    async def leave(self, key: str, lease_id: str) -> bool:
        with self._lock:
            now = self._begin()
            leases = self._leases.get(key)
            if leases is None:
                return False
            leases.prune(now)
            return leases.expiry.pop(lease_id, None) is not None

    async def aclose(self) -> None:
        return None


def _frees_later(candidate: Throttled, current: Throttled) -> bool:
    """Of two refusing windows, the one to report: the request can be retried when both fit."""
    if current.retry_after_s is None:
        return False
    return candidate.retry_after_s is None or candidate.retry_after_s > current.retry_after_s
