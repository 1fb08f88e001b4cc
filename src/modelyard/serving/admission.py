"""Admission and settlement of one request: the ledger slot, the concurrency cap, rate limits and
budgets before the model is called; one usage record after, whatever the ending.

Before: a slot in the ledger writer (so the record can never be dropped), then in one atomic
counter-store call a concurrency lease, the sliding-minute request and token windows of the key,
the project and the deployment, and a reservation of the worst-case cost against every budget of
the key and the project: all are taken, or the first to refuse is answered and none is. Any
counter store failure refuses the request (fail closed).

After: the usage of every generation the request opened (a repair attempt is another) is added
up once the request is over and every generation has reported, streamed tokens and abandoned
streams included. The record is queued; the ledger writer settles the reservation with the
actual cost once the record is committed, so budgets only ever count what the ledger holds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from modelyard.auth.directory import Directory
from modelyard.auth.principal import Principal
from modelyard.catalog.cards import Deployment
from modelyard.errors import InsufficientQuota, RateLimited, ServiceUnavailable
from modelyard.ledger.cost import cost_micros, dollars, worst_case_micros
from modelyard.ledger.records import Outcome, UsageRecord
from modelyard.ledger.writer import LedgerWriter
from modelyard.limits.store import CounterStore
from modelyard.limits.values import (
    Admitted,
    LeaseRefused,
    OverBudget,
    Throttled,
    WindowState,
)
from modelyard.protocol.chat import ChatCompletionRequest
from modelyard.providers.base import Usage
from modelyard.serving.admission_plan import AdmissionPlan

log = logging.getLogger(__name__)

# Text the gateway itself may add to a prompt (tool-calling instructions, chat template tokens).
GATEWAY_PROMPT_ALLOWANCE = 1024
# Admission plans kept (one per caller and deployment); past this the cache starts afresh.
MAX_PLANS = 10_000


def chat_prompt_bound(request: ChatCompletionRequest) -> int:
    """An upper bound on prompt tokens without a tokenizer: every token is at least one byte of
    the serialized messages, tools and schema, plus what the gateway adds."""
    parts = request.model_dump(include={"messages", "tools", "response_format"}, mode="json")
    return len(orjson.dumps(parts)) + GATEWAY_PROMPT_ALLOWANCE


@dataclass
class Admission:
    """One admitted request, from its reservation to its usage record."""

    request_id: str
    principal: Principal
    project_id: str
    model: str
    deployment: Deployment
    reserved_micros: int
    control: AdmissionControl = field(repr=False)
    route_reason: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    lease_key: str | None = None
    tpm_keys: tuple[str, ...] = ()
    started: float = field(default_factory=time.monotonic)
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    _usages: list[Usage] = field(default_factory=list)
    _open_generations: int = 0
    _over: bool = False
    _status: int = 200
    _client_left: bool = False
    _recorded: bool = False

    def generation_opened(self) -> None:
        self._open_generations += 1

    def usage_reported(self, usage: Usage) -> None:
        self._usages.append(usage)
        self._open_generations -= 1
        self._maybe_record()

    def over(self, status: int, client_left: bool = False) -> None:
        """The request ended on the API side; the record follows once usage is all in."""
        if self._over:
            return
        self._over = True
        self._status = status
        self._client_left = client_left
        self._maybe_record()

    def _maybe_record(self) -> None:
        if self._recorded or not self._over or self._open_generations > 0:
            return
        self._recorded = True
        usage = Usage(
            prompt_tokens=sum(u.prompt_tokens for u in self._usages),
            completion_tokens=sum(u.completion_tokens for u in self._usages),
            estimated=any(u.estimated for u in self._usages),
            cached_prompt_tokens=sum(u.cached_prompt_tokens for u in self._usages),
        )
        self.control.record(self, usage, self._status, self._client_left)

    def cost_so_far(self) -> int:
        return sum(cost_micros(self.deployment.price, u) for u in self._usages)


class AdmissionControl:
    def __init__(
        self, directory: Directory, counters: CounterStore, owner: str, enabled: bool = True
    ) -> None:
        self._enabled = enabled
        self._directory = directory
        self._counters = counters
        self._owner = owner
        self._writer: LedgerWriter
        self._background: set[asyncio.Task[None]] = set()
        self._plans: dict[tuple[str, str | None, str], AdmissionPlan] = {}

    def attach_writer(self, writer: LedgerWriter) -> None:
        """The writer settles through this object and this object feeds the writer."""
        self._writer = writer

    async def admit(
        self,
        principal: Principal,
        project_id: str,
        model: str,
        deployment: Deployment,
        request_id: str,
        prompt_bound: int,
        max_output_tokens: int,
    ) -> Admission:
        worst = worst_case_micros(deployment.price, prompt_bound, max_output_tokens)
        admission = Admission(
            request_id, principal, project_id, model, deployment, worst, control=self
        )
        if not self._enabled:
            return admission
        plan = self._plan(admission)
        lease = plan.lease
        windows = plan.windows(prompt_bound + max_output_tokens)
        tpm_keys = plan.tpm_keys
        budgets = plan.budgets
        if not self._writer.claim_slot():
            raise ServiceUnavailable(
                "The usage ledger is behind (the database is slow or away); retry shortly.",
                retry_after_s=2,
            )
        try:
            result = await self._counters.admit_request(
                request_id,
                lease=lease,
                windows=windows,
                budgets=budgets,
                amount_micros=worst,
                owner=self._owner,
            )
        except BaseException:
            self._writer.release_slot()
            # The store may have admitted before the answer was lost (a timeout, a client gone
            # mid-call): give back the lease and the token estimates, without waiting for it.
            lease_key = None if lease is None else lease.key
            self._spawn(self._release(request_id, lease_key, tpm_keys, 0))
            raise
        if not isinstance(result, Admitted):
            self._writer.release_slot()
            raise _refusal(result)
        admission.lease_key = None if lease is None else lease.key
        admission.tpm_keys = tpm_keys
        if result.at is not None:
            admission.created_at = result.at
        admission.headers.update(_ratelimit_headers(result))
        return admission

    def _plan(self, admission: Admission) -> AdmissionPlan:
        """The counters this caller's requests to this deployment take, built once per minute
        and per change of limits rather than once per request."""
        key_id = admission.principal.key_id
        scopes = [("project", admission.project_id)]
        if key_id is not None:
            scopes.append(("key", key_id))
        limits = tuple(self._directory.limits_of(s, i) for s, i in scopes)
        minute = admission.created_at.replace(second=0, microsecond=0)
        cache_key = (admission.project_id, key_id, admission.deployment.id)
        plan = self._plans.get(cache_key)
        if plan is None or not plan.current(limits, minute, admission.deployment):
            if len(self._plans) >= MAX_PLANS:
                self._plans.clear()
            plan = AdmissionPlan.build(
                [(s, i, lim) for (s, i), lim in zip(scopes, limits, strict=True)],
                admission.deployment,
                minute,
            )
            self._plans[cache_key] = plan
        return plan

    def record(self, admission: Admission, usage: Usage, status: int, client_left: bool) -> None:
        if not self._enabled:
            return
        outcome: Outcome = (
            "client_disconnected" if client_left else "completed" if status < 400 else "failed"
        )
        record = UsageRecord(
            request_id=admission.request_id,
            created_at=admission.created_at,
            subject=admission.principal.subject,
            key_id=admission.principal.key_id,
            project_id=admission.project_id,
            model=admission.model,
            deployment=admission.deployment.id,
            route_reason=admission.route_reason,
            prompt_tokens=usage.prompt_tokens,
            cached_prompt_tokens=usage.cached_prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cost_micros=cost_micros(admission.deployment.price, usage),
            reserved_micros=admission.reserved_micros,
            latency_ms=int((time.monotonic() - admission.started) * 1000),
            status=status,
            outcome=outcome,
            client_disconnected=client_left,
            usage_estimated=usage.estimated,
        )
        self._writer.submit(record)
        self._spawn(self._after(admission, usage))

    async def _after(self, admission: Admission, usage: Usage) -> None:
        """Replace token estimates with what was counted, and free the concurrency lease."""
        await self._release(
            admission.request_id, admission.lease_key, admission.tpm_keys, usage.total_tokens
        )

    async def _release(
        self, request_id: str, lease_key: str | None, tpm_keys: Sequence[str], tokens: int
    ) -> None:
        if lease_key is None and not tpm_keys:
            return
        try:
            await self._counters.finish_request(
                request_id,
                lease_key=lease_key,
                tpm_adjustments=[(key, tokens) for key in tpm_keys],
            )
        except Exception as exc:  # the lease expires and the window ages out regardless
            log.warning("admission: releasing limits failed (%s)", type(exc).__name__)

    async def settle_written(self, records: Sequence[UsageRecord]) -> None:
        """The ledger writer's hook: a committed record settles its reservation."""
        await self._counters.settle_many([(r.request_id, r.cost_micros) for r in records])

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _refusal(result: LeaseRefused | Throttled | OverBudget) -> RateLimited | InsufficientQuota:
    """The error a client sees for the counter store's refusal."""
    if isinstance(result, LeaseRefused):
        return RateLimited(
            f"Too many requests in flight for this key (at most {result.cap} at once).",
            retry_after_s=1,
        )
    if isinstance(result, Throttled):
        retry = result.retry_after_s
        return RateLimited(
            f"Rate limit reached: {result.reason}.",
            retry_after_s=max(1, int(retry + 0.999)) if retry is not None else 60,
            headers=_throttled_headers(result),
        )
    return InsufficientQuota(
        f"Budget exceeded: {_budget_words(result)}. Remaining: "
        f"${dollars(result.remaining_micros)}; this request may cost up to "
        f"${dollars(result.requested_micros)}.",
        retry_after_s=60,
        headers={"x-modelyard-budget-remaining-usd": dollars(result.remaining_micros)},
    )


