"""POST /v1/chat/completions (also /chat/completions): the OpenAI and Mistral SDKs' chat route."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from modelyard.api.authentication import caller
from modelyard.api.chat import respond_chat
from modelyard.api.parsing import read_model
from modelyard.api.sse import EventStreamResponse
from modelyard.protocol.chat import UNSUPPORTED_PARAMETERS, ChatCompletionRequest


async def create_chat_completion(request: Request) -> Response | EventStreamResponse:
    principal = await caller(request)
    body = await read_model(request, ChatCompletionRequest, UNSUPPORTED_PARAMETERS)
    return await respond_chat(request, body, principal)
