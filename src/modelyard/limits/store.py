"""The CounterStore protocol: budgets, sliding-log rate limits and concurrency leases.

Two implementations keep the same semantics: `MemoryCounterStore` for one process and
`RedisCounterStore` for replicas sharing Redis. Keys are composed by the caller and opaque here.

Budgets. `reserve` holds the worst-case amount on every budget given, or on none: a budget
refuses when spent + reserved + amount would pass its limit. `settle` removes the reservation
and adds the actual amount to `spent` of every budget it touched, at most once per id. For every
budget, `reserved` equals the sum of the open reservations touching it. A budget's counters
vanish when its `expires_at` passes; settling a reservation after that adds nothing there.

Rate limits. Each key has a log of (request id, time, amount). A request is admitted when, for
every window given, the amounts logged in the last `window_s` plus its own stay within the limit;
then it is logged in all of them, else in none. So no window of that length ever holds more
than the limit (as counted at admission; `adjust` may later raise an entry to its actual
amount). Timestamps come from the store's clock (Redis `TIME` for Redis), and a log's timestamps
never go backwards: a clock that steps back logs at the newest time already in the log. An id
already in a log is not counted there again, so retrying an admission is safe.

Concurrency. At most `cap` leases per key; a lease expires after its ttl unless entered again,
which renews it.

Every method raises `CounterStoreUnavailable` when the store cannot be asked: never admit blind.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from modelyard.limits.values import (
    Admitted,
    BudgetLimit,
    BudgetState,
    OpenReservation,
    OverBudget,
    RateWindow,
    Reserved,
    Throttled,
)


class CounterStore(Protocol):
    async def reserve(
        self,
        reservation_id: str,
        budgets: Sequence[BudgetLimit],
        amount_micros: int,
        owner: str,
    ) -> Reserved | OverBudget:
        """Hold `amount_micros` on every budget or on none; an open id is left as it is.

        Raises `ReservationSettled` for an id settled within the store's memory of settlements.
        """
        ...

    async def settle(self, reservation_id: str, actual_micros: int) -> bool:
        """Release the reservation and count the actual amount; False if it is not open."""
        ...

    async def open_reservations(self, owner: str | None = None) -> list[OpenReservation]:
        """Open reservations, oldest first; with an owner, only those it made."""
        ...

    async def budget_state(self, key: str) -> BudgetState: ...

    async def admit(self, request_id: str, windows: Sequence[RateWindow]) -> Admitted | Throttled:
        """Log the request in every window, or refuse it with when to retry."""
        ...

    async def adjust(self, request_id: str, key: str, actual_amount: int) -> bool:
        """Replace the amount logged for the request under `key`; False once it has expired."""
        ...

    async def enter(self, key: str, cap: int, lease_id: str, ttl_s: float) -> bool:
        """Take (or renew) a lease unless `cap` live leases are held on the key."""
        ...

    async def leave(self, key: str, lease_id: str) -> bool: ...

    async def aclose(self) -> None: ...
