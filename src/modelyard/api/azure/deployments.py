"""The Azure OpenAI surface: `/openai/deployments/{deployment}/chat/completions`, as
`AzureOpenAI(azure_endpoint=...)` calls it. The path names the deployment and is authoritative;
the body's `model`, if any, is ignored. A path segment may name a Deployment or a model."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from modelyard.api.authentication import caller
from modelyard.api.azure.conventions import check_api_version
from modelyard.api.chat import respond_chat
from modelyard.api.parsing import json_object, parse_model
from modelyard.api.sse import EventStreamResponse
from modelyard.protocol.chat import UNSUPPORTED_PARAMETERS, ChatCompletionRequest
from modelyard.protocol.embeddings import EmbeddingsRequest
from modelyard.state import AppState, app_state, request_id


async def chat_completions(request: Request) -> Response | EventStreamResponse:
    state = app_state(request)
    principal = await caller(request)
    raw, pinned = await _path_addressed_body(request, state)
    body = parse_model(orjson.dumps(raw), ChatCompletionRequest, UNSUPPORTED_PARAMETERS)
    return await respond_chat(request, body, principal, deployment_id=pinned)


async def embeddings(request: Request) -> Response:
    state = app_state(request)
    principal = await caller(request)
    raw, pinned = await _path_addressed_body(request, state)
    body = parse_model(orjson.dumps(raw), EmbeddingsRequest, frozenset())
    result, headers = await state.embeddings.embed(body, principal, request_id(request), pinned)
    return Response(orjson.dumps(result), media_type="application/json", headers=headers)


async def _path_addressed_body(
    request: Request, state: AppState
) -> tuple[dict[str, Any], str | None]:
    """The body with `model` taken from the path; the pinned deployment, if the path names one."""
    check_api_version(request)
    name = request.path_params["deployment"]
    raw = json_object(await request.body())
    deployment = next((d for d in state.catalog.deployments if d.id == name), None)
    raw["model"] = deployment.model if deployment is not None else name
    return raw, deployment.id if deployment is not None else None
