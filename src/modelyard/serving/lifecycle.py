"""The life of one admitted request, from its reservation to what it leaves behind.

`Admissions` (in `admission.py`) admits a request and hands back its `RequestLifecycle`. From
then on every use-case reports to that one object, and to nothing else:

    attempt(stream) / attempt_opened()   each generation the request opens (a repair is another)
    attempt_reported(usage)              its final usage, however it ended
    keep_content(prompt, completion)     only for projects that opted in to content logging
    end(Completed() | ClientLeft() | Failed(error))
    response_headers(), cost_header()    what the client sees

Once the request has ended and every attempt has reported, the lifecycle leaves, exactly once:
one usage record queued to the ledger's background writer (which settles the budget
reservation once the record is committed), the usage metered, and the concurrency lease and
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
    InternalError,
    ModelyardError,
)
from modelyard.ledger.cost import COST_HEADER, cost_micros
from modelyard.ledger.records import Outcome, UsageRecord
from modelyard.limits.store import CounterStore
from modelyard.money import dollars
from modelyard.observability.usage_meter import UsageMeter
from modelyard.protocol.generation import Usage
from modelyard.providers.base import ChatStream

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
        meter: UsageMeter,
        counters: CounterStore,
        *,
        accounting: bool = True,
    ) -> None:
        self.ledger = ledger
        self.content = content
        self.meter = meter
        self.counters = counters
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
    ratelimit_headers: dict[str, str] = field(default_factory=dict)
    lease_key: str | None = None
    tpm_keys: tuple[str, ...] = ()
    started: float = field(default_factory=time.monotonic)
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    # Set once the client is known to have gone (before the attempts report their usage).
    client_left: bool = False
    _usages: list[Usage] = field(default_factory=list)
    _open_attempts: int = 0
    _ending: Ending | None = None
    _content_kept: bool = False
    _left: bool = False

    # -- attempts --------------------------------------------------------------------------------

    def attempt(self, stream: ChatStream) -> ChatStream:
        """Count a generation of this request; its usage reports here however it ends."""
        self.attempt_opened()
        stream.on_usage(self.attempt_reported)
        return stream

    def attempt_opened(self) -> None:
        self._open_attempts += 1

    def attempt_reported(self, usage: Usage) -> None:
        self.recording.meter.record(self.deployment.id, self.model, usage, self.client_left)
        self._usages.append(usage)
        self._open_attempts -= 1
        self._leave_when_done()

    def cost_micros(self) -> int:
        """What the attempts reported so far cost."""
        return sum(cost_micros(self.deployment.price, usage) for usage in self._usages)

    # -- what the client sees ----------------------------------------------------------------------

    def response_headers(self) -> dict[str, str]:
        return {
            "x-modelyard-deployment": self.deployment.id,
            "x-modelyard-route-reason": self.route_reason,
            **self.ratelimit_headers,
        }

    def cost_header(self) -> dict[str, str]:
        return {COST_HEADER: dollars(self.cost_micros())}

    # -- the ending ------------------------------------------------------------------------------

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
        self._leave_when_done()

    def _leave_when_done(self) -> None:
        if self._left or self._ending is None or self._open_attempts > 0:
            return
        self._left = True
        if self.keeps_content and not self._content_kept:
            self.recording.content.release()
        if not self.recording.accounting:
            return
        usage = Usage(
            prompt_tokens=sum(u.prompt_tokens for u in self._usages),
            completion_tokens=sum(u.completion_tokens for u in self._usages),
            estimated=any(u.estimated for u in self._usages),
            cached_prompt_tokens=sum(u.cached_prompt_tokens for u in self._usages),
        )
        self.recording.ledger.submit(self._usage_record(self._ending, usage))
        self.recording.release_limits_later(
            self.request_id, self.lease_key, self.tpm_keys, usage.total_tokens
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
            route_reason=self.route_reason,
            prompt_tokens=usage.prompt_tokens,
            cached_prompt_tokens=usage.cached_prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cost_micros=cost_micros(self.deployment.price, usage),
            reserved_micros=self.reserved_micros,
            latency_ms=int((time.monotonic() - self.started) * 1000),
            status=status,
            outcome=outcome,
            client_disconnected=self.client_left,
            usage_estimated=usage.estimated,
        )
