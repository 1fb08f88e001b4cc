"""The OpenAI Responses API: `POST /v1/responses` (also `/responses`), and the stored
responses of projects that keep content: `GET` and `DELETE /v1/responses/{response_id}`,
`GET /v1/responses/{response_id}/input_items`.

A streamed response names each event (`event: response.output_text.delta`) and sends no
`[DONE]`; a failure after the start is an `error` event then `response.failed`. Like chat, a
client that leaves while the answer is made cancels it and is recorded as gone (499).
"""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response

from modelyard.api.authentication import caller
from modelyard.api.chat import caller_timeout_s, unless_disconnected
from modelyard.api.parsing import read_model
from modelyard.api.sse import EventStreamResponse, Framing
from modelyard.errors import (
    CLIENT_CLOSED_STATUS,
    InvalidParameter,
    ModelyardError,
    UnsupportedParameter,
)
from modelyard.protocol.responses import UNSUPPORTED_PARAMETERS, ResponsesRequest
from modelyard.serving.responses import MAX_LIST_LIMIT, ResponseTurn
from modelyard.state import app_state, request_id

NAMED = Framing(named=True, done=b"")


async def create_response(request: Request) -> Response | EventStreamResponse:
    principal = await caller(request)
    body = await read_model(request, ResponsesRequest, UNSUPPORTED_PARAMETERS)
    opening = app_state(request).responses.open(
        body, principal, request_id(request), caller_timeout_s(request)
    )
    turn = await unless_disconnected(opening, request.receive)
    if turn is None:
        return Response(status_code=CLIENT_CLOSED_STATUS)  # nobody reads it; logs do
    if body.stream:
        return EventStreamResponse(
            turn.events(), turn.headers(), framing=_framing(turn), on_disconnect=turn.abandon
        )
    answer = await unless_disconnected(turn.answer(), request.receive, turn.abandon)
    if answer is None:
        return Response(status_code=CLIENT_CLOSED_STATUS)  # nobody reads it; logs do
    # After the answer: a fallback may have changed the deployment and the attempt count.
    headers = {**turn.headers(), **turn.cost_header()}
    return Response(orjson.dumps(answer), media_type="application/json", headers=headers)


async def retrieve_response(request: Request) -> Response:
    principal = await caller(request)
    _refuse_query(request, allowed=frozenset({"include", "include[]", "stream"}))
    if request.query_params.get("stream", "false") != "false":
        raise UnsupportedParameter(
            "Modelyard does not replay stored responses as streams; leave 'stream' out.",
            param="stream",
        )
    found = await app_state(request).responses.retrieve(
        principal, request.path_params["response_id"]
    )
    return _json(found)


async def delete_response(request: Request) -> Response:
    principal = await caller(request)
    _refuse_query(request, allowed=frozenset())
    deleted = await app_state(request).responses.delete(
        principal, request.path_params["response_id"]
    )
    return _json(deleted)


async def list_input_items(request: Request) -> Response:
    principal = await caller(request)
    _refuse_query(request, allowed=frozenset({"after", "limit", "order", "include", "include[]"}))
    query = request.query_params
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidParameter("order must be 'asc' or 'desc'.", param="order")
    page = await app_state(request).responses.input_items(
        principal,
        request.path_params["response_id"],
        after=query.get("after"),
        limit=_limit(query.get("limit")),
        ascending=order == "asc",
    )
    return _json(page)


def _framing(turn: ResponseTurn) -> Framing:
    """Named events and no `[DONE]`; a failure of the gateway's own after the start is told as
    the stream tells an upstream's."""

    def failure(error: ModelyardError) -> bytes:
        return b"".join(NAMED.encode(event) for event in turn.failure_events(error))

    return Framing(named=True, done=b"", error_event=failure)


def _refuse_query(request: Request, allowed: frozenset[str]) -> None:
    for name in sorted(request.query_params.keys()):
        if name not in allowed:
            raise UnsupportedParameter(f"Unrecognized query parameter '{name}'.", param=name)
    if any(request.query_params.getlist(name) for name in ("include", "include[]")):
        raise UnsupportedParameter(
            "Modelyard does not support 'include' on this endpoint yet; remove it.",
            param="include",
        )


def _limit(raw: str | None) -> int:
    if raw is None:
        return 20
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIST_LIMIT:
        raise InvalidParameter(
            f"limit must be an integer from 1 to {MAX_LIST_LIMIT}.", param="limit"
        )
    return limit


def _json(body: object) -> Response:
    return Response(orjson.dumps(body), media_type="application/json")
