"""The access log: one line per HTTP request, on the logger `modelyard.access`, written when the
request's telemetry is finished (the response has gone and, for an admitted request, its
lifecycle has left, so a stream the client abandoned is logged once, with what it came to).

A line carries the request's fields as a dict on the log record (`ACCESS_FIELDS`); the log
format (`observability/logs.py`) renders them as top-level JSON keys or as a readable one-liner
(`describe`). The fields are names from the catalog and the configuration, counts, times and
ids: never content, never a key. This runs on every request, so it builds a plain dict and
nothing more when the logger is off.
"""

from __future__ import annotations

import logging
from typing import Any

from modelyard.money import dollars
from modelyard.observability.request_telemetry import RequestTelemetry

ACCESS_LOGGER = "modelyard.access"
# The attribute of an access line's log record that holds its fields.
ACCESS_FIELDS = "access"
# The route of a request no route matched, in a line's message (its `http_route` is null).
UNMATCHED = "(unmatched)"


class AccessLog:
    """A `TelemetrySink` writing the access log."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._log = logger or logging.getLogger(ACCESS_LOGGER)

    def request_finished(self, request: RequestTelemetry) -> None:
        if not self._log.isEnabledFor(logging.INFO):
            return
        fields = access_fields(request)
        self._log.info(
            "%s %s %s",
            fields["method"],
            fields["http_route"] or UNMATCHED,
            fields["status"],
            extra={ACCESS_FIELDS: fields},
        )


def access_fields(request: RequestTelemetry) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "request_id": request.request_id,
        "trace_id": request.trace_id,
        "method": request.method,
        "http_route": request.http_route,
        "status": request.final_status,
        "error_code": request.final_error_code,
        "latency_ms": round(request.duration_s * 1000, 1),
    }
    facts = request.admitted
    if facts is not None:
        ttft = facts.time_to_first_token_s
        fields.update(
            project=facts.project_id,
            operation=facts.operation,
            request_model=facts.request_model,
            deployment=facts.deployment,
            route=facts.route,
            ttft_ms=None if ttft is None else round(ttft * 1000, 1),
            prompt_tokens=facts.prompt_tokens,
            completion_tokens=facts.completion_tokens,
            cost_micros=facts.cost_micros,
            cost_usd=dollars(facts.cost_micros),
            attempts=len(facts.attempts),
            client_left=facts.client_left,
        )
    return fields


def describe(fields: dict[str, Any]) -> str:
    """An access line for a terminal: `POST /v1/chat/completions 200 41ms req=... project=...
    deployment=... tokens=12+30 cost=$0.000042 attempts=1`."""
    parts = [
        fields["method"],
        fields["http_route"] or UNMATCHED,
        str(fields["status"]),
        milliseconds(fields["latency_ms"]),
    ]
    if fields["error_code"]:
        parts.append(f"error={fields['error_code']}")
    parts.append(f"req={fields['request_id']}")
    if "project" in fields:
        parts += [f"project={fields['project']}", f"model={fields['request_model']}"]
        if fields["route"]:
            parts.append(f"route={fields['route']}")
        parts.append(f"deployment={fields['deployment']}")
        if fields["ttft_ms"] is not None:
            parts.append(f"ttft={milliseconds(fields['ttft_ms'])}")
        parts += [
            f"tokens={fields['prompt_tokens']}+{fields['completion_tokens']}",
            f"cost=${fields['cost_usd']}",
            f"attempts={fields['attempts']}",
        ]
        if fields["client_left"]:
            parts.append("client_left")
    if fields["trace_id"]:
        parts.append(f"trace={fields['trace_id']}")
    return " ".join(parts)


def milliseconds(value: float) -> str:
    """`41ms`, or `0.3ms` under 10 ms, where a gateway hop's time would otherwise read 0."""
    return f"{value:.1f}ms" if value < 10 else f"{value:.0f}ms"
