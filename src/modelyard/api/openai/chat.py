"""POST /v1/chat/completions (also /chat/completions)."""

from __future__ import annotations

import asyncio

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive

from modelyard.api.parsing import read_model
from modelyard.api.sse import EventStreamResponse
from modelyard.protocol.chat import UNSUPPORTED_PARAMETERS, ChatCompletionRequest
from modelyard.serving.chat_run import ChatRun
from modelyard.state import app_state, request_id


async def create_chat_completion(request: Request) -> Response | EventStreamResponse:
    state = app_state(request)
    principal = state.authenticator.authenticate(request.headers)
    body = await read_model(request, ChatCompletionRequest, UNSUPPORTED_PARAMETERS)
    run = await state.chat.open_chat(body, principal, request_id(request))
    headers = route_headers(run)
    if body.stream:
        return EventStreamResponse(run.chunks(), headers)
    completion = await complete_unless_disconnected(run, request.receive)
    if completion is None:
        return Response(status_code=499)
    return Response(orjson.dumps(completion), media_type="application/json", headers=headers)


def route_headers(run: ChatRun) -> dict[str, str]:
    return {
        "x-modelyard-deployment": run.deployment.id,
        "x-modelyard-route-reason": run.route_reason,
    }


async def complete_unless_disconnected(run: ChatRun, receive: Receive) -> dict[str, object] | None:
    """The completion, or None if the client left first (generation is then cancelled)."""
    completing = asyncio.ensure_future(run.complete())
    watching = asyncio.ensure_future(_disconnected(receive))
    try:
        await asyncio.wait({completing, watching}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watching.cancel()
        if not completing.done():
            run.stream.cancel()
            completing.cancel()
    if completing.cancelled():
        return None
    return completing.result()


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
