"""POST /v1/feedback: a score in [0, 1] and labels on one of the project's served requests."""

from __future__ import annotations

import asyncio

import orjson
from starlette.requests import Request
from starlette.responses import Response

from modelyard.api.authentication import caller
from modelyard.api.parsing import read_model
from modelyard.protocol.evals import FeedbackPost
from modelyard.state import app_state


async def give_feedback(request: Request) -> Response:
    principal = await caller(request)
    body = await read_model(request, FeedbackPost, frozenset())
    given = await asyncio.to_thread(app_state(request).feedback.give, principal, body)
    return Response(orjson.dumps(given), status_code=201, media_type="application/json")
