"""AppState: everything built at start-up and shared by requests. No module-level globals."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine
from starlette.requests import Request

from modelyard.admin.idempotency import IdempotencyStore
from modelyard.admin.service import AdminService
from modelyard.audit.content_log import ContentLog, ContentRecord
from modelyard.audit.log import AuditLog, TimedEvent
from modelyard.audit.login_failures import LoginFailures
from modelyard.auth.authenticator import Authenticator
from modelyard.auth.directory import Directory
from modelyard.auth.directory_sync import DirectorySync
from modelyard.catalog.catalog import Catalog
from modelyard.db.background_writer import BackgroundWriter
from modelyard.evals.feedback import FeedbackService
from modelyard.evals.runs import EvalRuns
from modelyard.ledger.records import UsageRecord
from modelyard.ledger.store import LedgerStore
from modelyard.limits.store import CounterStore
from modelyard.observability.usage_meter import UsageMeter
from modelyard.policy.access import AccessPolicy
from modelyard.providers.registry import ProviderRegistry
from modelyard.routing.deployment_stats import Fleet
from modelyard.routing.router import Router
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
    usage_meter: UsageMeter
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
