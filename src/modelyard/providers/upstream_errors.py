"""The errors every remote kind raises for an upstream's failure: their wording, their retry hint
(`retry_after_s`, read from the answer's headers) and what is logged about them.

Which one a failure becomes is not decided here: each kind's error reader (`transport.py` for
OpenAI-shaped upstreams, `anthropic/errors.py`, `cohere/errors.py`, `bedrock/errors.py`) decides
by the status and fields its upstream's API defines, then builds the error with these. Only the
upstream's message about a request it refused is passed on; never its URL or our credential.
"""

from __future__ import annotations

import email.utils
import logging
import math
import time
from collections.abc import Mapping

from modelyard.errors import (
    ContextLengthExceeded,
    RateLimited,
    UpstreamFailed,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)

log = logging.getLogger(__name__)

MAX_RETRY_AFTER_S = 120


def rate_limited(deployment_id: str, headers: Mapping[str, str]) -> RateLimited:
    return RateLimited(
        f"Deployment '{deployment_id}' is rate limited upstream; retry after the delay.",
        retry_after_s=retry_after_s(headers),
    )


def too_long(deployment_id: str, message: str) -> ContextLengthExceeded:
    # Another candidate with a larger window may take it: the router's own count was low.
    return ContextLengthExceeded(
        f"Deployment '{deployment_id}' found the request too long: {message}"
    )


def rejected(deployment_id: str, message: str) -> UpstreamRejected:
    return UpstreamRejected(
        f"Deployment '{deployment_id}' rejected the request: {message or '(no detail)'}"
    )


def credential_refused(
    deployment_id: str, detail: object, *, what: str = "our credential"
) -> UpstreamFailed:
    """The operator's to fix, so logged; `detail` (a status or error type) and `what` was
    refused say which, never the key itself."""
    log.error("upstream %s refused %s (%s)", deployment_id, what, detail)
    return UpstreamFailed(f"Deployment '{deployment_id}' refused the gateway's credential.")


def unavailable(deployment_id: str, headers: Mapping[str, str]) -> UpstreamUnavailable:
    return UpstreamUnavailable(
        f"Deployment '{deployment_id}' is unavailable.", retry_after_s=retry_after_s(headers)
    )


def overloaded(deployment_id: str, headers: Mapping[str, str]) -> UpstreamUnavailable:
    return UpstreamUnavailable(
        f"Deployment '{deployment_id}' is overloaded.", retry_after_s=retry_after_s(headers)
    )


def timed_out(deployment_id: str) -> UpstreamTimeout:
    return UpstreamTimeout(f"Deployment '{deployment_id}' did not answer in time.")


def failed(deployment_id: str, status: int) -> UpstreamFailed:
    return UpstreamFailed(f"Deployment '{deployment_id}' failed with status {status}.")


def retry_after_s(headers: Mapping[str, str]) -> int:
    """Seconds from `retry-after-ms`, or `Retry-After` (seconds or HTTP date), capped at 120;
    1 when the answer gives no usable hint (as errors inside a stream never do)."""
    seconds = _hinted_seconds(headers)
    if seconds is None or not math.isfinite(seconds):
        return 1
    return int(min(max(1, round(seconds + 0.499)), MAX_RETRY_AFTER_S))


def _hinted_seconds(headers: Mapping[str, str]) -> float | None:
    milliseconds = headers.get("retry-after-ms")
    if milliseconds is not None:
        try:
            return float(milliseconds) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return email.utils.parsedate_to_datetime(value).timestamp() - time.time()
    except ValueError:  # neither seconds nor an HTTP date: an upstream's garbage is no hint
        return None
