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

Composites. `admit_request` is `enter` + `admit` + `reserve` as one atomic step (one round trip
on Redis) with the request id as lease, log and reservation id: every step fits and all are
taken, or the first to refuse (lease, then windows, then budgets) is answered and nothing is
held or logged. `finish_request` is the `adjust`s and `leave` after a request, in one step, and
`settle_many` settles a batch as `settle` does each, in order.

Every method raises `CounterStoreUnavailable` when the store cannot be asked: never admit blind.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from modelyard.limits.values import (
    AdmissionResult,
    Admitted,
    BudgetLimit,
    BudgetState,
    Finished,
    LeaseRequest,
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
        """Take the lease, log the request in every window and reserve on every budget, or do
        none of it and answer the first refusal. Windows may be empty (then `Admitted(())`).

        Safe to retry: a lease held is renewed, a logged window not counted again, an open
        reservation left as it is (its budgets are not checked again). Raises
        `ReservationSettled` for an id settled within the store's memory, holding nothing.
        """
        ...

    async def finish_request(
        self,
        request_id: str,
        *,
        lease_key: str | None,
        tpm_adjustments: Sequence[tuple[str, int]],
    ) -> Finished:
        """`adjust` the request's amount under each (key, actual amount), then `leave` the lease
        it holds on `lease_key`, atomically."""
        ...

    async def settle_many(self, settlements: Sequence[tuple[str, int]]) -> list[bool]:
        """`settle` each (reservation id, actual amount) in order; True where it was open."""
        ...

    async def aclose(self) -> None: ...
