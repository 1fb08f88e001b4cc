"""The life of one admitted request, from its reservation to what it leaves behind.

`Admissions` (in `admission.py`) admits a request and hands back its `RequestLifecycle`. From
then on every use-case reports to that one object, and to nothing else:

    begin_attempt(deployment, model)     each generation the request opens, on any deployment
    attach(attempt, stream)              (a repair or a fallback is another); its usage reports
    attempt_failed(attempt, error)       here however it ends, a failure before output too
    first_output(attempt)                when its first token came (latency averages)
    keep_content(prompt, completion)     only for projects that opted in to content logging
    end(Completed() | ClientLeft() | Failed(error))
    response_headers(), cost_header()    what the client sees

Each attempt that ends tells the deployment's stats (`routing/deployment_stats.py`): in flight,
latency, and the circuit breaker's verdict (a failure of the deployment, a success, or no
verdict when the client left). Once the request has ended and every attempt has reported, the
lifecycle leaves, exactly once: one usage record with every attempt, billed at each attempt's
own deployment price, queued to the ledger's background writer (which settles the budget
reservation once the record is committed), the request's telemetry told what it came to
(metrics, access log, trace), and the concurrency lease and
token estimates released. Its place in the writers' backlogs was claimed at admission, so none
of this can be refused or dropped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from modelyard.audit.content_log import ContentRecord
from modelyard.auth.principal import Principal
from modelyard.catalog.cards import Deployment
from modelyard.db.background_writer import BackgroundWriter
from modelyard.errors import (
    CLIENT_CLOSED_STATUS,
    OK_STATUS,
    DeadlineExceeded,
    EngineBusy,
    InternalError,
    ModelyardError,
    RateLimited,
)
from modelyard.ledger.cost import COST_HEADER, cost_micros
from modelyard.ledger.records import Outcome, UsageRecord
from modelyard.limits.store import CounterStore
from modelyard.money import dollars
from modelyard.observability.request_telemetry import (
    AdmittedFacts,
    AttemptFacts,
    RequestTelemetry,
    current_request,
)
from modelyard.observability.tracing import AttemptSpan, recorded
from modelyard.protocol.generation import Usage
from modelyard.providers.base import ChatStream
from modelyard.routing.deployment_stats import Fleet

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Completed:
    """The answer was given whole."""


@dataclass(frozen=True)
class ClientLeft:
    """The client went away before the answer was complete."""


@dataclass(frozen=True)
class Failed:
    error: ModelyardError


Ending = Completed | ClientLeft | Failed


def ending_for(exc: BaseException) -> Ending:
    """How a request ended when this exception left the code answering it."""
    if isinstance(exc, ModelyardError):
        return Failed(exc)
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        return ClientLeft()  # the client's watcher cancelled the answer, or the stream closed
    return Failed(InternalError("The gateway failed while answering."))


def status_of(ending: Ending) -> int:
    if isinstance(ending, Failed):
        return ending.error.status
    return OK_STATUS if isinstance(ending, Completed) else CLIENT_CLOSED_STATUS


class Recording:
    """Where every request's lifecycle leaves what it owes; one per application."""

    def __init__(
        self,
        ledger: BackgroundWriter[UsageRecord],
        content: BackgroundWriter[ContentRecord],
        counters: CounterStore,
        fleet: Fleet,
        *,
        accounting: bool = True,
    ) -> None:
        self.ledger = ledger
        self.content = content
        self.counters = counters
        self.fleet = fleet
        # False only in benchmarks that measure what accounting costs: nothing billed or limited.
        self.accounting = accounting
        self._tasks: set[asyncio.Task[None]] = set()

    def release_limits_later(
        self, request_id: str, lease_key: str | None, tpm_keys: Sequence[str], tokens: int
    ) -> None:
        """Free the concurrency lease and replace token estimates with `tokens`, off the path."""
        if lease_key is not None or tpm_keys:
            self._spawn(self._release_limits(request_id, lease_key, tpm_keys, tokens))

    async def _release_limits(
        self, request_id: str, lease_key: str | None, tpm_keys: Sequence[str], tokens: int
    ) -> None:
        try:
            await self.counters.finish_request(
                request_id,
                lease_key=lease_key,
                tpm_adjustments=[(key, tokens) for key in tpm_keys],
            )
        except Exception as exc:  # the lease expires and the window ages out regardless
            log.warning("releasing limits failed (%s)", type(exc).__name__)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


