"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response

from modelyard.api.authentication import caller
from modelyard.errors import NotReady
from modelyard.observability.metrics import render_prometheus
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
    state = app_state(request)
    state.access.require_owner(await caller(request), Action.METRICS_READ, "the gateway's metrics")
    samples = [sample for provider in state.providers.all() for sample in provider.metric_samples()]
    samples += state.usage_meter.metric_samples()
    samples += state.fleet.metric_samples()
    return Response(render_prometheus(samples), media_type="text/plain; version=0.0.4")
