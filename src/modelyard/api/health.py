"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import hmac

import orjson
from pydantic import SecretStr
from starlette.requests import Request
from starlette.responses import Response

from modelyard.api.authentication import caller
from modelyard.errors import NotFound, NotReady
from modelyard.observability.metrics import EXPOSITION_CONTENT_TYPE
from modelyard.policy.rbac import Action
from modelyard.state import app_state


async def healthz(request: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


async def readyz(request: Request) -> Response:
    state = app_state(request)
    unready = {
        deployment: reason
        for provider in state.providers.all()
        for deployment, reason in provider.unready().items()
    }
    problems = [f"deployment '{d}': {reason}" for d, reason in sorted(unready.items())]
    database = state.directory_sync.database_problem
    if database is not None:
        problems.insert(0, f"the database cannot be read ({database})")
    if problems:
        raise NotReady(f"Not ready: {'; '.join(problems)}.", retry_after_s=1)
    return Response(orjson.dumps({"status": "ready"}), media_type="application/json")


async def metrics(request: Request) -> Response:
    """The Prometheus exposition: for owners' keys, the scrape token, or anyone when the
    operator made it public."""
    state = app_state(request)
    registry = state.metrics
    if registry is None:
        raise NotFound("Metrics are turned off on this gateway (MODELYARD_METRICS=false).")
    settings = state.settings
    if not settings.metrics_public and not _scrape_token_given(request, settings.metrics_token):
        principal = await caller(request)
        state.access.require_owner(principal, Action.METRICS_READ, "the gateway's metrics")
    registry.state.update(state.state_samples())
    registry.scrape_time.refresh(await state.shared_samples())
    return Response(registry.exposition(), media_type=EXPOSITION_CONTENT_TYPE)


def _scrape_token_given(request: Request, token: SecretStr | None) -> bool:
    if token is None:
        return False
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    expected = token.get_secret_value().encode()
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected)
