"""Answering a chat request once a surface has parsed it: JSON or SSE, shared by the OpenAI,
Azure AI Inference and Azure OpenAI routes (they differ only in how they read the request and
whether a stream may carry an in-band error event)."""

from __future__ import annotations

import asyncio

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive

from modelyard.api.sse import EventStreamResponse
from modelyard.auth.principal import Principal
from modelyard.errors import CLIENT_CLOSED_STATUS
from modelyard.protocol.chat import ChatCompletionRequest
from modelyard.serving.chat_run import ChatRun
from modelyard.state import app_state, request_id


async def respond_chat(
    request: Request,
    body: ChatCompletionRequest,
    principal: Principal,
    *,
    error_events: bool = True,
    deployment_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response | EventStreamResponse:
    state = app_state(request)
    run = await state.chat.open_chat(body, principal, request_id(request), deployment_id)
    headers = {**run.headers(), **(headers or {})}
    if body.stream:
        return EventStreamResponse(
            run.chunks(), headers, error_events=error_events, on_disconnect=run.abandon
        )
    completion = await complete_unless_disconnected(run, request.receive)
    if completion is None:
        return Response(status_code=CLIENT_CLOSED_STATUS)  # nobody reads it; logs do
    headers.update(run.cost_header())
    return Response(orjson.dumps(completion), media_type="application/json", headers=headers)


async def complete_unless_disconnected(run: ChatRun, receive: Receive) -> dict[str, object] | None:
    """The completion, or None if the client left first (generation is then cancelled).

    The completion runs in this task; a watcher task cancels it if the client leaves (one task
    per request rather than two and a wait)."""
    completing = asyncio.current_task()
    assert completing is not None
    left = finished = False

    def client_left(watching: asyncio.Task[None]) -> None:
        nonlocal left
        # A callback already queued when the completion finished must not cancel what follows.
        if finished or watching.cancelled() or watching.exception() is not None:
            return
        left = True
        run.abandon()
        completing.cancel()

    watching = asyncio.ensure_future(_disconnected(receive))
    watching.add_done_callback(client_left)
    try:
        return await run.complete()
    except asyncio.CancelledError:
        if not left:
            raise
        completing.uncancel()
        return None
    finally:
        finished = True
        watching.cancel()


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
