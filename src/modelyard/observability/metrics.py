"""The gateway's Prometheus metrics, on the maintained client library (`prometheus_client`).

Three kinds of metric, one class each:

- `GatewayMetrics` counts and times requests as they finish (a `TelemetrySink`): the
  OpenTelemetry GenAI semantic conventions' names and attributes where they exist (server
  request duration, time to first token, time per output token; per upstream attempt, the
  client operation duration and token usage by type), HTTP server duration by route, and what a
  gateway adds (requests by route, deployment, status class and error code, tokens and cost per
  deployment, fallbacks, limiter refusals, ledger writes).
- `StateMetrics` keeps what providers and services report as `MetricSample`s (engine queues,
  breakers, writer backlogs, the configuration version) as gauges and counters; it is updated
  at scrape time, and with several workers also every `STATE_EVERY_S` by each worker.
- `ScrapeTimeMetrics` holds samples read fresh for each scrape from shared state (budgets, the
  same whichever worker answers), outside the per-process files.

With `--workers N` the supervisor sets `PROMETHEUS_MULTIPROC_DIR` (`workers.py`) before any
worker imports the library, which then keeps every value in per-process files that
`exposition()` sums: counters stay sums over workers, a restarted worker's predecessor's
counts included; state gauges carry a `pid` label and vanish with their worker.

Labels are bounded by design: names from the catalog and the configuration, status classes and
error codes; never a key, a user or anything derived from a prompt. A project label on request
and token counts is the operator's choice (`metrics_project_label`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from modelyard.observability.request_telemetry import (
    AdmittedFacts,
    AttemptFacts,
    RequestTelemetry,
)

# A `_created` series beside every counter and histogram doubles what is stored and helps no
# query here.
disable_created_metrics()  # type: ignore[no-untyped-call]

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
# The classic text format, which every Prometheus release and scraper reads.
EXPOSITION_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Wide enough for a 0.3 ms gateway hop and a 60 s generation.
LATENCY_BUCKETS_S = (
    0.0003, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0,
)  # fmt: skip
# The GenAI conventions' advice for token counts: powers of 4.
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576)
# How often each worker publishes its state samples when several share the files.
STATE_EVERY_S = 5.0
_HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


@dataclass(frozen=True)
class MetricSample:
    """One value a provider or a service reports for the state metrics."""

    name: str
    kind: str  # "counter" or "gauge"
    help: str
    value: float
    labels: dict[str, str] = field(default_factory=dict)


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROCESS_ENV) or None


def status_class(status: int) -> str:
    return f"{status // 100}xx"


class GatewayMetrics:
    """Request metrics, observed once per request when its telemetry finishes."""

    def __init__(self, registry: CollectorRegistry | None, *, project_label: bool = False):
        """`registry`: where the metrics are registered (None in multi-process mode, where
        the files are what is exposed)."""
        self._project_label = project_label
        project = ("project",) if project_label else ()
        genai = ("gen_ai_operation_name", "gen_ai_request_model", "gen_ai_response_model")
        client = (
            "gen_ai_operation_name",
            "gen_ai_provider_name",
            "gen_ai_request_model",
            "gen_ai_response_model",
            "deployment",
        )
        self._http = Histogram(
            "http_server_request_duration_seconds",
            "Duration of HTTP server requests",
            ("http_request_method", "http_route", "http_response_status_code"),
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self._requests = Counter(
            "modelyard_requests",
            "Admitted requests, one per usage-ledger record",
            ("route", "deployment", "status_class", "code", *project),
            registry=registry,
        )
        self._tokens = Counter(
            "modelyard_tokens",
            "Tokens of admitted requests, by the deployment of their usage record",
            ("deployment", "gen_ai_token_type", *project),
            registry=registry,
        )
        self._cost = Counter(
            "modelyard_cost_micros",
            "Cost of admitted requests in micro-dollars",
            ("project", "deployment"),
            registry=registry,
        )
        self._disconnects = Counter(
            "modelyard_client_disconnects",
            "Admitted requests whose client left before the answer was complete",
            ("deployment",),
            registry=registry,
        )
        self._estimated = Counter(
            "modelyard_usage_estimated",
            "Admitted requests whose upstream reported no usage, their tokens estimated",
            ("deployment",),
            registry=registry,
        )
        self._fallbacks = Counter(
            "modelyard_fallback_attempts",
            "Attempts after a request's first, by the deployment they went to",
            ("route", "deployment"),
            registry=registry,
        )
        self._refusals = Counter(
            "modelyard_limit_refusals",
            "Requests refused before admission by a limit, a budget or a full backlog",
            ("reason",),
            registry=registry,
        )
        self._server_duration = Histogram(
            "gen_ai_server_request_duration_seconds",
            "Generative AI server request duration, from arrival to the last answer byte",
            (*genai, "error_type"),
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self._ttft = Histogram(
            "gen_ai_server_time_to_first_token_seconds",
            "Time from the request's arrival to the first output token",
            genai,
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self._tpot = Histogram(
            "gen_ai_server_time_per_output_token_seconds",
            "Time per output token after the first",
            genai,
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self._client_duration = Histogram(
            "gen_ai_client_operation_duration_seconds",
            "Duration of each generation the gateway asked of a deployment",
            (*client, "error_type"),
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self._client_tokens = Histogram(
            "gen_ai_client_token_usage",
            "Tokens of each generation the gateway asked of a deployment, by type",
            (*client, "gen_ai_token_type"),
            buckets=TOKEN_BUCKETS,
            registry=registry,
        )
        self._ledger_write = Histogram(
            "modelyard_ledger_write_seconds",
            "Duration of each usage-ledger batch write",
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self._ledger_written = Counter(
            "modelyard_ledger_records_written",
            "Usage records written to the ledger",
            registry=registry,
        )
        # Children by label values (`labels()` validates and locks on every call), those a
        # request touches together looked up together: this runs once per request.
        self._children: dict[tuple[object, ...], Any] = {}
        self._http_series: dict[tuple[str, str, int], Any] = {}
        self._request_series: dict[tuple[object, ...], _RequestSeries] = {}
        self._attempt_series: dict[tuple[str, str, str, str, str], _AttemptSeries] = {}

    def _child(self, metric: Any, *values: str) -> Any:
        key = (id(metric), *values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def request_finished(self, request: RequestTelemetry) -> None:
        method = request.method if request.method in _HTTP_METHODS else "_OTHER"
        http_key = (method, request.http_route or "unmatched", request.status)
        http = self._http_series.get(http_key)
        if http is None:
            http = self._http_series[http_key] = self._http.labels(*http_key[:2], str(http_key[2]))
        http.observe(request.duration_s)
        facts = request.admitted
        if facts is None:
            if request.refusal is not None:
                self._child(self._refusals, request.refusal).inc()
            return
        request_key = _request_key(facts)
        series = self._request_series.get(request_key)
        if series is None:
            series = self._request_series[request_key] = self._series_of(facts)
        series.requests.inc()
        if facts.prompt_tokens:
            series.input_tokens.inc(facts.prompt_tokens)
        if facts.completion_tokens:
            series.output_tokens.inc(facts.completion_tokens)
        if facts.cost_micros:
            series.cost.inc(facts.cost_micros)
        series.duration.observe(request.duration_s)
        if facts.time_to_first_token_s is not None:
            series.ttft.observe(facts.time_to_first_token_s)
        if facts.time_per_output_token_s is not None:
            series.tpot.observe(facts.time_per_output_token_s)
        if facts.client_left:
            self._child(self._disconnects, facts.deployment).inc()
        if facts.usage_estimated:
            self._child(self._estimated, facts.deployment).inc()
        for index, attempt in enumerate(facts.attempts):
            key = _attempt_key(facts.operation, attempt)
            calls = self._attempt_series.get(key)
            if calls is None:
                calls = self._attempt_series[key] = self._attempt_series_of(*key)
            calls.duration.observe(attempt.duration_s)
            calls.input_tokens.observe(attempt.prompt_tokens)
            calls.output_tokens.observe(attempt.completion_tokens)
            if index > 0:
                self._child(self._fallbacks, facts.route or "", attempt.deployment).inc()

    def _series_of(self, facts: AdmittedFacts) -> _RequestSeries:
        project = (facts.project_id,) if self._project_label else ()
        where = (facts.route or "", facts.deployment)
        code = facts.error_code or ""
        models = (facts.operation, facts.request_model, facts.response_model)
        return _RequestSeries(
            requests=self._requests.labels(*where, status_class(facts.status), code, *project),
            input_tokens=self._tokens.labels(facts.deployment, "input", *project),
            output_tokens=self._tokens.labels(facts.deployment, "output", *project),
            cost=self._cost.labels(facts.project_id, facts.deployment),
            duration=self._server_duration.labels(*models, code),
            ttft=self._ttft.labels(*models),
            tpot=self._tpot.labels(*models),
        )

    def _attempt_series_of(
        self, operation: str, provider: str, model: str, deployment: str, code: str
    ) -> _AttemptSeries:
        where = (operation, provider, model, model, deployment)
        return _AttemptSeries(
            duration=self._client_duration.labels(*where, code),
            input_tokens=self._client_tokens.labels(*where, "input"),
            output_tokens=self._client_tokens.labels(*where, "output"),
        )

    def recorded_without_request(
        self, project_id: str, deployment: str, status: int, code: str, cost_micros: int
    ) -> None:
        """A usage record made for no request of this process (reconciliation's `interrupted`
        record of one a stopped replica left unfinished), counted so the totals keep the
        ledger's."""
        project = (project_id,) if self._project_label else ()
        self._child(self._requests, "", deployment, status_class(status), code, *project).inc()
        if cost_micros:
            self._child(self._cost, project_id, deployment).inc(cost_micros)

    def ledger_written(self, batch: Sequence[object], started_ns: int, ended_ns: int) -> None:
        """A `BackgroundWriter` write observer for the usage ledger."""
        self._ledger_write.observe((ended_ns - started_ns) / 1e9)
        self._ledger_written.inc(len(batch))


