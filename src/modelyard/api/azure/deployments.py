"""The Azure OpenAI surface: `/openai/deployments/{deployment}/chat/completions`, as
`AzureOpenAI(azure_endpoint=...)` calls it. The path names the deployment and is authoritative;
the body's `model`, if any, is ignored. A path segment may name a Deployment or a model."""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response

from modelyard.api.azure.conventions import check_api_version
from modelyard.api.chat import respond_chat
from modelyard.api.parsing import json_object, parse_model
from modelyard.api.sse import EventStreamResponse
from modelyard.protocol.chat import UNSUPPORTED_PARAMETERS, ChatCompletionRequest
from modelyard.state import app_state


async def chat_completions(request: Request) -> Response | EventStreamResponse:
    state = app_state(request)
    principal = state.authenticator.authenticate(request.headers)
    check_api_version(request)
    name = request.path_params["deployment"]
    raw = json_object(await request.body())
    deployment = next((d for d in state.catalog.deployments if d.id == name), None)
    raw["model"] = deployment.model if deployment is not None else name
    body = parse_model(orjson.dumps(raw), ChatCompletionRequest, UNSUPPORTED_PARAMETERS)
    pinned = deployment.id if deployment is not None else None
    return await respond_chat(request, body, principal, deployment_id=pinned)
