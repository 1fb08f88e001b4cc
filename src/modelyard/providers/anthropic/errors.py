"""Anthropic's failures in our error tree: a non-2xx answer (`read_error`, the transport's
`ErrorReader` for this kind) and an `event: error` inside a stream (`stream_error`).

Anthropic's error body is `{"type": "error", "error": {"type": <error type>, "message": ...}}`.
The mapping is by HTTP status and by `error.type`, the fields its API defines. Only the message
of a request Anthropic refused as invalid is passed on (it is about the caller's request);
nothing else it says reaches the client.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import orjson

from modelyard.errors import ModelyardError, UpstreamFailed
from modelyard.providers.anthropic.reply import usage_from
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

# Anthropic has no error code for a prompt longer than the model's window: it answers 400
# `invalid_request_error` with a message that begins "prompt is too long: N tokens > M maximum".
# That documented prefix is matched, and only on that status and type.
PROMPT_TOO_LONG = "prompt is too long"
# Statuses (and, inside a stream, error types) that say the caller's request was refused: invalid,
# unknown model, body over Anthropic's byte limit, unprocessable. A 413 `request_too_large` is
# about bytes, not tokens: it is passed on as rejected, not as a context window that a larger
# model could hold.
REJECTED_STATUSES = frozenset({400, 404, 413, 422})
REJECTED_TYPES = frozenset({"invalid_request_error", "not_found_error", "request_too_large"})
MAX_MESSAGE_CHARS = 500


def read_error(
    deployment_id: str, status: int, headers: Mapping[str, str], body: bytes
) -> ModelyardError:
    payload = _json(body)
    kind, message = error_fields(payload)
    error = map_error(deployment_id, status, kind, message, headers)
    error.upstream_usage = _reported_usage(payload)
    return error


def stream_error(deployment_id: str, payload: Mapping[str, Any]) -> ModelyardError:
    """An `event: error` that arrived after the stream's 200."""
    kind, message = error_fields(payload)
    return map_error(deployment_id, None, kind, message, {})


def map_error(
    deployment_id: str,
    status: int | None,
    kind: str,
    message: str,
    headers: Mapping[str, str],
) -> ModelyardError:
    """`status` is None for an error inside a stream: its `error.type` alone decides (and
    `headers` are empty: the retry hint is then the default)."""
    if status == 429 or kind == "rate_limit_error":
        return rate_limited(deployment_id, headers)
    if status in (503, 529) or kind == "overloaded_error":
        return overloaded(deployment_id, headers)
    if status in (401, 403) or kind in ("authentication_error", "permission_error"):
        return credential_refused(deployment_id, status or kind)
    if status == 402 or kind == "billing_error":
        log.error("upstream %s refused the gateway's account: billing (%s)", deployment_id, kind)
        return UpstreamFailed(f"Deployment '{deployment_id}' refused the gateway's account.")
    if status == 400 and kind == "invalid_request_error" and message.startswith(PROMPT_TOO_LONG):
        return too_long(deployment_id, message)
    if status in REJECTED_STATUSES or (status is None and kind in REJECTED_TYPES):
        return rejected(deployment_id, message)
    if status == 504 or kind == "timeout_error":
        return timed_out(deployment_id)
    if status is None:
        what = kind or "error"
        return UpstreamFailed(f"Deployment '{deployment_id}' failed mid-stream ({what}).")
    return failed(deployment_id, status)


def error_fields(payload: Any) -> tuple[str, str]:
    """`error.type` and `error.message` of an Anthropic error body ("" when absent)."""
    error = payload.get("error") if isinstance(payload, Mapping) else None
    if not isinstance(error, Mapping):
        return "", ""
    kind, message = error.get("type"), error.get("message")
    return (
        kind if isinstance(kind, str) else "",
        message[:MAX_MESSAGE_CHARS] if isinstance(message, str) else "",
    )


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def _reported_usage(payload: Any) -> tuple[int, int] | None:
    """What a failed answer says it consumed, when it says so (Anthropic's `usage` shape)."""
    raw = payload.get("usage") if isinstance(payload, Mapping) else None
    if not isinstance(raw, Mapping):
        return None
    usage = usage_from(raw)
    return (usage.prompt_tokens, usage.completion_tokens) if usage.total_tokens else None