@dataclass
class Attempt:
    """One generation on one deployment."""

    deployment: Deployment
    model: str
    started: float
    # Whether its deployment's circuit breaker let it through (and so awaits a verdict).
    admitted: bool = False
    first_output_at: float | None = None
    usage: Usage | None = None
    error: ModelyardError | None = None
    ended_at: float | None = None
    # Its CLIENT span when the request is traced (`observability/tracing.py`).
    span: AttemptSpan | None = None

    def cost_micros(self) -> int:
        return cost_micros(self.deployment.price, self.usage) if self.usage is not None else 0

    def time_per_output_token(self) -> float | None:
        """Seconds between output tokens after the first, once the attempt has reported; None
        without a first output or a second token."""
        first, ended = self.first_output_at, self.ended_at
        tokens = self.usage.completion_tokens if self.usage is not None else 0
        if first is None or ended is None or tokens < 2:
            return None
        return (ended - first) / (tokens - 1)

    @property
    def duration_s(self) -> float:
        """From its start to its report (0 before it has reported)."""
        return 0.0 if self.ended_at is None else self.ended_at - self.started

    def facts(self) -> AttemptFacts:
        usage = self.usage or Usage(0, 0)
        return AttemptFacts(
            deployment=self.deployment.id,
            provider=self.deployment.provider,
            model=self.model,
            duration_s=self.duration_s,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            error_code=None if self.error is None else self.error.code,
        )

    def summary(self, final: bool, ending: Ending) -> dict[str, object]:
        """As the usage record keeps it."""
        if self.error is not None:
            outcome, status = self.error.code, self.error.status
        elif final:
            outcome, status = _ENDING_NAMES[type(ending)], status_of(ending)
        else:
            outcome, status = "replaced", OK_STATUS  # its output was generated again
        usage = self.usage or Usage(0, 0)
        return {
            "deployment": self.deployment.id,
            "outcome": outcome,
            "status": status,
            "latency_ms": int(self.duration_s * 1000),
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "cost_micros": self.cost_micros(),
        }


_ENDING_NAMES = {Completed: "completed", ClientLeft: "client_disconnected", Failed: "failed"}


def counts_against(error: ModelyardError) -> bool:
    """Whether an error is the deployment's failure (a circuit breaker counts it): it may pass
    elsewhere, and it is not a queue that is full or an upstream asking to slow down."""
    return error.retryable and not isinstance(error, RateLimited | EngineBusy)


