"""Cohere's non-2xx answers as our errors, by status (Cohere's error body is only
`{"id"?, "message"}`: it has no error type or code to read).

429 is a rate limit (its `Retry-After` honoured when sent), 503 an overload with a retry hint,
a 400 about the prompt's length `ContextLengthExceeded`, other 400/422 rejections of the caller's
request with Cohere's reason passed on; 401/403/498 (our key refused) and 402 (our account) are
the operator's to fix and logged as such; 404 means the catalog names a model Cohere does not
serve; 5xx and the rest are failures another deployment may not share.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import orjson

from modelyard.errors import ModelyardError, UpstreamFailed
from modelyard.providers.cohere.answer import usage_of
from modelyard.providers.upstream_errors import (
    credential_refused,
    failed,
    overloaded,
    rate_limited,
    rejected,
    timed_out,
    too_long,
)

log = logging.getLogger(__name__)

# Cohere has no error code for a prompt over the model's window, only a message: its documented
# 400s for it begin "too many tokens" ("too many tokens: total number of tokens in the prompt
# cannot exceed 4081 - received 4292", "... size limit exceeded by 11326 tokens"). The one that
# begins the same way about `max_tokens` above the model's output limit is about the parameter,
# not the prompt, and stays a rejection.
TOO_LONG_PREFIX = "too many tokens"
MAX_TOKENS_PREFIX = "too many tokens: max tokens"
MESSAGE_LIMIT = 500


def read_error(
    deployment_id: str, status: int, headers: Mapping[str, str], body: bytes
) -> ModelyardError:
    payload = _payload(body)
    error = _error(deployment_id, status, headers, _message(payload))
    usage = usage_of(payload.get("usage"))
    if usage is not None and usage.total_tokens:
        error.upstream_usage = (usage.prompt_tokens, usage.completion_tokens)
    return error


def _error(
    deployment_id: str, status: int, headers: Mapping[str, str], message: str
) -> ModelyardError:
    if status == 429:
        return rate_limited(deployment_id, headers)
    if status == 400 and _too_long(message):
        return too_long(deployment_id, message)
    if status in (400, 422):
        return rejected(deployment_id, message)
    if status in (401, 402, 403, 498):
        return credential_refused(deployment_id, status, what="the gateway's account or credential")
    if status == 404:
        log.error("upstream %s does not serve the model the catalog names", deployment_id)
        return UpstreamFailed(f"Deployment '{deployment_id}' does not serve its model.")
    if status == 503:
        return overloaded(deployment_id, headers)
    if status == 504:
        return timed_out(deployment_id)
    return failed(deployment_id, status)


def _too_long(message: str) -> bool:
    lowered = message.lower()
    return lowered.startswith(TOO_LONG_PREFIX) and not lowered.startswith(MAX_TOKENS_PREFIX)


def _payload(body: bytes) -> dict[str, object]:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    return payload if isinstance(payload, dict) else {}


def _message(payload: dict[str, object]) -> str:
    message = payload.get("message")
    return message[:MESSAGE_LIMIT] if isinstance(message, str) and message else "(no detail)"
