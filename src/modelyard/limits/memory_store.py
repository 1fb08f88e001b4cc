"""The counter store for one process: budgets, sliding logs and leases in dictionaries.

Every method does its work synchronously under one `threading.Lock` and never awaits while
holding it, so each operation is atomic for asyncio tasks and for threads alike. Expiries (budget
windows, idle logs and lease sets, remembered settlements) are deadlines swept at the start of
every operation, in O(log n) each. The clock is injectable (seconds since the epoch, as
`time.time`); counters are kept in integer microseconds. Nothing survives the process.
"""

from __future__ import annotations

import functools
import heapq
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from modelyard.limits.deadlines import Deadlines
from modelyard.limits.errors import ReservationSettled
from modelyard.limits.sliding_log import SlidingLog
from modelyard.limits.values import (
    AdmissionResult,
    Admitted,
    BudgetLimit,
    BudgetState,
    Finished,
    LeaseRefused,
    LeaseRequest,
    OpenReservation,
    OverBudget,
    RateWindow,
    Reserved,
    Throttled,
    WindowState,
    check_admission,
    check_count,
    check_key,
    check_lease,
    check_reservation,
    check_windows,
    epoch_ms,
    from_epoch_us,
)

# How long a settled reservation id is remembered (to refuse reserving it again), and how many
# at most. Every request leaves one; in one process nothing reserves an id twice but a caller's
# bug, so the newest ids are plenty, and memory stays bounded whatever the request rate (ten
# minutes of ids at 3,000 requests/s took over 300 MiB).
SETTLED_TTL_S = 600.0
SETTLED_MAX = 10_000


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

    def admits(self, lease_id: str, cap: int) -> bool:
        return lease_id in self.expiry or len(self.expiry) < cap

    def release(self, lease_id: str) -> bool:
        if self.expiry.pop(lease_id, None) is None:
            return False
        # Released leases leave their heap entries behind until they would have expired (ten
        # minutes); rebuilt once mostly stale, the heap stays the size of the live leases.
        if len(self.heap) > 2 * len(self.expiry) + 64:
            self.heap = [(until, held) for held, until in self.expiry.items()]
            heapq.heapify(self.heap)
        return True


