"""The frozen values a counter store takes and returns; no counting happens here.

Money is integer micro-dollars; amounts and limits are non-negative integers below 2**53, so the
Redis store's Lua (which counts in doubles) stays exact. A refusal says which counter refused and
why, in words a client can be shown.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

# The largest integer a double holds exactly: Lua numbers in Redis are doubles.
MAX_COUNT = 2**53 - 1


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_ms(moment: datetime) -> int:
    """Whole milliseconds since the epoch, without a float's rounding."""
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def from_epoch_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def check_count(name: str, value: int) -> None:
    if not 0 <= value <= MAX_COUNT:
        raise ValueError(f"{name} must be between 0 and 2**53 - 1, not {value}")


def check_key(name: str, value: str) -> None:
    if not value:
        raise ValueError(f"{name} must not be empty")


@dataclass(frozen=True)
class BudgetLimit:
    """One budget a reservation counts against, with the limit in force for this request."""

    key: str
    limit_micros: int
    # When the window ends and its counters are discarded (a day or month budget); None keeps
    # them for ever (a total budget).
    expires_at: datetime | None = None

    def __post_init__(self) -> None:
        check_key("a budget key", self.key)
        check_count("limit_micros", self.limit_micros)
        if self.expires_at is not None and self.expires_at.utcoffset() is None:
            raise ValueError("expires_at must be timezone-aware")


@dataclass(frozen=True)
class Reserved:
    reservation_id: str
    # False when the id was already reserved: the call changed nothing.
    created: bool


@dataclass(frozen=True)
class OverBudget:
    """The first budget (in the order given) that cannot hold the requested amount."""

    key: str
    limit_micros: int
    # limit - spent - reserved, never below zero.
    remaining_micros: int
    requested_micros: int

    @property
    def reason(self) -> str:
        return (
            f"budget '{self.key}' has {self.remaining_micros} of {self.limit_micros} micro-dollars "
            f"left, and this request may cost up to {self.requested_micros}"
        )


@dataclass(frozen=True)
class BudgetState:
    spent_micros: int
    reserved_micros: int


@dataclass(frozen=True)
class OpenReservation:
    """A reservation not yet settled: what a restarted replica reconciles."""

    reservation_id: str
    owner: str
    amount_micros: int
    budget_keys: tuple[str, ...]
    created_at: datetime


@dataclass(frozen=True)
class RateWindow:
    """One sliding-log limit a request counts against, and how much this request counts."""

    key: str
    limit: int
    # 1 for a requests limit; the estimated tokens for a tokens limit.
    amount: int
    window_s: float = 60.0

    def __post_init__(self) -> None:
        check_key("a rate limit key", self.key)
        check_count("limit", self.limit)
        check_count("amount", self.amount)
        if not 0.001 <= self.window_s <= 86_400:
            raise ValueError("window_s must be between 1 ms and one day")

    @functools.cached_property
    def window_us(self) -> int:
        return round(self.window_s * 1_000_000)


@dataclass(frozen=True)
class WindowState:
    """A limit after an admission, for the `x-ratelimit-*` headers."""

    key: str
    limit: int
    # Never below zero, even when an `adjust` pushed the window past its limit.
    remaining: int
    # Until everything counted now has left the window.
    reset_after_s: float


@dataclass(frozen=True)
class Admitted:
    windows: tuple[WindowState, ...]
    # The store's clock when it admitted the request (`admit_request` only): the time the
    # usage record carries, so the ledger and the limiter agree on which window it fell in.
    at: datetime | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Throttled:
    """The window that refused; of several, the one that frees up last."""

    key: str
    limit: int
    remaining: int
    requested: int
    # When enough of the log will have expired for this request to fit, if nothing else is
    # admitted meanwhile; None when the request alone is over the limit and never fits.
    retry_after_s: float | None

    @property
    def reason(self) -> str:
        if self.retry_after_s is None:
            return (
                f"rate limit '{self.key}' allows {self.limit} per window and this request alone "
                f"counts {self.requested}"
            )
        return (
            f"rate limit '{self.key}' has {self.remaining} of {self.limit} left and this request "
            f"counts {self.requested}; retry in {self.retry_after_s:.3f} s"
        )


@dataclass(frozen=True)
class LeaseRequest:
    """A concurrency lease an admission takes (or renews) under its request id."""

    key: str
    cap: int
    ttl_s: float

    def __post_init__(self) -> None:
        check_key("a lease key", self.key)
        check_count("cap", self.cap)
        if self.ttl_s <= 0:
            raise ValueError("ttl_s must be positive")

    @functools.cached_property
    def ttl_us(self) -> int:
        return round(self.ttl_s * 1_000_000)


@dataclass(frozen=True)
class LeaseRefused:
    """The concurrency cap that refused: `cap` live leases are held on the key."""

    key: str
    cap: int

    @property
    def reason(self) -> str:
        return f"concurrency limit '{self.key}' allows {self.cap} at once and all are taken"


# What one `admit_request` answers: everything held, or the first step that refused (lease,
# then rate windows, then budgets) and nothing held.
AdmissionResult = Admitted | LeaseRefused | Throttled | OverBudget


@dataclass(frozen=True)
class Finished:
    """What `finish_request` found: for each token adjustment whether the request was still in
    that log, and whether a live lease was released."""

    adjusted: tuple[bool, ...]
    left: bool


def check_budgets(budgets: Sequence[BudgetLimit]) -> None:
    keys = [budget.key for budget in budgets]
    if len(set(keys)) != len(keys):
        raise ValueError(f"a budget key appears twice: {keys}")


def check_windows(windows: Sequence[RateWindow], *, allow_none: bool = False) -> None:
    keys = [window.key for window in windows]
    if not keys and not allow_none:
        raise ValueError("an admission needs at least one window")
    if len(set(keys)) != len(keys):
        raise ValueError(f"a rate limit key appears twice: {keys}")


# The argument checks of each store operation, shared by both stores so they refuse alike.


def check_reservation(
    reservation_id: str, owner: str, amount_micros: int, budgets: Sequence[BudgetLimit]
) -> None:
    check_key("reservation_id", reservation_id)
    check_key("owner", owner)
    check_count("amount_micros", amount_micros)
    check_budgets(budgets)


def check_admission(
    request_id: str,
    owner: str,
    amount_micros: int,
    windows: Sequence[RateWindow],
    budgets: Sequence[BudgetLimit],
) -> None:
    check_key("request_id", request_id)
    check_key("owner", owner)
    check_count("amount_micros", amount_micros)
    check_windows(windows, allow_none=True)
    check_budgets(budgets)


def check_lease(lease_id: str, cap: int, ttl_s: float) -> None:
    check_key("lease_id", lease_id)
    check_count("cap", cap)
    if ttl_s <= 0:
        raise ValueError("ttl_s must be positive")
