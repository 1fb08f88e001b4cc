"""Keeping counters in line with the ledger: settling what was written, and repairing after a
crash.

The invariant: for every budget, counter = settled (what the ledger holds) + open reservations
(requests in flight). A reservation is settled only once its usage record is committed
(`settle_written`, run by the ledger's background writer after each batch). Two things can break
the invariant, and each has a repair:

- In-process counters die with their process. `rebuild_memory_counters` replays the current
  windows' spend from the ledger at start, so a restarted single-machine gateway enforces the
  same budgets it did before.
- A replica killed mid-request leaves reservations open in Redis. `settle_abandoned` settles each
  one: with the ledger's cost when the record was written (the crash came after the commit),
  otherwise by writing an `interrupted` record charged at the reserved worst case (what was
  generated is unknown, and an unbilled request is worse than an over-billed one), then settling
  with that. The record's request id makes both paths happen at most once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, func, select

from modelyard.db.schema import usage_records
from modelyard.errors import InternalError
from modelyard.ledger.records import UsageRecord
from modelyard.ledger.store import LedgerStore
from modelyard.limits.keys import BudgetKey, is_rebuild, rebuild_id
from modelyard.limits.store import CounterStore
from modelyard.limits.values import MAX_COUNT, BudgetLimit, OpenReservation
from modelyard.policy.spending import Period, window_end, window_label, window_start

log = logging.getLogger(__name__)


async def settle_written(counters: CounterStore, records: Sequence[UsageRecord]) -> None:
    """Settle the reservations of committed records with their actual cost."""
    await counters.settle_many([(r.request_id, r.cost_micros) for r in records])


async def rebuild_memory_counters(
    counters: CounterStore, engine: Engine, owner: str, now: datetime | None = None
) -> int:
    """Count the current day, month and total spend of every project and key from the ledger."""
    now = now or datetime.now(UTC)
    spent = await asyncio.to_thread(_spend_by_window, engine, now)
    for key, (amount, expires_at) in spent.items():
        reservation = rebuild_id(key)
        await counters.reserve(reservation, [BudgetLimit(key, MAX_COUNT, expires_at)], 0, owner)
        await counters.settle(reservation, amount)
    return len(spent)


def _spend_by_window(engine: Engine, now: datetime) -> dict[str, tuple[int, datetime | None]]:
    spent: dict[str, tuple[int, datetime | None]] = {}
    with engine.connect() as connection:
        for period in Period:
            since = window_start(period, now)
            for scope, column in (
                ("project", usage_records.c.project_id),
                ("key", usage_records.c.key_id),
            ):
                rows = connection.execute(
                    select(column, func.sum(usage_records.c.cost_micros))
                    .where(usage_records.c.created_at >= since, column.is_not(None))
                    .group_by(column)
                )
                for scope_id, amount in rows:
                    key = str(BudgetKey(scope, scope_id, str(period), window_label(period, now)))
                    spent[key] = (int(amount or 0), window_end(period, now))
    return spent


async def settle_abandoned(
    counters: CounterStore,
    ledger: LedgerStore,
    *,
    owner: str | None,
    older_than: timedelta = timedelta(0),
    now: datetime | None = None,
    written: Callable[[Sequence[UsageRecord]], None] | None = None,
) -> int:
    """Settle open reservations of `owner` (None: of anyone) older than `older_than`; the
    `interrupted` records written for those the ledger lacks are passed to `written`."""
    now = now or datetime.now(UTC)
    stale = [
        r
        for r in await counters.open_reservations(owner)
        if now - r.created_at >= older_than and not is_rebuild(r.reservation_id)
    ]
    if not stale:
        return 0
    costs = await asyncio.to_thread(ledger.costs, [r.reservation_id for r in stale])
    missing = [_interrupted(r, now) for r in stale if r.reservation_id not in costs]
    if missing:
        await asyncio.to_thread(ledger.write, missing)
        if written is not None:
            written(missing)
        costs.update(await asyncio.to_thread(ledger.costs, [r.request_id for r in missing]))
    for reservation in stale:
        await counters.settle(reservation.reservation_id, costs[reservation.reservation_id])
    log.info("reconciled %d open reservations (%d interrupted)", len(stale), len(missing))
    return len(stale)


def _interrupted(reservation: OpenReservation, now: datetime) -> UsageRecord:
    scope_ids = _scope_ids(reservation.budget_keys)
    return UsageRecord(
        request_id=reservation.reservation_id,
        created_at=reservation.created_at,
        subject="unknown",
        key_id=scope_ids.get("key"),
        project_id=scope_ids.get("project", "unknown"),
        model="unknown",
        deployment="unknown",
        route_reason="the replica serving it stopped before the request finished",
        prompt_tokens=0,
        cached_prompt_tokens=0,
        completion_tokens=0,
        cost_micros=reservation.amount_micros,
        reserved_micros=reservation.amount_micros,
        latency_ms=int((now - reservation.created_at).total_seconds() * 1000),
        status=InternalError.status,  # the request never answered
        outcome="interrupted",
        client_disconnected=False,
        usage_estimated=True,
    )


def _scope_ids(keys: Sequence[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for key in keys:
        budget = BudgetKey.parse(key)
        if budget is not None:
            found.setdefault(budget.scope, budget.scope_id)
    return found
