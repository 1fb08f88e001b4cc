"""AppState: everything built at start-up and shared by requests. No module-level globals."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from modelyard.auth.authenticator import Authenticator
from modelyard.catalog.catalog import Catalog
from modelyard.observability.usage_meter import UsageMeter
from modelyard.providers.registry import ProviderRegistry
from modelyard.serving.chat import ChatService
from modelyard.serving.embeddings import EmbeddingsService
from modelyard.serving.models import ModelsService
from modelyard.settings import Settings


@dataclass(frozen=True)
class AppState:
    settings: Settings
    catalog: Catalog
    providers: ProviderRegistry
    authenticator: Authenticator
    chat: ChatService
    models: ModelsService
    embeddings: EmbeddingsService
    usage_meter: UsageMeter


def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.modelyard
    return state


def request_id(request: Request) -> str:
    rid: str = request.scope["state"]["request_id"]
    return rid
