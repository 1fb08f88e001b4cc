"""create_app(settings) -> the ASGI application, with everything built at start-up.

The catalog is loaded and validated here, before the server binds, so a broken catalog never
serves traffic. Local models load in the background after start; /readyz says when they are in.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from functools import partial

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import Route

from modelyard.admin.default_project import ensure_default_project
from modelyard.admin.deployments import DeploymentsView
from modelyard.admin.idempotency import IdempotencyStore
from modelyard.admin.route_admin import RouteAdmin
from modelyard.admin.service import AdminService
from modelyard.api import errors as api_errors
from modelyard.api.admin.openapi import openapi_json
from modelyard.api.admin.routes import admin_routes
from modelyard.api.anthropic import messages as anthropic_messages
from modelyard.api.azure import deployments as azure_openai
from modelyard.api.azure import inference as azure_inference
from modelyard.api.client_address import ClientAddressMiddleware, ClientAddressResolver
from modelyard.api.console import console_routes
from modelyard.api.feedback import give_feedback
from modelyard.api.health import healthz, metrics, readyz
from modelyard.api.middleware import (
    BodyLimitMiddleware,
    RequestTelemetryMiddleware,
    UnexpectedErrorMiddleware,
)
from modelyard.api.openai import responses as openai_responses
from modelyard.api.openai.chat import create_chat_completion
from modelyard.api.openai.embeddings import create_embeddings
from modelyard.api.openai.models import list_models, retrieve_model
from modelyard.audit.content_log import PURGE_EVERY_S, ContentLog
from modelyard.audit.log import AuditLog, TimedEvent
from modelyard.audit.login_failures import LoginFailures
from modelyard.auth.admin_key import load_or_create_admin_key
from modelyard.auth.authenticator import Authenticator
from modelyard.auth.directory import Directory
from modelyard.auth.directory_sync import DirectorySync
from modelyard.auth.identity_provider import load_identity_provider
from modelyard.auth.server_secret import derive, load_or_create_server_secret
from modelyard.auth.sessions import SessionStore
from modelyard.auth.tokens import TokenVerifier
from modelyard.catalog.loader import load_catalog
from modelyard.db.background_writer import BackgroundWriter
from modelyard.db.engine import open_database
from modelyard.db.installation import check_installation, mark_installed
from modelyard.errors import ModelyardError
from modelyard.evals.feedback import FeedbackService
from modelyard.evals.runs import EvalRuns
from modelyard.evals.store import EvalStore
from modelyard.ledger.feedback import FeedbackStore
from modelyard.ledger.reconcile import rebuild_memory_counters, settle_abandoned, settle_written
from modelyard.ledger.store import LedgerStore
from modelyard.limits.memory_store import MemoryCounterStore
from modelyard.limits.store import CounterStore
from modelyard.observability.access_log import AccessLog
from modelyard.observability.metrics import STATE_EVERY_S, MetricsRegistry
from modelyard.observability.request_telemetry import TelemetrySink
from modelyard.observability.tracing import Tracing
from modelyard.policy.access import AccessPolicy
from modelyard.providers.registry import build_registry
from modelyard.routing.breaker import BreakerPolicy
from modelyard.routing.deployment_stats import Fleet
from modelyard.routing.prompt_language import PromptLanguage
from modelyard.routing.route_book import RouteBook
from modelyard.routing.router import Router
from modelyard.serving.admission import Admissions
from modelyard.serving.chat import ChatService
from modelyard.serving.embeddings import EmbeddingsService
from modelyard.serving.lifecycle import Recording
from modelyard.serving.models import ModelsService
from modelyard.serving.responses import ResponsesService
from modelyard.serving.stored_responses import StoredResponses
from modelyard.settings import Settings
from modelyard.state import AppState

log = logging.getLogger(__name__)

SWEEP_EVERY_S = 60.0
SUMMARIZE_LOGINS_EVERY_S = 15.0
ABANDONED_AFTER = timedelta(minutes=15)
GC_YOUNG_THRESHOLD = 20_000


def build_state(settings: Settings, admin_digest: str | None = None) -> AppState:
    catalog = load_catalog(settings.catalog_path())
    if admin_digest is None:
        configured = settings.admin_key.get_secret_value() if settings.admin_key else None
        admin_digest = load_or_create_admin_key(settings.data_dir, configured).digest
    secret = load_or_create_server_secret(
        settings.data_dir, settings.secret.get_secret_value() if settings.secret else None
    )
    identity_provider = (
        load_identity_provider(settings.auth_config) if settings.auth_config is not None else None
    )
    tokens = TokenVerifier(identity_provider) if identity_provider is not None else None
    if settings.database_url is None:
        check_installation(settings.data_dir, settings.embedded_database_file())
    database = open_database(settings.database())
    if settings.database_url is None:
        mark_installed(settings.data_dir)
    audit_log = AuditLog(database)
    ensure_default_project(database, audit_log)
    directory = Directory.load(database)
    access = AccessPolicy(directory)
    providers = build_registry(catalog, settings)
    content_log = ContentLog(database)
    counters = open_counter_store(settings)
    ledger = LedgerStore(database)
    feedback = FeedbackStore(database)
    ledger_writer = BackgroundWriter(
        "usage ledger",
        ledger.write,
        capacity=settings.writer_backlog,
        after_write=partial(settle_written, counters),
    )
    content_writer = BackgroundWriter(
        "content log", content_log.write, capacity=settings.writer_backlog
    )
    fleet = Fleet(
        BreakerPolicy(
            consecutive_failures=max(1, settings.breaker_failures),
            enabled=settings.breaker_failures > 0,
            error_rate=settings.breaker_error_rate,
            cooldown_s=settings.breaker_cooldown_s,
        )
    )
    recording = Recording(
        ledger_writer, content_writer, counters, fleet, accounting=settings.accounting
    )
    metrics = (
        MetricsRegistry(project_label=settings.metrics_project_label) if settings.metrics else None
    )
    if metrics is not None:
        ledger_writer.write_observers.append(metrics.requests.ledger_written)
    admissions = Admissions(directory, recording, settings.replica())
    route_book = RouteBook(catalog, directory, providers)
    languages = PromptLanguage(catalog)
    router = Router(catalog, route_book, providers, fleet, languages.detect)
    chat = ChatService(router, settings.max_choices, access, admissions, settings.request_timeout_s)
    stored_responses = StoredResponses(database, settings.responses_ttl_days)
    return AppState(
        settings=settings,
        catalog=catalog,
        providers=providers,
        database=database,
        directory=directory,
        directory_sync=DirectorySync(database, directory, settings.config_poll_s),
        authenticator=Authenticator(admin_digest, directory, derive(secret, "api-keys"), tokens),
        access=access,
        chat=chat,
        router=router,
        models=ModelsService(catalog, providers, access, route_book),
        embeddings=EmbeddingsService(catalog, providers, access, admissions),
        admin=AdminService(
            database,
            directory,
            access,
            audit_log,
            catalog,
            derive(secret, "api-keys"),
            ledger,
            feedback,
            RouteAdmin(
                database, directory, access, audit_log, catalog, route_book, languages.check
            ),
            DeploymentsView(catalog, providers, fleet, access),
        ),
        fleet=fleet,
        evals=EvalRuns(EvalStore(database, audit_log), directory, access),
        feedback=FeedbackService(feedback, access),
        counters=counters,
        ledger=ledger,
        ledger_writer=ledger_writer,
        idempotency=IdempotencyStore(database, derive(secret, "idempotency")),
        audit_log=audit_log,
        audit_writer=BackgroundWriter(
            "audit log", audit_log.append_batch, capacity=settings.writer_backlog
        ),
        login_failures=LoginFailures(per_source=settings.audit_failed_logins_per_minute),
        content_log=content_log,
        content_writer=content_writer,
        metrics=metrics,
        responses=ResponsesService(chat, access, stored_responses),
        stored_responses=stored_responses,
        sessions=SessionStore(database),
        console_client=identity_provider.console if identity_provider is not None else None,
    )


def open_counter_store(settings: Settings) -> CounterStore:
    if settings.redis_url is None:
        return MemoryCounterStore()
    from modelyard.limits.redis_store import RedisCounterStore

    return RedisCounterStore(settings.redis_url.get_secret_value())


async def reconcile_at_start(state: AppState) -> None:
    """In-process counters start from the ledger; shared ones get what this replica left open
    before it stopped settled."""
    owner = state.settings.replica()
    if isinstance(state.counters, MemoryCounterStore):
        await rebuild_memory_counters(state.counters, state.database, owner)
    else:
        await settle_abandoned(
            state.counters, state.ledger, owner=owner, written=state.count_interrupted
        )


async def summarize_login_failures(state: AppState) -> None:
    """Now and then, the failed logins that were counted rather than recorded, as records; a
    summary the audit writer cannot take yet waits for the next round."""
    waiting: list[TimedEvent] = []
    while True:
        await asyncio.sleep(SUMMARIZE_LOGINS_EVERY_S)
        waiting = queue_summaries(state, waiting, include_current=False)


def queue_summaries(
    state: AppState, waiting: list[TimedEvent], *, include_current: bool
) -> list[TimedEvent]:
    """Offer the waiting summaries and the new ones to the audit writer; returns the refused."""
    new = state.login_failures.summaries(include_current=include_current)
    events = waiting + [state.audit_log.stamped(event) for event in new]
    return [event for event in events if not state.audit_writer.offer(event)]


async def purge_expired_content(state: AppState) -> None:
    """Delete content past its retention, and console sessions past their end: at start, then
    every `PURGE_EVERY_S`."""
    while True:
        try:
            await asyncio.to_thread(state.content_log.purge_expired)
            await asyncio.to_thread(state.stored_responses.purge_expired)
            await asyncio.to_thread(state.sessions.sweep)
        except Exception as exc:  # the database is away; the next round deletes it
            log.warning("purging expired content failed: %s", type(exc).__name__)
        await asyncio.sleep(PURGE_EVERY_S)


async def publish_state_metrics(state: AppState, registry: MetricsRegistry) -> None:
    """With several workers, each publishes its state (engine queues, breakers, backlogs) for
    whichever worker answers the scrape; the one answering refreshes its own first."""
    while True:
        try:
            registry.state.update(state.state_samples())
        except Exception as exc:  # a provider's report failed; the next round tries again
            log.warning("publishing state metrics failed (%s)", type(exc).__name__)
        await asyncio.sleep(STATE_EVERY_S)


async def sweep_abandoned(state: AppState) -> None:
    """Reservations nobody settled for a long time belong to replicas that never came back."""
    while True:
        await asyncio.sleep(SWEEP_EVERY_S)
        try:
            await settle_abandoned(
                state.counters,
                state.ledger,
                owner=None,
                older_than=ABANDONED_AFTER,
                written=state.count_interrupted,
            )
        except Exception as exc:  # the store or database is away; next sweep tries again
            log.warning("reconciliation sweep failed: %s", type(exc).__name__)


def settle_garbage_collector() -> None:
    """Keep full collections off the request path: everything built at start-up lives as long as
    the process, so it is moved out of the collector's sight, and the youngest generation is
    collected less often (a request allocates a few hundred short-lived objects)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def create_app(settings: Settings, admin_digest: str | None = None) -> Starlette:
    # Built first so a bad CIDR or OTEL_* value stops start before the database is opened.
    client_address = ClientAddressResolver(settings.trusted_proxies)
    tracing = Tracing.from_environment(settings.replica())  # off unless OTEL_* asks
    state = build_state(settings, admin_digest)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        for provider in state.providers.all():
            await provider.start()
        for writer in state.background_writers():
            writer.start()
        await reconcile_at_start(state)
        loop = asyncio.get_running_loop()
        background = [
            loop.create_task(sweep_abandoned(state)),
            # Configuration changed by other replicas reaches this one's Directory.
            loop.create_task(state.directory_sync.run()),
            loop.create_task(summarize_login_failures(state)),
            loop.create_task(purge_expired_content(state)),
        ]
        if state.metrics is not None and state.metrics.multiprocess:
            background.append(loop.create_task(publish_state_metrics(state, state.metrics)))
        settle_garbage_collector()
        try:
            yield
        finally:
            for task in background:
                task.cancel()
            # Offered once more below if the writer is full now; what it still refuses is lost
            # with the process, and said so.
            refused = queue_summaries(state, [], include_current=True)
            for provider in state.providers.all():
                await provider.stop()
            for writer in state.background_writers():
                await writer.stop()
            if refused:
                log.error("audit: %d failed-login summaries not written at shutdown", len(refused))
            await state.counters.aclose()
            await asyncio.to_thread(state.close)
            if tracing is not None:
                await asyncio.to_thread(tracing.shutdown)

    routes = [
        Route("/v1/chat/completions", create_chat_completion, methods=["POST"]),
        Route("/chat/completions", create_chat_completion, methods=["POST"]),
        Route("/v1/responses", openai_responses.create_response, methods=["POST"]),
        Route("/responses", openai_responses.create_response, methods=["POST"]),
        Route("/v1/responses/{response_id}", openai_responses.retrieve_response, methods=["GET"]),
        Route("/v1/responses/{response_id}", openai_responses.delete_response, methods=["DELETE"]),
        Route(
            "/v1/responses/{response_id}/input_items",
            openai_responses.list_input_items,
            methods=["GET"],
        ),
        Route("/v1/messages", anthropic_messages.create_message, methods=["POST"]),
        Route("/v1/messages/count_tokens", anthropic_messages.count_tokens, methods=["POST"]),
        Route("/v1/embeddings", create_embeddings, methods=["POST"]),
        Route("/embeddings", create_embeddings, methods=["POST"]),
        Route("/models/embeddings", azure_inference.embeddings, methods=["POST"]),
        Route(
            "/openai/deployments/{deployment}/embeddings",
            azure_openai.embeddings,
            methods=["POST"],
        ),
        Route("/v1/feedback", give_feedback, methods=["POST"]),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/models/{model:path}", retrieve_model, methods=["GET"]),
        Route("/models/chat/completions", azure_inference.chat_completions, methods=["POST"]),
        Route("/models/info", azure_inference.model_info, methods=["GET"]),
        Route(
            "/openai/deployments/{deployment}/chat/completions",
            azure_openai.chat_completions,
            methods=["POST"],
        ),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/openapi.json", openapi_json, methods=["GET"]),
        *admin_routes(),
        *(console_routes() if settings.console else []),
    ]
    sinks: list[TelemetrySink] = []
    if state.metrics is not None:
        sinks.append(state.metrics.requests)
    if settings.access_log:
        sinks.append(AccessLog())
    if tracing is not None:
        sinks.append(tracing)
        state.ledger_writer.write_observers.append(tracing.ledger_written)
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(RequestTelemetryMiddleware, sinks=sinks, tracing=tracing),
            Middleware(UnexpectedErrorMiddleware),
            Middleware(ClientAddressMiddleware, client_address),
            Middleware(BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes),
        ],
        exception_handlers={
            ModelyardError: api_errors.handle_modelyard_error,
            HTTPException: api_errors.handle_http_exception,
        },
        lifespan=lifespan,
    )
    app.state.modelyard = state
    return app
