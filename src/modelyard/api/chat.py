"""Answering a chat request once a surface has parsed it: JSON or SSE, shared by the OpenAI,
Azure AI Inference and Azure OpenAI routes (they differ only in how they read the request and
how their streams are framed); and waiting on work unless the client leaves, which every
surface does."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Coroutine
from typing import TypeVar

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive

from modelyard.api.sse import CHAT_COMPLETIONS, EventStreamResponse, Framing
from modelyard.auth.principal import Principal
from modelyard.errors import CLIENT_CLOSED_STATUS
from modelyard.protocol.chat import ChatCompletionRequest
from modelyard.state import app_state, request_id

T = TypeVar("T")


async def respond_chat(
    request: Request,
    body: ChatCompletionRequest,
    principal: Principal,
    *,
    framing: Framing = CHAT_COMPLETIONS,
    deployment_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response | EventStreamResponse:
    state = app_state(request)
    # Opening waits for a first output (a local engine's queue, fallbacks): a client that
    # leaves meanwhile cancels it, and is recorded as gone at once.
    opening = state.chat.open_chat(
        body, principal, request_id(request), deployment_id, caller_timeout_s(request)
    )
    run = await unless_disconnected(opening, request.receive)
    if run is None:
        return Response(status_code=CLIENT_CLOSED_STATUS)  # nobody reads it; logs do
    if body.stream:
        return EventStreamResponse(
            run.chunks(),
            {**run.headers(), **(headers or {})},
            framing=framing,
            on_disconnect=run.abandon,
        )
    completion = await unless_disconnected(run.complete(), request.receive, run.abandon)
    if completion is None:
        return Response(status_code=CLIENT_CLOSED_STATUS)  # nobody reads it; logs do
    # After completion: a fallback may have changed the deployment and the attempt count.
    answer_headers = {**run.headers(), **(headers or {}), **run.cost_header()}
    return Response(orjson.dumps(completion), media_type="application/json", headers=answer_headers)


# A caller's own deadline, in seconds: ours, or the one the openai and anthropic SDKs send.
TIMEOUT_HEADERS = ("x-modelyard-timeout-s", "x-stainless-timeout")


def caller_timeout_s(request: Request) -> float | None:
    """The deadline the caller asked for, if any (a malformed value is ignored, not refused:
    SDKs send this header on their own)."""
    for name in TIMEOUT_HEADERS:
        value = request.headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value)
        except ValueError:
            continue
        if math.isfinite(seconds) and seconds > 0:
            return seconds
    return None


async def unless_disconnected(
    work: Coroutine[object, object, T],
    receive: Receive,
    on_leave: Callable[[], None] = lambda: None,
) -> T | None:
    """What `work` returns, or None if the client left first (`on_leave` is called, then the
    work is cancelled).

    The work runs in this task; a watcher task cancels it if the client leaves (one task per
    request rather than two and a wait)."""
    working = asyncio.current_task()
    assert working is not None
    left = finished = False

    def client_left(watching: asyncio.Task[None]) -> None:
        nonlocal left
        # A callback already queued when the work finished must not cancel what follows.
        if finished or watching.cancelled() or watching.exception() is not None:
            return
        left = True
        on_leave()
        working.cancel()

    watching = asyncio.ensure_future(_disconnected(receive))
    watching.add_done_callback(client_left)
    try:
        return await work
    except asyncio.CancelledError:
        if not left:
            raise
        working.uncancel()
        return None
    finally:
        finished = True
        watching.cancel()


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
