"""The models list and a model in the Anthropic shape, for `GET /v1/models` asked with an
`anthropic-version` header (the routes are `api/openai/models.py`'s). Only chat models are
listed: they are what the Messages API can call."""

from __future__ import annotations

from starlette.requests import Request

from modelyard.protocol.anthropic_output import model_page, page_limit
from modelyard.protocol.chat_response import JsonObject


def models_page(request: Request, listed: JsonObject) -> JsonObject:
    """One page of `listed` (the OpenAI-shaped list) as `limit`, `after_id`, `before_id` ask."""
    chat = [entry for entry in listed["data"] if entry["capabilities"]["completion_chat"]]
    query = request.query_params
    return model_page(
        chat, page_limit(query.get("limit")), query.get("after_id"), query.get("before_id")
    )
