"""Bedrock's failures as our errors: an HTTP answer's `x-amzn-ErrorType` (or the body's
`__type`) and status, and the `:exception-type` of an exception inside a ConverseStream.

Decided by the error type Bedrock's API defines, then by status; the upstream's message reaches
the client only when Bedrock refused the request as invalid (it is about the caller's request).
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from modelyard.errors import ModelyardError, UpstreamFailed
from modelyard.providers.upstream_errors import (
    credential_refused,
    failed,
    rate_limited,
    rejected,
    timed_out,
    too_long,
    unavailable,
)

# Bedrock signals an input over the model's window only as a ValidationException whose message
# says so; these are the messages it sends for that case (its own, and the model's that it
# passes on for Anthropic models), matched narrowly and case-insensitively.
CONTEXT_TOO_LONG_MESSAGES = (
    "input is too long for requested model",
    "input length and `max_tokens` exceed context limit",
    "prompt is too long",
    "too many total text bytes",
)
# AWS refusing who we are (as opposed to what we asked): our configuration, not the caller's.
CREDENTIAL_ERRORS = frozenset(
    {
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "IncompleteSignatureException",
        "MissingAuthenticationTokenException",
        "ExpiredTokenException",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
    }
)


def read_error(
    deployment_id: str, status: int, headers: Mapping[str, str], body: bytes
) -> ModelyardError:
    """A non-2xx Bedrock answer as our error (the transport's `ErrorReader` for Bedrock)."""
    payload = _json(body)
    return bedrock_error(
        deployment_id,
        error_type(headers.get("x-amzn-errortype"), payload),
        _message(payload),
        status,
        headers,
    )


def stream_exception(deployment_id: str, exception_type: str, payload: bytes) -> ModelyardError:
    """An `exception` message inside a ConverseStream (`throttlingException`, ...)."""
    kind = exception_type[:1].upper() + exception_type[1:]
    return bedrock_error(deployment_id, kind, _message(_json(payload)), None, {})


def bedrock_error(
    deployment_id: str,
    kind: str,
    message: str,
    status: int | None,
    headers: Mapping[str, str],
) -> ModelyardError:
    if kind == "ThrottlingException" or (status == 429 and kind != "ModelNotReadyException"):
        # Bedrock sends no Retry-After: the retry hint is then its short default (1 s).
        return rate_limited(deployment_id, headers)
    if kind in ("ServiceUnavailableException", "ModelNotReadyException") or status == 503:
        return unavailable(deployment_id, headers)
    if kind == "ModelTimeoutException" or status in (408, 504):
        return timed_out(deployment_id)
    if kind in CREDENTIAL_ERRORS or status in (401, 403):
        return credential_refused(deployment_id, kind, what="the gateway's AWS credentials")
    if kind == "ValidationException" and _says_too_long(message):
        return too_long(deployment_id, message)
    if kind in ("ValidationException", "ResourceNotFoundException") or status in (
        400,
        404,
        413,
        422,
    ):
        return rejected(deployment_id, message)
    if kind == "ModelStreamErrorException":
        return UpstreamFailed(f"Deployment '{deployment_id}' failed mid-stream.")
    if status is None:
        return UpstreamFailed(f"Deployment '{deployment_id}' failed ({kind or 'unknown error'}).")
    return failed(deployment_id, status)


def error_type(header: str | None, payload: object) -> str:
    """`ValidationException` from `ValidationException:http://internal.amazon.com/...` or
    from a body's `__type` (`com.amazon.coral.validate#ValidationException`)."""
    if header:
        return header.split(":", 1)[0].strip()
    if isinstance(payload, dict):
        raw = payload.get("__type") or payload.get("code") or ""
        if isinstance(raw, str):
            return raw.rsplit("#", 1)[-1].split(":", 1)[0]
    return ""


def _says_too_long(message: str) -> bool:
    lowered = message.lower()
    return any(phrase in lowered for phrase in CONTEXT_TOO_LONG_MESSAGES)


def _json(body: bytes) -> object:
    try:
        return orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return None


def _message(payload: object) -> str:
    if isinstance(payload, dict):
        message = payload.get("message") or payload.get("Message")
        if isinstance(message, str) and message:
            return message[:500]
    return "(no detail)"
