"""Where each project's budgets stand now: limit, spent, reserved and remaining per period, as
metric samples read from the counter store (shared by every replica, so any one may answer).

Only budgets with a limit are shown: a project without one has nothing to run out of."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from modelyard.auth.directory import Directory
from modelyard.limits.keys import BudgetKey
from modelyard.limits.store import CounterStore
from modelyard.observability.metrics import MetricSample
from modelyard.serving.admission_plan import budget_keys

PROJECT = "project"


async def project_budget_samples(
    directory: Directory, counters: CounterStore, now: datetime | None = None
) -> list[MetricSample]:
    moment = now or datetime.now(UTC)
    limited = [
        (key, limit)
        for (scope, scope_id), limits in list(directory.limits.items())
        if scope == PROJECT and limits.budgets
        for key, limit, _end in budget_keys([(scope, scope_id, limits)], moment)
        if limit is not None
    ]
    states = await asyncio.gather(*(counters.budget_state(key) for key, _ in limited))
    samples: list[MetricSample] = []
    for (key, limit), state in zip(limited, states, strict=True):
        budget = BudgetKey.parse(key)
        if budget is None:
            continue
        labels = {"project": budget.scope_id, "period": budget.period}
        remaining = max(0, limit - state.spent_micros - state.reserved_micros)
        samples += [
            MetricSample("modelyard_budget_limit_micros", "gauge", "Budget limit", limit, labels),
            MetricSample(
                "modelyard_budget_spent_micros",
                "gauge",
                "Spent in the budget's current window",
                state.spent_micros,
                labels,
            ),
            MetricSample(
                "modelyard_budget_reserved_micros",
                "gauge",
                "Held for requests in flight",
                state.reserved_micros,
                labels,
            ),
            MetricSample(
                "modelyard_budget_remaining_micros",
                "gauge",
                "What new requests may still reserve in the current window",
                remaining,
                labels,
            ),
        ]
    return samples