def _budget_words(over: OverBudget) -> str:
    parts = over.key.split(":")
    if len(parts) != 5:
        return f"budget '{over.key}'"
    _, scope, scope_id, period, window = parts
    return f"the {scope} '{scope_id}' {period} budget ({window})"


def _ratelimit_headers(admitted: Admitted) -> dict[str, str]:
    # The tightest window of each kind is what a client should pace itself by.
    tightest: dict[str, WindowState] = {}
    for window in admitted.windows:
        kind = window.key[:3]
        current = tightest.get(kind)
        if current is None or window.remaining < current.remaining:
            tightest[kind] = window
    headers: dict[str, str] = {}
    for kind, name in (("rpm", "requests"), ("tpm", "tokens")):
        state = tightest.get(kind)
        if state is not None:
            headers[f"x-ratelimit-limit-{name}"] = str(state.limit)
            headers[f"x-ratelimit-remaining-{name}"] = str(state.remaining)
            headers[f"x-ratelimit-reset-{name}"] = f"{state.reset_after_s:.3f}s"
    return headers


def _throttled_headers(throttled: Throttled) -> dict[str, str]:
    name = "requests" if throttled.key.startswith("rpm:") else "tokens"
    return {
        f"x-ratelimit-limit-{name}": str(throttled.limit),
        f"x-ratelimit-remaining-{name}": str(throttled.remaining),
    }