@dataclass
class RequestLifecycle:
    request_id: str
    principal: Principal
    project_id: str
    model: str
    deployment: Deployment
    # The worst-case cost reserved against every budget at admission.
    reserved_micros: int
    recording: Recording = field(repr=False)
    # Days to keep this request's content; None (the default) keeps nothing.
    content_retention_days: int | None = None
    route_reason: str = ""
    # The route the client named (None for a model) and the arm its strategy chose first.
    route: str | None = None
    arm: str | None = None
    attempts: list[Attempt] = field(default_factory=list)
    ratelimit_headers: dict[str, str] = field(default_factory=dict)
    lease_key: str | None = None
    tpm_keys: tuple[str, ...] = ()
    # The GenAI operation (`chat`, `embeddings`) the request's metrics and spans name.
    operation: str = "chat"
    # Why the answer's choices ended, as the run saw them (for traces).
    finish_reasons: list[str] = field(default_factory=list)
    # The HTTP request's telemetry, told what the request came to when the lifecycle leaves.
    telemetry: RequestTelemetry | None = None
    started: float = field(default_factory=time.monotonic)
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    # Set once the client is known to have gone (before the attempts report their usage).
    client_left: bool = False
    _open_attempts: int = 0
    # The model admitted (before fallbacks moved `model` on): the request model of its metrics.
    _requested_model: str = ""
    _ending: Ending | None = None
    _content_kept: bool = False
    _left: bool = False

    def __post_init__(self) -> None:
        self._requested_model = self.model

    # -- attempts --------------------------------------------------------------------------------

    def begin_attempt(
        self, deployment: Deployment, model: str, *, admitted: bool = False
    ) -> Attempt:
        """A generation starts on `deployment`; until it reports, the record waits for it."""
        attempt = Attempt(deployment, model, time.monotonic(), admitted=admitted)
        trace = recorded(self.telemetry)
        if trace is not None:
            attempt.span = trace.attempt_started(
                self.operation, model, deployment.id, deployment.provider
            )
        self.attempts.append(attempt)
        self.deployment, self.model = deployment, model
        self._open_attempts += 1
        self.recording.fleet.of(deployment.id).started()
        return attempt

    def attach(self, attempt: Attempt, stream: ChatStream) -> ChatStream:
        """The attempt's generation: its usage reports here once, however it ends."""
        stream.on_usage(lambda usage: self.attempt_reported(attempt, usage))
        return stream

    def first_output(self, attempt: Attempt) -> None:
        if attempt.first_output_at is None:
            attempt.first_output_at = time.monotonic()

    def attempt_failed(self, attempt: Attempt, error: ModelyardError, *, ended: bool) -> None:
        """The attempt failed; `ended` when no generation will report for it (it failed before
        one opened): what the upstream said it consumed, if anything, is its usage."""
        if attempt.error is None:
            attempt.error = error
        if ended:
            prompt, completion = error.upstream_usage or (0, 0)
            self.attempt_reported(attempt, Usage(prompt, completion))

    def attempt_reported(self, attempt: Attempt, usage: Usage) -> None:
        if attempt.ended_at is not None:
            return
        attempt.usage, attempt.ended_at = usage, time.monotonic()
        if attempt.span is not None:
            error_code = None if attempt.error is None else attempt.error.code
            attempt.span.ended(usage.prompt_tokens, usage.completion_tokens, error_code)
        self._tell_stats(attempt)
        self._open_attempts -= 1
        self._leave_when_done()

    def _tell_stats(self, attempt: Attempt) -> None:
        stats = self.recording.fleet.of(attempt.deployment.id)
        stats.finished()
        error = attempt.error
        if error is not None:
            stats.record_error(error.code, error.status)
            if isinstance(error, RateLimited) and error.retry_after_s:
                stats.rest(error.retry_after_s)
        if attempt.admitted:
            if error is not None and counts_against(error):
                stats.breaker.failed()
            elif isinstance(error, DeadlineExceeded) or (error is None and self.client_left):
                stats.breaker.released()  # no verdict: it was not allowed to finish
            else:
                stats.breaker.succeeded()
        first = attempt.first_output_at
        if error is None and first is not None and attempt.ended_at is not None:
            stats.observe(first - attempt.started, attempt.time_per_output_token())

    def cost_micros(self) -> int:
        """What the attempts reported so far cost, each at its deployment's price."""
        return sum(attempt.cost_micros() for attempt in self.attempts)

    # -- what the client sees ----------------------------------------------------------------------

    def response_headers(self) -> dict[str, str]:
        headers = {
            "x-modelyard-deployment": self.deployment.id,
            "x-modelyard-attempts": str(len(self.attempts)),
            "x-modelyard-route-reason": self.explained_route(),
            **self.ratelimit_headers,
        }
        if self.route is not None:
            headers["x-modelyard-route"] = self.route
        return headers

    def explained_route(self) -> str:
        """The router's reason, and when more than one attempt ran, what became of each."""
        if len(self.attempts) < 2:
            return self.route_reason
        tried = ", ".join(
            f"{a.deployment.id} ({a.error.code})" if a.error is not None else a.deployment.id
            for a in self.attempts
        )
        return f"{self.route_reason}; attempts: {tried}"

    def cost_header(self) -> dict[str, str]:
        return {COST_HEADER: dollars(self.cost_micros())}

    # -- the ending ------------------------------------------------------------------------------

    def report_to_current_request(self) -> None:
        """The request is admitted: its HTTP telemetry waits for what it comes to."""
        self.telemetry = current_request.get()
        if self.telemetry is not None:
            self.telemetry.expect_admitted()

    @property
    def keeps_content(self) -> bool:
        return self.content_retention_days is not None

    def keep_content(self, prompt: object, completion: object) -> None:
        """Queue the request's content, once, if its project opted in (its place is claimed)."""
        if self.content_retention_days is None or self._content_kept:
            return
        self._content_kept = True
        record = ContentRecord(
            self.project_id,
            self.request_id,
            self.model,
            prompt,
            completion,
            self.content_retention_days,
        )
        self.recording.content.submit(record)

    def mark_client_left(self) -> None:
        self.client_left = True

    def end(self, ending: Ending) -> None:
        """The request ended on the API side (the first ending counts); what it owes follows
        once every attempt has reported its usage."""
        if self._ending is not None:
            return
        self._ending = ending
        if isinstance(ending, ClientLeft):
            self.client_left = True
        if isinstance(ending, Failed) and self.attempts:
            # An error answer says what was tried as an answer would; its own headers win.
            ending.error.headers = {**self.response_headers(), **ending.error.headers}
        self._leave_when_done()

    def _leave_when_done(self) -> None:
        if self._left or self._ending is None or self._open_attempts > 0:
            return
        self._left = True
        if self.keeps_content and not self._content_kept:
            self.recording.content.release()
        usages = [a.usage for a in self.attempts if a.usage is not None]
        usage = Usage(
            prompt_tokens=sum(u.prompt_tokens for u in usages),
            completion_tokens=sum(u.completion_tokens for u in usages),
            estimated=any(u.estimated for u in usages),
            cached_prompt_tokens=sum(u.cached_prompt_tokens for u in usages),
        )
        if self.recording.accounting:
            self.recording.ledger.submit(self._usage_record(self._ending, usage))
            trace = recorded(self.telemetry)
            if trace is not None:
                trace.ledger_record_queued(self.request_id)
            self.recording.release_limits_later(
                self.request_id, self.lease_key, self.tpm_keys, usage.total_tokens
            )
        if self.telemetry is not None:
            self.telemetry.lifecycle_left(self._facts(self._ending, usage))

    def _facts(self, ending: Ending, usage: Usage) -> AdmittedFacts:
        final = self.attempts[-1] if self.attempts else None
        first = final.first_output_at if final is not None else None
        return AdmittedFacts(
            project_id=self.project_id,
            request_model=self._requested_model if self.route is None else self.route,
            deployment=self.deployment.id,
            provider=self.deployment.provider,
            response_model=self.model,
            route=self.route,
            status=status_of(ending),
            error_code=ending.error.code if isinstance(ending, Failed) else None,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cost_micros=self.cost_micros(),
            attempts=tuple(attempt.facts() for attempt in self.attempts),
            time_to_first_token_s=None if first is None else first - self.started,
            time_per_output_token_s=None if final is None else final.time_per_output_token(),
            client_left=self.client_left,
            usage_estimated=usage.estimated,
            operation=self.operation,
            finish_reasons=tuple(self.finish_reasons),
        )

    def _usage_record(self, ending: Ending, usage: Usage) -> UsageRecord:
        status = status_of(ending)
        outcome: Outcome = (
            "client_disconnected"
            if self.client_left
            else "completed"
            if isinstance(ending, Completed)
            else "failed"
        )
        return UsageRecord(
            request_id=self.request_id,
            created_at=self.created_at,
            subject=self.principal.subject,
            key_id=self.principal.key_id,
            project_id=self.project_id,
            model=self.model,
            deployment=self.deployment.id,
            route_reason=self.explained_route(),
            prompt_tokens=usage.prompt_tokens,
            cached_prompt_tokens=usage.cached_prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cost_micros=self.cost_micros(),
            reserved_micros=self.reserved_micros,
            latency_ms=int((time.monotonic() - self.started) * 1000),
            status=status,
            outcome=outcome,
            client_disconnected=self.client_left,
            usage_estimated=usage.estimated,
            route=self.route,
            arm=self.arm,
            attempts=tuple(
                attempt.summary(index == len(self.attempts) - 1, ending)
                for index, attempt in enumerate(self.attempts)
            ),
        )
