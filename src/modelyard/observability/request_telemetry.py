"""What one HTTP request leaves for the operator: the facts its metrics, its access-log line and
its trace's server span are made of, gathered in one place and handed to the sinks once.

Two sides fill it. The HTTP side (`api/middleware.py` `TelemetryMiddleware`) knows the method,
the matched route, the status and the duration; it makes the object, sets it as the request's
`current_request`, and says when the response has gone. An admitted request's lifecycle
(`serving/lifecycle.py`) knows the rest (project, deployment, tokens, cost, attempts, time to
first token) and says so when it leaves, which for a client that left mid-stream can be after
the response has gone. Whichever side finishes last hands the whole to every sink, exactly once.

No content is ever kept here: only names from the catalog and the configuration, counts and
times.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class AttemptFacts:
    """One generation on one deployment, as an upstream call (a GenAI client operation)."""

    deployment: str
    provider: str
    model: str
    duration_s: float
    prompt_tokens: int
    completion_tokens: int
    # The error's code when the attempt failed; None when it answered.
    error_code: str | None = None


@dataclass(frozen=True)
class AdmittedFacts:
    """What the lifecycle of an admitted request knows once it has left."""

    project_id: str
    # The name the client asked for (a model, an alias or a route) as the catalog spells it.
    request_model: str
    # The deployment and model that gave (or last tried to give) the answer.
    deployment: str
    provider: str
    response_model: str
    # The route the client named, if any.
    route: str | None
    status: int
    error_code: str | None
    prompt_tokens: int
    completion_tokens: int
    cost_micros: int
    attempts: tuple[AttemptFacts, ...]
    # From the request's start to the answering attempt's first output, and between output
    # tokens after it; None when there was no output (or one token only, for the latter).
    time_to_first_token_s: float | None
    time_per_output_token_s: float | None
    client_left: bool = False
    # The upstream reported no usage: the tokens are the gateway's estimate.
    usage_estimated: bool = False
    operation: str = "chat"
    # Why each choice of the answer ended (`stop`, `length`, `tool_calls`), when it did.
    finish_reasons: tuple[str, ...] = ()


class TelemetrySink(Protocol):
    def request_finished(self, request: RequestTelemetry) -> None: ...


@dataclass(eq=False)
class RequestTelemetry:
    request_id: str
    method: str
    sinks: Sequence[TelemetrySink]
    started: float = field(default_factory=time.perf_counter)
    # The route's path template (`/v1/responses/{response_id}`); None when no route matched.
    http_route: str | None = None
    status: int = 0
    # The code of the error the gateway answered with, if it answered with one.
    error_code: str | None = None
    # The limit that refused the request before admission (`concurrency`, `rpm_key`,
    # `budget_project`, `backlog`), if one did.
    refusal: str | None = None
    duration_s: float = 0.0
    admitted: AdmittedFacts | None = None
    # The W3C trace id (32 hex digits) when the request is traced.
    trace_id: str | None = None
    # The tracing sink's own state for this request (its server span), opaque to the others.
    span: Any = None
    _awaiting_admitted: bool = False
    _http_done: bool = False
    _finished: bool = False

    def expect_admitted(self) -> None:
        """An admitted request's lifecycle will report: the sinks wait for it."""
        self._awaiting_admitted = True

    def http_finished(self, status: int) -> None:
        """The response has gone (or the connection with it)."""
        if self._http_done:
            return
        self._http_done = True
        self.status = status
        self.duration_s = time.perf_counter() - self.started
        self._finish_when_done()

    def lifecycle_left(self, facts: AdmittedFacts) -> None:
        self.admitted = facts
        self._awaiting_admitted = False
        self._finish_when_done()

    def _finish_when_done(self) -> None:
        if self._finished or not self._http_done or self._awaiting_admitted:
            return
        self._finished = True
        for sink in self.sinks:
            sink.request_finished(self)

    @property
    def final_status(self) -> int:
        """The request's status as its record keeps it: an error inside a stream that began
        with 200 counts as that error."""
        return self.admitted.status if self.admitted is not None else self.status

    @property
    def final_error_code(self) -> str | None:
        return self.admitted.error_code if self.admitted is not None else self.error_code


# The request being answered; set by the HTTP middleware for the request's task and the tasks it
# starts, read by the lifecycle when the request is admitted.
current_request: ContextVar[RequestTelemetry | None] = ContextVar("current_request", default=None)


def note_error_code(code: str) -> None:
    """The gateway is answering the current request with an error of this code."""
    request = current_request.get()
    if request is not None:
        request.error_code = code


def note_refusal(reason: str) -> None:
    """A limit refused the current request before admission."""
    request = current_request.get()
    if request is not None:
        request.refusal = reason
