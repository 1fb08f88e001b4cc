"""GET /v1/models and GET /v1/models/{model}."""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response

from modelyard.api.authentication import caller
from modelyard.state import app_state


async def list_models(request: Request) -> Response:
    state = app_state(request)
    principal = await caller(request)
    return _json(state.models.list_models(principal))


async def retrieve_model(request: Request) -> Response:
    state = app_state(request)
    principal = await caller(request)
    return _json(state.models.get_model(request.path_params["model"], principal))


def _json(payload: object) -> Response:
    return Response(orjson.dumps(payload), media_type="application/json")