@dataclass(frozen=True, slots=True)
class _RequestSeries:
    """The series one admitted request adds to, for one combination of its labels."""

    requests: Any
    input_tokens: Any
    output_tokens: Any
    cost: Any
    duration: Any
    ttft: Any
    tpot: Any


@dataclass(frozen=True, slots=True)
class _AttemptSeries:
    duration: Any
    input_tokens: Any
    output_tokens: Any


def _request_key(facts: AdmittedFacts) -> tuple[object, ...]:
    return (
        facts.route,
        facts.deployment,
        facts.status,
        facts.error_code,
        facts.project_id,
        facts.operation,
        facts.request_model,
        facts.response_model,
    )


def _attempt_key(operation: str, attempt: AttemptFacts) -> tuple[str, str, str, str, str]:
    return (
        operation,
        attempt.provider,
        attempt.model,
        attempt.deployment,
        attempt.error_code or "",
    )


class StateMetrics:
    """State samples (`MetricSample`s) kept as gauges and counters. A counter sample reports a
    running total that may start again from zero (an engine restarted): the counter advances by
    the increase since the last update, or by the whole value after such a restart."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self._registry = registry
        self._metrics: dict[str, Any] = {}
        self._last: dict[tuple[str, tuple[str, ...]], float] = {}

    def update(self, samples: Iterable[MetricSample]) -> None:
        for sample in samples:
            names = tuple(sorted(sample.labels))
            metric = self._metrics.get(sample.name)
            if metric is None:
                metric = self._metrics[sample.name] = self._make(sample, names)
            values = tuple(sample.labels[name] for name in names)
            child = metric.labels(*values) if names else metric
            if sample.kind == "counter":
                key = (sample.name, values)
                last = self._last.get(key, 0.0)
                increase = sample.value - last if sample.value >= last else sample.value
                self._last[key] = sample.value
                if increase > 0:
                    child.inc(increase)
            else:
                child.set(sample.value)

    def _make(self, sample: MetricSample, label_names: tuple[str, ...]) -> Any:
        if sample.kind == "counter":
            return Counter(sample.name, sample.help, label_names, registry=self._registry)
        # Each worker's own value, labelled with its pid; gone when the worker is.
        return Gauge(
            sample.name,
            sample.help,
            label_names,
            registry=self._registry,
            multiprocess_mode="liveall",
        )


class ScrapeTimeMetrics(Collector):
    """Samples read fresh for each scrape (`refresh`), exposed as gauges as they are."""

    def __init__(self) -> None:
        self._samples: list[MetricSample] = []

    def refresh(self, samples: list[MetricSample]) -> None:
        self._samples = samples

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        for sample in self._samples:
            family = families.get(sample.name)
            if family is None:
                family = families[sample.name] = Metric(sample.name, sample.help, "gauge")
            family.add_sample(sample.name, sample.labels, sample.value)
        yield from families.values()


class MetricsRegistry:
    """Everything `/metrics` shows for this process, and how it is rendered."""

    def __init__(self, *, project_label: bool = False) -> None:
        self.multiprocess = multiprocess_dir()
        self._registry = CollectorRegistry(auto_describe=False)
        owned = None if self.multiprocess else self._registry
        self.requests = GatewayMetrics(owned, project_label=project_label)
        self.state = StateMetrics(owned)
        self.scrape_time = ScrapeTimeMetrics()
        if not self.multiprocess:
            self._registry.register(self.scrape_time)

    def exposition(self) -> bytes:
        """The text exposition (format 0.0.4) of every metric."""
        if self.multiprocess is None:
            return generate_latest(self._registry)
        registry = CollectorRegistry(auto_describe=False)
        MultiProcessCollector(registry, path=self.multiprocess)  # type: ignore[no-untyped-call]
        registry.register(self.scrape_time)
        return generate_latest(registry)


def share_between_workers(directory: Path) -> None:
    """Before workers start: their metrics go to files in `directory`, emptied of a previous
    run's (the counters of this run's dead workers stay in it until the next)."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    os.environ[MULTIPROCESS_ENV] = str(directory)


def mark_worker_gone(pid: int) -> None:
    """A worker exited: its state gauges go with it (its counts stay in the sums)."""
    from prometheus_client.multiprocess import mark_process_dead

    directory = multiprocess_dir()
    if directory is not None:
        mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]
