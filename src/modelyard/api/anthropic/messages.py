"""POST /v1/messages and POST /v1/messages/count_tokens: the Anthropic Messages API onto the
canonical chat request, served by the same `ChatService` as chat completions (auth, roles,
limits, budgets, routing, the usage record and the audit are the chat path's own).

Streams are framed with named events and no `[DONE]`; a failure after the first byte is an
`event: error` and the end of the stream. The client leaving cancels the generation and is
recorded as 499, as on every surface.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
from starlette.requests import Request
from starlette.responses import Response

from modelyard.api.authentication import caller
from modelyard.api.chat import caller_timeout_s, unless_disconnected
from modelyard.api.errors import anthropic_error_body
from modelyard.api.parsing import read_model
from modelyard.api.sse import EventStreamResponse, Framing
from modelyard.errors import CLIENT_CLOSED_STATUS, InvalidRequest, ModelyardError
from modelyard.protocol import anthropic_output
from modelyard.protocol.anthropic_messages import (
    UNSUPPORTED_PARAMETERS,
    CountTokensRequest,
    MessagesRequest,
    to_canonical,
)
from modelyard.protocol.chat_response import JsonObject
from modelyard.serving.chat_run import ChatRun
from modelyard.serving.token_count import count_prompt_tokens
from modelyard.state import app_state, request_id


def _error_event(error: ModelyardError) -> bytes:
    return b"event: error\ndata: " + anthropic_error_body(error) + b"\n\n"


MESSAGES_STREAM = Framing(named=True, done=b"", error_event=_error_event)


async def create_message(request: Request) -> Response | EventStreamResponse:
    principal = await caller(request, x_api_key=True)
    body = await read_model(request, MessagesRequest, UNSUPPORTED_PARAMETERS)
    translation = to_canonical(body)
    state = app_state(request)
    rid = request_id(request)
    opening = state.chat.open_chat(
        translation.request, principal, rid, None, caller_timeout_s(request)
    )
    try:
        run = await unless_disconnected(opening, request.receive)
    except InvalidRequest as exc:
        raise translation.located(exc) from None
    if run is None:
        return Response(status_code=CLIENT_CLOSED_STATUS)  # nobody reads it; logs do
    message_id = f"msg_{rid}"
    if body.stream:
        return EventStreamResponse(
            _events(run, message_id),
            {**run.headers(), "request-id": rid},
            framing=MESSAGES_STREAM,
            on_disconnect=run.abandon,
        )
    outcome = await unless_disconnected(run.outcome(), request.receive, run.abandon)
    if outcome is None:
        return Response(status_code=CLIENT_CLOSED_STATUS)  # nobody reads it; logs do
    answer = anthropic_output.message(message_id, outcome.model, outcome.choices[0], outcome.usage)
    # After the outcome: a fallback may have changed the deployment and the attempt count.
    headers = {**run.headers(), **run.cost_header(), "request-id": rid}
    return Response(orjson.dumps(answer), media_type="application/json", headers=headers)


async def count_tokens(request: Request) -> Response:
    principal = await caller(request, x_api_key=True)
    body = await read_model(request, CountTokensRequest, UNSUPPORTED_PARAMETERS)
    translation = to_canonical(body)
    state = app_state(request)
    try:
        tokens = await count_prompt_tokens(
            state.router, state.access, translation.request, principal
        )
    except InvalidRequest as exc:
        raise translation.located(exc) from None
    return Response(
        orjson.dumps({"input_tokens": tokens}),
        media_type="application/json",
        headers={"request-id": request_id(request)},
    )


async def _events(run: ChatRun, message_id: str) -> AsyncIterator[list[JsonObject]]:
    """Events made together are yielded together: the stream sends them in one write."""
    shaper = anthropic_output.MessageEvents(message_id, run.card.id)
    yield shaper.opening(run.stream.prompt_tokens)
    events = run.events()
    try:
        async for event in events:
            yield shaper.feed(event)
    finally:
        # Closed at once, so that a client leaving stops the generation now.
        await events.aclose()