class MemoryCounterStore:
    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        *,
        settled_ttl_s: float = SETTLED_TTL_S,
        settled_max: int = SETTLED_MAX,
    ) -> None:
        self._clock = clock
        self._settled_ttl_us = round(settled_ttl_s * 1_000_000)
        self._settled_max = settled_max
        self._lock = threading.Lock()
        self._budgets: dict[str, _Budget] = {}
        self._budget_expiry = Deadlines()
        self._reservations: dict[str, OpenReservation] = {}
        # Settled ids (oldest first, with when they are forgotten), so a duplicate `reserve` is
        # refused.
        self._settled: OrderedDict[str, int] = OrderedDict()
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
        settled = self._settled
        while settled and (len(settled) > self._settled_max or next(iter(settled.values())) <= now):
            settled.popitem(last=False)
        return now

    async def reserve(
        self,
        reservation_id: str,
        budgets: Sequence[BudgetLimit],
        amount_micros: int,
        owner: str,
    ) -> Reserved | OverBudget:
        check_reservation(reservation_id, owner, amount_micros, budgets)
        with self._lock:
            now = self._begin()
            if self._is_open(reservation_id):
                return Reserved(reservation_id, created=False)
            refusal = self._budget_refusal(budgets, amount_micros)
            if refusal is not None:
                return refusal
            self._hold(reservation_id, budgets, amount_micros, owner, now)
            return Reserved(reservation_id, created=True)

    def _is_open(self, reservation_id: str) -> bool:
        if reservation_id in self._reservations:
            return True
        if reservation_id in self._settled:
            raise ReservationSettled(reservation_id)
        return False

    def _budget_refusal(self, budgets: Sequence[BudgetLimit], amount: int) -> OverBudget | None:
        for budget in budgets:
            state = self._budgets.get(budget.key, _Budget())
            if state.spent + state.reserved + amount > budget.limit_micros:
                remaining = budget.limit_micros - state.spent - state.reserved
                return OverBudget(budget.key, budget.limit_micros, max(remaining, 0), amount)
        return None

    def _hold(
        self,
        reservation_id: str,
        budgets: Sequence[BudgetLimit],
        amount: int,
        owner: str,
        now: int,
    ) -> None:
        for budget in budgets:
            state = self._budgets.get(budget.key)
            if state is None:
                state = self._budgets[budget.key] = _Budget()
            state.reserved += amount
            if budget.expires_at is not None:
                self._budget_expiry.set(budget.key, _epoch_us(budget.expires_at))
        self._reservations[reservation_id] = OpenReservation(
            reservation_id,
            owner,
            amount,
            tuple(budget.key for budget in budgets),
            from_epoch_us(now),
        )

    async def settle(self, reservation_id: str, actual_micros: int) -> bool:
        check_count("actual_micros", actual_micros)
        with self._lock:
            return self._settle(reservation_id, actual_micros, self._begin())

    async def settle_many(self, settlements: Sequence[tuple[str, int]]) -> list[bool]:
        for _, actual_micros in settlements:
            check_count("actual_micros", actual_micros)
        with self._lock:
            now = self._begin()
            return [self._settle(id_, actual, now) for id_, actual in settlements]

    def _settle(self, reservation_id: str, actual_micros: int, now: int) -> bool:
        reservation = self._reservations.pop(reservation_id, None)
        if reservation is None:
            return False
        for key in reservation.budget_keys:
            # A budget whose window has ended is gone; nothing is counted there.
            state = self._budgets.get(key)
            if state is not None:
                state.reserved -= reservation.amount_micros
                state.spent += actual_micros
        self._settled[reservation_id] = now + self._settled_ttl_us
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
            logs, refusal = self._rate_refusal(request_id, windows, now)
            if refusal is not None:
                return refusal
            return self._log(request_id, windows, logs, now)

    def _rate_refusal(
        self, request_id: str, windows: Sequence[RateWindow], now: int
    ) -> tuple[list[SlidingLog], Throttled | None]:
        """The windows' logs, pruned, and the refusal of the one that frees up last, if any."""
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
        return logs, refusal

    def _log(
        self, request_id: str, windows: Sequence[RateWindow], logs: list[SlidingLog], now: int
    ) -> Admitted:
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
            return self._adjust(request_id, key, actual_amount)

    def _adjust(self, request_id: str, key: str, actual_amount: int) -> bool:
        log = self._logs.get(key)
        return log is not None and log.adjust(request_id, actual_amount)

    async def enter(self, key: str, cap: int, lease_id: str, ttl_s: float) -> bool:
        check_lease(lease_id, cap, ttl_s)
        with self._lock:
            now = self._begin()
            leases = self._live_leases(key, now)
            if not leases.admits(lease_id, cap):
                return False
            self._take(key, leases, lease_id, round(ttl_s * 1_000_000), now)
            return True

    def _live_leases(self, key: str, now: int) -> _Leases:
        leases = self._leases.get(key, _Leases())
        leases.prune(now)
        return leases

    def _take(self, key: str, leases: _Leases, lease_id: str, ttl_us: int, now: int) -> None:
        until = now + ttl_us
        leases.hold(lease_id, until)
        self._leases[key] = leases
        self._lease_expiry.set(key, max(until, self._lease_expiry.get(key) or 0))

    async def leave(self, key: str, lease_id: str) -> bool:
        with self._lock:
            return self._leave(key, lease_id, self._begin())

    def _leave(self, key: str, lease_id: str, now: int) -> bool:
        leases = self._leases.get(key)
        if leases is None:
            return False
        leases.prune(now)
        return leases.release(lease_id)

    async def admit_request(
        self,
        request_id: str,
        *,
        lease: LeaseRequest | None,
        windows: Sequence[RateWindow],
        budgets: Sequence[BudgetLimit],
        amount_micros: int,
        owner: str,
    ) -> AdmissionResult:
        check_admission(request_id, owner, amount_micros, windows, budgets)
        with self._lock:
            now = self._begin()
            reserved = self._is_open(request_id)
            if lease is not None and not self._live_leases(lease.key, now).admits(
                request_id, lease.cap
            ):
                return LeaseRefused(lease.key, lease.cap)
            logs, throttled = self._rate_refusal(request_id, windows, now)
            if throttled is not None:
                return throttled
            if not reserved:
                over = self._budget_refusal(budgets, amount_micros)
                if over is not None:
                    return over
            # Everything fits: nothing above changed a counter, everything below takes one.
            if lease is not None:
                leases = self._live_leases(lease.key, now)
                self._take(lease.key, leases, request_id, lease.ttl_us, now)
            admitted = self._log(request_id, windows, logs, now)
            if not reserved:
                self._hold(request_id, budgets, amount_micros, owner, now)
            return Admitted(admitted.windows, from_epoch_us(now))

    async def finish_request(
        self,
        request_id: str,
        *,
        lease_key: str | None,
        tpm_adjustments: Sequence[tuple[str, int]],
    ) -> Finished:
        for _, actual_amount in tpm_adjustments:
            check_count("actual_amount", actual_amount)
        with self._lock:
            now = self._begin()
            adjusted = tuple(
                self._adjust(request_id, key, amount) for key, amount in tpm_adjustments
            )
            left = lease_key is not None and self._leave(lease_key, request_id, now)
            return Finished(adjusted, left)

    async def aclose(self) -> None:
        return None


@functools.lru_cache(maxsize=64)
def _epoch_us(moment: datetime) -> int:
    """A budget window's end; the same few for every request of a minute."""
    return epoch_ms(moment) * 1000


def _frees_later(candidate: Throttled, current: Throttled) -> bool:
    """Of two refusing windows, the one to report: the request can be retried when both fit."""
    if current.retry_after_s is None:
        return False
    return candidate.retry_after_s is None or candidate.retry_after_s > current.retry_after_s
