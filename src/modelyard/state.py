"""AppState: everything built at start-up and shared by requests. No module-level globals."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine
from starlette.requests import Request

from modelyard.api.admin.idempotency import IdempotencyStore
from modelyard.audit.log import AuditLog, AuditWriter
from modelyard.audit.login_failures import LoginFailures
from modelyard.auth.authenticator import Authenticator
from modelyard.auth.directory import Directory
from modelyard.auth.directory_sync import DirectorySync
from modelyard.catalog.catalog import Catalog
from modelyard.ledger.store import LedgerStore
from modelyard.ledger.writer import LedgerWriter
from modelyard.limits.store import CounterStore
from modelyard.observability.usage_meter import UsageMeter
from modelyard.policy.access import AccessPolicy
from modelyard.providers.registry import ProviderRegistry
from modelyard.serving.admin import AdminService
from modelyard.serving.chat import ChatService
from modelyard.serving.content_log import ContentLog
from modelyard.serving.embeddings import EmbeddingsService
from modelyard.serving.models import ModelsService
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
    models: ModelsService
    embeddings: EmbeddingsService
    admin: AdminService
    idempotency: IdempotencyStore
    audit_log: AuditLog
    # Denials and failed logins, written off the request path.
    audit_writer: AuditWriter
    # Failed logins beyond the first per source and minute are counted, not recorded each.
    login_failures: LoginFailures
    content_log: ContentLog
    usage_meter: UsageMeter
    counters: CounterStore
    ledger: LedgerStore
    ledger_writer: LedgerWriter

    def close(self) -> None:
        self.audit_writer.close(10.0)
        self.content_log.close(10.0)
        self.database.dispose()


def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.modelyard
    return state


def request_id(request: Request) -> str:
    rid: str = request.scope["state"]["request_id"]
    return rid
