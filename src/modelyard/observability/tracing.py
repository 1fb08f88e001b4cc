"""OpenTelemetry traces of the gateway's requests, with the official SDK, off unless the standard
`OTEL_*` environment turns them on.

One SERVER span per HTTP request (`{method} {route}`), its parent the client's W3C
`traceparent`, ended once the request's `RequestTelemetry` is finished, with the HTTP and GenAI
semantic conventions' attributes and ours (`modelyard.*`). Under it: authentication, admission,
one CLIENT span per provider attempt (`chat {model}`; the upstream call carries its
`traceparent`), and under an attempt on the local engine its grammar compilation, its admission
by the engine and its wait for a slot; the ledger write of the request's usage record, timed by
the batch that wrote it (`ledger_written` observes the ledger's `BackgroundWriter`).

Child code reaches the request's spans through `current_request` (the `RequestTelemetry` keeps
its `RequestTrace` in `span`): `request_trace()`, `traced(name)`, `traced_call(name)`. When
tracing is off that slot is None, the SDK is never imported and a call site pays one lookup and
one `is None`.

No content is ever recorded: names from the catalog, counts, codes and times only; exceptions
give their class or error code, never their text.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar

from modelyard import __version__
from modelyard.errors import StartupError
from modelyard.observability.request_telemetry import RequestTelemetry, current_request

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span


class QueuedRecord(Protocol):
    """What the ledger writer's records are to traces (`ledger/records.py` `UsageRecord`)."""

    @property
    def request_id(self) -> str: ...


P = ParamSpec("P")
R = TypeVar("R")

PROTOCOLS = ("http/protobuf", "grpc")
_UNTRACED = contextlib.nullcontext()


