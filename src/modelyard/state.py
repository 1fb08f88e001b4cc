"""AppState: everything built at start-up and shared by requests. No module-level globals."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine
from starlette.requests import Request

from modelyard import __version__
from modelyard.admin.idempotency import IdempotencyStore
from modelyard.admin.service import AdminService
from modelyard.audit.content_log import ContentLog, ContentRecord
from modelyard.audit.log import AuditLog, TimedEvent
from modelyard.audit.login_failures import LoginFailures
from modelyard.auth.authenticator import Authenticator
from modelyard.auth.directory import Directory
from modelyard.auth.directory_sync import DirectorySync
from modelyard.auth.identity_provider import ConsoleClient
from modelyard.auth.sessions import SessionStore
from modelyard.catalog.catalog import Catalog
from modelyard.db.background_writer import BackgroundWriter
from modelyard.evals.feedback import FeedbackService
from modelyard.evals.runs import EvalRuns
from modelyard.ledger.records import UsageRecord
from modelyard.ledger.store import LedgerStore
from modelyard.limits.store import CounterStore
from modelyard.observability.metrics import MetricSample, MetricsRegistry
from modelyard.policy.access import AccessPolicy
from modelyard.providers.registry import ProviderRegistry
from modelyard.routing.deployment_stats import Fleet
from modelyard.routing.router import Router
from modelyard.serving.budget_status import project_budget_samples
from modelyard.serving.chat import ChatService
from modelyard.serving.embeddings import EmbeddingsService
from modelyard.serving.models import ModelsService
from modelyard.serving.responses import ResponsesService
from modelyard.serving.stored_responses import StoredResponses
from modelyard.settings import Settings


@dataclass(frozen=True)
class AppState:
    settings: Settings
    catalog: Catalog
    providers: ProviderRegistry
    database: Engine
    directory: Directory
    # Keeps `directory` in step with changes made through other replicas.
    directory_sync: DirectorySync
    authenticator: Authenticator
    access: AccessPolicy
    chat: ChatService
    # What a model or route name stands for and which deployments would serve a request
    # (also read without generating: `/v1/messages/count_tokens`).
    router: Router
    models: ModelsService
    embeddings: EmbeddingsService
    admin: AdminService
    idempotency: IdempotencyStore
    audit_log: AuditLog
    # Denials and failed logins, written off the request path.
    audit_writer: BackgroundWriter[TimedEvent]
    # Failed logins beyond the first per source and minute are counted, not recorded each.
    login_failures: LoginFailures
    content_log: ContentLog
    content_writer: BackgroundWriter[ContentRecord]
    # None when the operator turned metrics off.
    metrics: MetricsRegistry | None
    counters: CounterStore
    ledger: LedgerStore
    ledger_writer: BackgroundWriter[UsageRecord]
    # What this replica knows of each deployment: in flight, latency, breaker.
    fleet: Fleet
    # Evaluation runs and their results (/admin/evals), feedback on served requests.
    evals: EvalRuns
    feedback: FeedbackService
    # The Responses API, and the responses it stores for projects that keep content.
    responses: ResponsesService
    stored_responses: StoredResponses
    # Web console sign-ins (server-side sessions), and the console's registration with the
    # identity provider (None: no sign-in through it).
    sessions: SessionStore
    console_client: ConsoleClient | None

    def state_samples(self) -> list[MetricSample]:
        """What this process's parts report of their state, for the state metrics."""
        samples = [
            sample for provider in self.providers.all() for sample in provider.metric_samples()
        ]
        samples += self.fleet.metric_samples()
        for writer in self.background_writers():
            labels = {"writer": writer.name}
            samples += [
                MetricSample(
                    "modelyard_writer_backlog",
                    "gauge",
                    "Records claimed and not yet written; new work is refused at capacity",
                    writer.backlog(),
                    labels,
                ),
                MetricSample(
                    "modelyard_writer_capacity",
                    "gauge",
                    "Records the writer may hold while the database is slow or away",
                    writer.capacity,
                    labels,
                ),
            ]
        version = self.directory_sync.loaded_version
        if version is not None:
            samples.append(
                MetricSample(
                    "modelyard_config_version",
                    "gauge",
                    "The configuration version this replica has loaded",
                    version,
                )
            )
        samples.append(
            MetricSample(
                "modelyard_build_info",
                "gauge",
                "The gateway's version",
                1,
                {"version": __version__},
            )
        )
        return samples

    def count_interrupted(self, records: Sequence[UsageRecord]) -> None:
        """Records reconciliation wrote for requests a stopped replica left unfinished: counted
        like any other, so the request metrics keep the ledger's totals."""
        if self.metrics is not None:
            for r in records:
                self.metrics.requests.recorded_without_request(
                    r.project_id, r.deployment, r.status, r.outcome, r.cost_micros
                )

    async def shared_samples(self) -> list[MetricSample]:
        """State every replica shares, read for each scrape: the projects' budgets."""
        return await project_budget_samples(self.directory, self.counters)

    def background_writers(self) -> tuple[BackgroundWriter[Any], ...]:
        """Started and stopped by the app's lifespan; stopped in this order."""
        return (self.ledger_writer, self.content_writer, self.audit_writer)

    def close(self) -> None:
        """Close the database pool; the lifespan stops the writers first."""
        self.database.dispose()


def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.modelyard
    return state


def request_id(request: Request) -> str:
    rid: str = request.scope["state"]["request_id"]
    return rid
