"""POST /v1/embeddings (also /embeddings)."""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response

from modelyard.api.authentication import caller
from modelyard.api.parsing import read_model
from modelyard.protocol.embeddings import EmbeddingsRequest
from modelyard.state import app_state, request_id


async def create_embeddings(request: Request) -> Response:
    state = app_state(request)
    principal = await caller(request)
    body = await read_model(request, EmbeddingsRequest, frozenset())
    result, headers = await state.embeddings.embed(body, principal, request_id(request))
    return Response(orjson.dumps(result), media_type="application/json", headers=headers)