def tracing_wanted(environ: Mapping[str, str]) -> bool:
    """Whether the standard environment asks for traces (an exporter or an OTLP endpoint)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter != "none"
    return bool(
        environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )


class Tracing:
    """The tracer provider of one application (not the global one: a test process builds
    several applications) and the `TelemetrySink` that ends each request's server span."""

    @classmethod
    def from_environment(cls, service_instance: str) -> Tracing | None:
        """Tracing as `OTEL_*` configures it, or None (and nothing imported) when it is off; a
        value the SDK cannot use stops start-up with one line. The exporters read their own
        endpoint, headers and timeout; the SDK its sampler and batching."""
        env = os.environ
        if not tracing_wanted(env):
            return None
        try:
            return cls(service_instance, _exporter(env), env)
        except (ValueError, TypeError) as exc:
            raise StartupError(f"OpenTelemetry tracing is misconfigured: {exc}") from None

    def __init__(
        self, service_instance: str, exporter: SpanExporter, environ: Mapping[str, str]
    ) -> None:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        resource = Resource.create(
            {
                "service.name": environ.get("OTEL_SERVICE_NAME") or "modelyard",
                "service.instance.id": service_instance,
                "service.version": __version__,
            }
        )
        # No sampler given: the SDK reads OTEL_TRACES_SAMPLER (parent-based always-on default).
        self.provider: TracerProvider = TracerProvider(resource=resource)
        self.provider.add_span_processor(BatchSpanProcessor(exporter))
        self.tracer = self.provider.get_tracer("modelyard", __version__)
        self.propagator = TraceContextTextMapPropagator()
        self.in_context = trace.set_span_in_context
        self.error_status = trace.Status(trace.StatusCode.ERROR)
        self.server_kind = trace.SpanKind.SERVER
        self.client_kind = trace.SpanKind.CLIENT
        # Requests whose usage record is queued to the ledger writer, by request id.
        self._ledger_pending: dict[str, RequestTrace] = {}

    # -- the HTTP side --------------------------------------------------------------------------

    def start_request(
        self, telemetry: RequestTelemetry, headers: Iterable[tuple[bytes, bytes]], path: str
    ) -> None:
        """Start the request's server span under the client's trace context, if it sent one.
        It is not made OTel's current span: the request's code reaches it (and makes its
        children under it) through `current_request`, which costs less per request."""
        carrier = {}
        for name, value in headers:
            if name == b"traceparent" or name == b"tracestate":
                carrier[name.decode("ascii")] = value.decode("latin-1")
        parent = self.propagator.extract(carrier) if carrier else None
        span = self.tracer.start_span(
            telemetry.method,
            context=parent,
            kind=self.server_kind,
            attributes={
                "http.request.method": telemetry.method,
                "url.path": path,
                "modelyard.request_id": telemetry.request_id,
            },
        )
        trace = RequestTrace(self, span)
        telemetry.span = trace
        telemetry.trace_id = format(span.get_span_context().trace_id, "032x")

    def request_finished(self, request: RequestTelemetry) -> None:
        trace = request.span
        if not isinstance(trace, RequestTrace):
            return
        span = trace.server
        if not trace.recording:  # sampled out: nothing to describe
            span.end()
            return
        attributes: dict[str, Any] = {"http.response.status_code": request.status}
        if request.http_route is not None:
            span.update_name(f"{request.method} {request.http_route}")
            attributes["http.route"] = request.http_route
        facts = request.admitted
        if facts is not None:
            attributes.update(
                {
                    "gen_ai.operation.name": facts.operation,
                    "gen_ai.request.model": facts.request_model,
                    "gen_ai.response.model": facts.response_model,
                    "gen_ai.provider.name": facts.provider,
                    "gen_ai.usage.input_tokens": facts.prompt_tokens,
                    "gen_ai.usage.output_tokens": facts.completion_tokens,
                    "modelyard.project": facts.project_id,
                    "modelyard.deployment": facts.deployment,
                    "modelyard.cost_micros": facts.cost_micros,
                    "modelyard.attempts": len(facts.attempts),
                }
            )
            if facts.finish_reasons:
                attributes["gen_ai.response.finish_reasons"] = facts.finish_reasons
            if facts.route is not None:
                attributes["modelyard.route"] = facts.route
        status = request.final_status
        code = request.final_error_code
        if code is not None:
            attributes["error.type"] = code
        elif status >= 500:
            attributes["error.type"] = str(status)
        # One call: the span takes its lock once for all of them.
        span.set_attributes(attributes)
        if status >= 500:
            span.set_status(self.error_status)
        span.end()

    def ledger_written(self, batch: Sequence[QueuedRecord], started_ns: int, ended_ns: int) -> None:
        """A `BackgroundWriter` write observer: each traced record of the batch gets its span."""
        if not self._ledger_pending:
            return
        for record in batch:
            trace = self._ledger_pending.pop(record.request_id, None)
            if trace is not None:
                span = self.tracer.start_span(
                    "ledger write",
                    context=trace.context,
                    start_time=started_ns,
                    attributes={"modelyard.batch_size": len(batch)},
                )
                span.end(ended_ns)

    def shutdown(self) -> None:
        """Export what is buffered and stop (the application is stopping)."""
        self.provider.shutdown()


class RequestTrace:
    """The spans of one traced request: its server span and the attempt under way, which the
    local engine's spans and an upstream call's `traceparent` belong to."""

    __slots__ = ("_attempt", "_tracing", "context", "recording", "server")

    def __init__(self, tracing: Tracing, server: Span) -> None:
        self._tracing = tracing
        self.server = server
        # False when the sampler left the request out: its context is still passed upstream
        # (so the upstream follows the decision), but no child span is made.
        self.recording = server.is_recording()
        self.context: Context = tracing.in_context(server)
        self._attempt: AttemptSpan | None = None

    def _parent(self) -> Context:
        return self.context if self._attempt is None else self._attempt.context

    def start(self, name: str, start_ns: int | None = None) -> Span:
        """A span under the attempt under way (or the request), started now or at `start_ns`
        (nanoseconds since the epoch); the caller ends it."""
        return self._tracing.tracer.start_span(name, context=self._parent(), start_time=start_ns)

    def child(self, name: str) -> ChildSpan:
        return ChildSpan(self.start(name), self._tracing)

    def attempt_started(
        self, operation: str, model: str, deployment: str, provider: str
    ) -> AttemptSpan:
        span = self._tracing.tracer.start_span(
            f"{operation} {model}",
            context=self.context,
            kind=self._tracing.client_kind,
            attributes={
                "gen_ai.operation.name": operation,
                "gen_ai.request.model": model,
                "gen_ai.provider.name": provider,
                "modelyard.deployment": deployment,
            },
        )
        attempt = AttemptSpan(self, span)
        self._attempt = attempt
        return attempt

    def attempt_ended(self, attempt: AttemptSpan) -> None:
        if self._attempt is attempt:
            self._attempt = None

    def outgoing_headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        """`headers` with the W3C trace context of the attempt under way (or the request)."""
        carrier = dict(headers)
        self._tracing.propagator.inject(carrier, context=self._parent())
        return carrier

    def ledger_record_queued(self, request_id: str) -> None:
        """The request's usage record is queued: its write will be a span of this trace."""
        self._tracing._ledger_pending[request_id] = self


