"""Admission of one request: everything that must hold before a model is called.

In order: a place in the ledger writer's backlog (and, for a project that keeps content, in the
content writer's), so that what the request will owe can never be refused later; then, in one
atomic counter-store call, a concurrency lease, the sliding-minute request and token windows of
the key, the project and the deployment, and a reservation of the worst-case cost against every
budget of the key and the project. All are taken, or the first to refuse is answered (429, or
503 for a full backlog) and none is. Any counter-store failure refuses the request (fail
closed). What follows admission belongs to the returned `RequestLifecycle` (`lifecycle.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from modelyard.auth.directory import Directory, ProjectRecord
from modelyard.auth.principal import Principal
from modelyard.catalog.cards import Deployment
from modelyard.db.background_writer import BackgroundWriter
from modelyard.errors import BacklogFull
from modelyard.ledger.cost import worst_case_micros
from modelyard.limits.keys import RateKey
from modelyard.limits.values import Admitted, RateWindow
from modelyard.observability.request_telemetry import note_refusal
from modelyard.observability.tracing import traced_call
from modelyard.serving.admission_plan import AdmissionPlan
from modelyard.serving.lifecycle import Recording, RequestLifecycle
from modelyard.serving.refusals import ratelimit_headers, refusal, refusal_reason

# Admission plans kept (one per caller and deployment); past this the cache starts afresh.
MAX_PLANS = 10_000


class Admissions:
    def __init__(self, directory: Directory, recording: Recording, owner: str) -> None:
        self._directory = directory
        self._recording = recording
        self._counters = recording.counters
        # Who holds the reservations this replica makes (for reconciliation after a crash).
        self._owner = owner
        self._plans: dict[tuple[str, str | None, str], AdmissionPlan] = {}

    @traced_call("admission")
    async def admit(
        self,
        principal: Principal,
        project: ProjectRecord,
        model: str,
        candidates: Sequence[tuple[Deployment, int]],
        request_id: str,
        prompt_bound: int,
    ) -> RequestLifecycle:
        """`candidates`: every deployment the request may reach, with the output tokens it may
        produce there; the first is the one it goes to first (its rate windows are taken here,
        the others' when an attempt reaches them) and the reservation covers the dearest."""
        deployment = candidates[0][0]
        lifecycle = RequestLifecycle(
            request_id,
            principal,
            project.id,
            model,
            deployment,
            max(worst_case_micros(d.price, prompt_bound, output) for d, output in candidates),
            self._recording,
            content_retention_days=project.content_retention_days,
        )
        max_output_tokens = candidates[0][1]
        claimed = self._claim_backlog(lifecycle)
        if not self._recording.accounting:
            lifecycle.report_to_current_request()
            return lifecycle
        plan = self._plan(lifecycle)
        lease_key = None if plan.lease is None else plan.lease.key
        try:
            result = await self._counters.admit_request(
                request_id,
                lease=plan.lease,
                windows=plan.windows(prompt_bound + max_output_tokens),
                budgets=plan.budgets,
                amount_micros=lifecycle.reserved_micros,
                owner=self._owner,
            )
        except BaseException:
            _release(claimed)
            # The store may have admitted before the answer was lost (a timeout, a client gone
            # mid-call): give back the lease and the token estimates, without waiting for it.
            self._recording.release_limits_later(request_id, lease_key, plan.tpm_keys, 0)
            raise
        if not isinstance(result, Admitted):
            _release(claimed)
            note_refusal(refusal_reason(result))
            raise refusal(result)
        lifecycle.lease_key = lease_key
        lifecycle.tpm_keys = plan.tpm_keys
        if result.at is not None:
            lifecycle.created_at = result.at
        lifecycle.ratelimit_headers = ratelimit_headers(result)
        lifecycle.report_to_current_request()
        return lifecycle

    async def admit_deployment(self, deployment: Deployment, attempt_id: str, tokens: int) -> bool:
        """Log one attempt in the deployment's own rate windows (a fallback's: the first
        deployment's were taken at admission); False when one is full."""
        limits = deployment.limits
        if not self._recording.accounting or (
            limits.requests_per_minute is None and limits.tokens_per_minute is None
        ):
            return True
        windows = []
        if limits.requests_per_minute is not None:
            rpm = RateKey("rpm", "deployment", deployment.id)
            windows.append(RateWindow(str(rpm), limits.requests_per_minute, 1))
        if limits.tokens_per_minute is not None:
            tpm = RateKey("tpm", "deployment", deployment.id)
            limit = limits.tokens_per_minute
            windows.append(RateWindow(str(tpm), limit, min(tokens, limit)))
        try:
            return isinstance(await self._counters.admit(attempt_id, windows), Admitted)
        except Exception:  # fail closed, as admission does: this candidate is passed over
            return False

    def _claim_backlog(self, lifecycle: RequestLifecycle) -> list[BackgroundWriter[Any]]:
        """Places for the records this request will leave, or BacklogFull with none taken."""
        writers: list[BackgroundWriter[Any]] = []
        if self._recording.accounting:
            writers.append(self._recording.ledger)
        if lifecycle.keeps_content:
            writers.append(self._recording.content)
        claimed: list[BackgroundWriter[Any]] = []
        for writer in writers:
            if not writer.claim():
                _release(claimed)
                note_refusal("backlog")
                raise BacklogFull(
                    f"The gateway cannot record more requests for now: its {writer.name} is "
                    "behind (the database is slow or away). Retry shortly.",
                    retry_after_s=2,
                )
            claimed.append(writer)
        return claimed

    def _plan(self, lifecycle: RequestLifecycle) -> AdmissionPlan:
        """The counters this caller's requests to this deployment take, built once per minute
        and per change of limits rather than once per request."""
        key_id = lifecycle.principal.key_id
        scopes = [("project", lifecycle.project_id)]
        if key_id is not None:
            scopes.append(("key", key_id))
        limits = tuple(self._directory.limits_of(s, i) for s, i in scopes)
        minute: datetime = lifecycle.created_at.replace(second=0, microsecond=0)
        cache_key = (lifecycle.project_id, key_id, lifecycle.deployment.id)
        plan = self._plans.get(cache_key)
        if plan is None or not plan.current(limits, minute, lifecycle.deployment):
            if len(self._plans) >= MAX_PLANS:
                self._plans.clear()
            plan = AdmissionPlan.build(
                [(s, i, lim) for (s, i), lim in zip(scopes, limits, strict=True)],
                lifecycle.deployment,
                minute,
            )
            self._plans[cache_key] = plan
        return plan


def _release(claimed: list[BackgroundWriter[Any]]) -> None:
    for writer in claimed:
        writer.release()
