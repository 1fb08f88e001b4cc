"""What one caller's requests to one deployment count against, in one minute: the concurrency
lease, the sliding-minute request and token windows of the key, the project and the deployment,
and a budget of every period of both scopes.

Built from the Directory's limits once per minute and per change of limits, not once per request
(admission looks one up per request: `Admissions._plan`); only the token windows' amounts,
each request's own estimate, are filled in per request.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from modelyard.catalog.cards import Deployment
from modelyard.limits.keys import BudgetKey, RateKey, lease_key
from modelyard.limits.values import MAX_COUNT, BudgetLimit, LeaseRequest, RateWindow
from modelyard.policy.spending import Period, SpendingLimits, window_end, window_label

LEASE_TTL_S = 600.0


@dataclass(frozen=True)
class AdmissionPlan:
    """The lease, rate windows and budgets of one caller on one deployment in one minute."""

    limits: tuple[SpendingLimits, ...]  # the Directory's objects it was built from
    deployment: Deployment
    minute: datetime
    lease: LeaseRequest | None
    # In order: (window, None) for a requests window, (None, (key, limit)) for a tokens window,
    # whose amount is each request's own estimate.
    window_plan: tuple[tuple[RateWindow | None, tuple[str, int] | None], ...]
    tpm_keys: tuple[str, ...]
    budgets: list[BudgetLimit]

    @classmethod
    def build(
        cls,
        scopes: Sequence[tuple[str, str, SpendingLimits]],
        deployment: Deployment,
        minute: datetime,
    ) -> AdmissionPlan:
        limited = [(s, i, lim.requests_per_minute, lim.tokens_per_minute) for s, i, lim in scopes]
        limited.append(
            (
                "deployment",
                deployment.id,
                deployment.limits.requests_per_minute,
                deployment.limits.tokens_per_minute,
            )
        )
        window_plan: list[tuple[RateWindow | None, tuple[str, int] | None]] = []
        for scope, scope_id, rpm, tpm in limited:
            if rpm is not None:
                rpm_key = str(RateKey("rpm", scope, scope_id))
                window_plan.append((RateWindow(rpm_key, rpm, 1), None))
            if tpm is not None:
                window_plan.append((None, (str(RateKey("tpm", scope, scope_id)), tpm)))
        key_limits = next((lim for s, _, lim in scopes if s == "key"), None)
        cap = key_limits.max_concurrent if key_limits is not None else None
        key_id = next((i for s, i, _ in scopes if s == "key"), None)
        # Every period of every scope is reserved against, limited or not: the counters then
        # always know the spend of the current windows (a budget set at noon counts the
        # morning), and every request leaves an open reservation to reconcile if a replica dies.
        budgets = [
            BudgetLimit(key, limit if limit is not None else MAX_COUNT, expires_at)
            for key, limit, expires_at in budget_keys(scopes, minute)
        ]
        return cls(
            limits=tuple(lim for _, _, lim in scopes),
            deployment=deployment,
            minute=minute,
            lease=None if cap is None else LeaseRequest(lease_key(str(key_id)), cap, LEASE_TTL_S),
            window_plan=tuple(window_plan),
            tpm_keys=tuple(tokens[0] for _, tokens in window_plan if tokens is not None),
            budgets=budgets,
        )

    def current(
        self, limits: tuple[SpendingLimits, ...], minute: datetime, deployment: Deployment
    ) -> bool:
        return (
            self.minute == minute
            and self.deployment is deployment
            and len(limits) == len(self.limits)
            and all(a is b for a, b in zip(limits, self.limits, strict=True))
        )

    def windows(self, token_estimate: int) -> list[RateWindow]:
        """The request's windows: the requests ones as built, the tokens ones with its estimate."""
        windows = []
        for window, tokens in self.window_plan:
            if window is None:
                assert tokens is not None
                key, limit = tokens
                window = RateWindow(key, limit, min(token_estimate, limit))
            windows.append(window)
        return windows


def budget_keys(
    scopes: Sequence[tuple[str, str, SpendingLimits]], now: datetime
) -> list[tuple[str, int | None, datetime | None]]:
    """(counter key, limit or None, window end) for each period of each scope."""
    windows = _windows(now.replace(second=0, microsecond=0))
    return [
        (str(BudgetKey(scope, scope_id, str(period), label)), limits.budgets.get(period), end)
        for scope, scope_id, limits in scopes
        for period, label, end in windows
    ]


@functools.lru_cache(maxsize=4)
def _windows(minute: datetime) -> tuple[tuple[Period, str, datetime | None], ...]:
    """The current window of each period; computed once a minute, not once a request."""
    return tuple((p, window_label(p, minute), window_end(p, minute)) for p in Period)