class AttemptSpan:
    """One provider attempt's CLIENT span; ended when the attempt reports its usage."""

    __slots__ = ("_trace", "context", "span")

    def __init__(self, trace: RequestTrace, span: Span) -> None:
        self._trace = trace
        self.span = span
        self.context: Context = trace._tracing.in_context(span)

    def ended(self, prompt_tokens: int, completion_tokens: int, error_code: str | None) -> None:
        self.span.set_attributes(
            {
                "gen_ai.usage.input_tokens": prompt_tokens,
                "gen_ai.usage.output_tokens": completion_tokens,
            }
        )
        if error_code is not None:
            self.span.set_attribute("error.type", error_code)
            self.span.set_status(self._trace._tracing.error_status)
        self.span.end()
        self._trace.attempt_ended(self)


class ChildSpan:
    """A span around a block: failed (with the error's code or class) if the block raised."""

    __slots__ = ("_span", "_tracing")

    def __init__(self, span: Span, tracing: Tracing) -> None:
        self._span = span
        self._tracing = tracing

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is not None:
            code = getattr(exc, "code", None)
            self._span.set_attribute(
                "error.type", code if isinstance(code, str) else type(exc).__name__
            )
            self._span.set_status(self._tracing.error_status)
        self._span.end()


# -- how child code reaches the request's trace ----------------------------------------------------


def request_trace() -> RequestTrace | None:
    """The recorded trace of the request being answered, or None (not traced, sampled out, or
    no request)."""
    return recorded(current_request.get())


def recorded(request: RequestTelemetry | None) -> RequestTrace | None:
    """The request's trace when it is recorded, else None."""
    trace: RequestTrace | None = None if request is None else request.span
    return trace if trace is not None and trace.recording else None


def propagated_trace() -> RequestTrace | None:
    """The trace whose context goes upstream with the request being answered, sampled or not."""
    request = current_request.get()
    trace: RequestTrace | None = None if request is None else request.span
    return trace


def traced(name: str) -> contextlib.AbstractContextManager[None]:
    """A child span of the current request around a block; nothing when it is not traced."""
    trace = request_trace()
    return _UNTRACED if trace is None else trace.child(name)


def traced_call(
    name: str,
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Coroutine[Any, Any, R]]]:
    """Decorate a coroutine function: each call is a child span of the current request."""

    def decorate(function: Callable[P, Awaitable[R]]) -> Callable[P, Coroutine[Any, Any, R]]:
        @functools.wraps(function)
        async def call(*args: P.args, **kwargs: P.kwargs) -> R:
            trace = request_trace()
            if trace is None:
                return await function(*args, **kwargs)
            with trace.child(name):
                return await function(*args, **kwargs)

        return call

    return decorate


def _exporter(environ: Mapping[str, str]) -> SpanExporter:
    kind = environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() or "otlp"
    if kind == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if kind != "otlp":
        raise StartupError(
            f"OTEL_TRACES_EXPORTER={kind!r} is not supported: use 'otlp', 'console' or 'none'."
        )
    named = (
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
        if environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        else "OTEL_EXPORTER_OTLP_PROTOCOL"
    )
    protocol = (environ.get(named) or "http/protobuf").strip()
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcExporter,
        )

        return GrpcExporter()
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter as HttpExporter,
        )

        return HttpExporter()
    raise StartupError(
        f"{named}={protocol!r} is not supported: use {' or '.join(repr(p) for p in PROTOCOLS)}."
    )
