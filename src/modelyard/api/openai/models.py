"""GET /v1/models and GET /v1/models/{model}; in Anthropic's shape when asked with an
`anthropic-version` header (`api/anthropic/models.py`)."""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response

from modelyard.api.anthropic.models import models_page
from modelyard.api.authentication import caller
from modelyard.api.errors import anthropic_shaped
from modelyard.protocol.anthropic_output import model_object
from modelyard.state import app_state


async def list_models(request: Request) -> Response:
    state = app_state(request)
    anthropic = anthropic_shaped(request.scope)
    principal = await caller(request, x_api_key=anthropic)
    listed = state.models.list_models(principal)
    return _json(models_page(request, listed) if anthropic else listed)


async def retrieve_model(request: Request) -> Response:
    state = app_state(request)
    anthropic = anthropic_shaped(request.scope)
    principal = await caller(request, x_api_key=anthropic)
    entry = state.models.get_model(request.path_params["model"], principal)
    return _json(model_object(entry) if anthropic else entry)


def _json(payload: object) -> Response:
    return Response(orjson.dumps(payload), media_type="application/json")
