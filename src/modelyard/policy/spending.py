"""Spending limits set on a project or a key: money budgets per period and rate limits.

Budgets are integer micro-dollars per period: `day` and `month` are UTC calendar windows,
`total` never resets. Rate limits count requests and tokens per sliding minute, and requests in
flight at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any


class Period(StrEnum):
    DAY = "day"
    MONTH = "month"
    TOTAL = "total"


@dataclass(frozen=True)
class SpendingLimits:
    budgets: Mapping[Period, int] = field(default_factory=dict)
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    max_concurrent: int | None = None

    @classmethod
    def from_row(cls, budgets: Mapping[str, Any], rate_limits: Mapping[str, Any]) -> SpendingLimits:
        return cls(
            budgets={Period(name): int(limit) for name, limit in budgets.items()},
            requests_per_minute=rate_limits.get("requests_per_minute"),
            tokens_per_minute=rate_limits.get("tokens_per_minute"),
            max_concurrent=rate_limits.get("max_concurrent"),
        )

    def rate_limits_json(self) -> dict[str, int | None]:
        return {
            "requests_per_minute": self.requests_per_minute,
            "tokens_per_minute": self.tokens_per_minute,
            "max_concurrent": self.max_concurrent,
        }


NO_LIMITS = SpendingLimits()


def lifts(current: SpendingLimits, proposed: SpendingLimits) -> list[str]:
    """What `proposed` loosens relative to `current`: a limit removed or raised (None: none)."""

    def looser(now: int | None, then: int | None) -> bool:
        return now is not None and (then is None or then > now)

    loosened = [
        f"the {period} budget"
        for period, limit in current.budgets.items()
        if looser(limit, proposed.budgets.get(period))
    ]
    for name in ("requests_per_minute", "tokens_per_minute", "max_concurrent"):
        if looser(getattr(current, name), getattr(proposed, name)):
            loosened.append(name)
    return loosened


def window_start(period: Period, now: datetime) -> datetime:
    """The start of the budget window that contains `now` (UTC)."""
    now = now.astimezone(UTC)
    if period is Period.DAY:
        return now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period is Period.MONTH:
        return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return datetime(2000, 1, 1, tzinfo=UTC)


def window_end(period: Period, now: datetime) -> datetime | None:
    start = window_start(period, now)
    if period is Period.DAY:
        return start + timedelta(days=1)
    if period is Period.MONTH:
        return (
            start.replace(year=start.year + 1, month=1)
            if start.month == 12
            else start.replace(month=start.month + 1)
        )
    return None


def window_label(period: Period, now: datetime) -> str:
    start = window_start(period, now)
    if period is Period.DAY:
        return start.strftime("%Y-%m-%d")
    if period is Period.MONTH:
        return start.strftime("%Y-%m")
    return "total"
