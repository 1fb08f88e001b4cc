"""The only renderer of errors: every failure becomes the OpenAI error shape,

    {"error": {"message": ..., "type": ..., "param": ..., "code": ...}}

except on the Anthropic Messages surface (paths under `/v1/messages`, and `/v1/models` asked
with an `anthropic-version` header), where it becomes Anthropic's, with a `request-id` header:

    {"type": "error", "error": {"type": ..., "message": ...,
                                "details": {"error_code": ..., "param": ...}},
     "request_id": ...}

There 503s are sent as 529 `overloaded_error`, the status Anthropic's SDK knows as overload.

`Retry-After` is sent on 429 and 503 (529) only: the Azure SDK retries any status that carries
it (CLIENTS.md gotcha 18). Unexpected exceptions become a 500 that says nothing about their cause
(`api/middleware.py`, `UnexpectedErrorMiddleware`).
"""

from __future__ import annotations

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope

from modelyard.audit.events import AuditEvent
from modelyard.errors import (
    AuthenticationFailed,
    BacklogFull,
    MethodNotAllowed,
    ModelyardError,
    PermissionDenied,
    RouteNotFound,
)
from modelyard.observability.request_telemetry import note_error_code
from modelyard.policy.access import AccessDenied
from modelyard.protocol.anthropic_output import error_object

MAX_RETRY_AFTER_S = 120
ANTHROPIC_OVERLOADED = 529
ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    504: "timeout_error",
    ANTHROPIC_OVERLOADED: "overloaded_error",
}


def error_body(error: ModelyardError) -> bytes:
    return orjson.dumps(
        {
            "error": {
                "message": error.message,
                "type": error.type,
                "param": error.param,
                "code": error.code,
            }
        }
    )


def anthropic_shaped(scope: Scope) -> bool:
    """Whether this request is answered in the Anthropic Messages API's shapes."""
    path: str = scope.get("path", "")
    if path == "/v1/messages" or path.startswith("/v1/messages/"):
        return True
    return (path == "/v1/models" or path.startswith("/v1/models/")) and any(
        name == b"anthropic-version" for name, _ in scope.get("headers", ())
    )


def anthropic_status(error: ModelyardError) -> int:
    return ANTHROPIC_OVERLOADED if error.status == 503 else error.status


def anthropic_error_body(error: ModelyardError, request_id: str | None = None) -> bytes:
    status = anthropic_status(error)
    error_type = ANTHROPIC_TYPES.get(
        status, "invalid_request_error" if status < 500 else "api_error"
    )
    return orjson.dumps(
        error_object(error_type, error.message, error.code, error.param, request_id)
    )


def error_response(error: ModelyardError, scope: Scope | None = None) -> Response:
    """The error's answer, in the shape of the surface `scope` (the request) belongs to."""
    note_error_code(error.code)
    anthropic = scope is not None and anthropic_shaped(scope)
    status = anthropic_status(error) if anthropic else error.status
    headers = dict(error.headers)
    if status in (429, 503, ANTHROPIC_OVERLOADED):
        retry_after = min(error.retry_after_s or 1, MAX_RETRY_AFTER_S)
        headers["retry-after"] = str(retry_after)
        headers["retry-after-ms"] = str(retry_after * 1000)
    if scope is not None and anthropic:
        request_id = scope.get("state", {}).get("request_id")
        body = anthropic_error_body(error, request_id)
        if request_id is not None:
            headers["request-id"] = request_id
    else:
        body = error_body(error)
    return Response(body, status_code=status, headers=headers, media_type="application/json")


async def handle_modelyard_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ModelyardError)
    if isinstance(exc, AuthenticationFailed | PermissionDenied) and not audit_refusal(request, exc):
        return error_response(
            BacklogFull(
                "The gateway cannot record refusals for now: its audit log is behind (the "
                "database is slow or away). Retry shortly.",
                retry_after_s=2,
            ),
            request.scope,
        )
    return error_response(exc, request.scope)


def audit_refusal(request: Request, exc: AuthenticationFailed | PermissionDenied) -> bool:
    """Failed logins and denials go to the audit log, off the request path; False when its
    backlog is full (the refusal then cannot be answered as such, and is counted)."""
    state = request.app.state.modelyard
    scope_state = request.scope.get("state", {})
    principal = scope_state.get("principal")
    client_ip = scope_state.get("client_ip") or (request.client.host if request.client else None)
    if isinstance(exc, AuthenticationFailed) and not state.login_failures.should_record(
        client_ip or "unknown"
    ):
        return True  # counted; one record per source and minute says how many
    if isinstance(exc, AccessDenied):
        action, resource = str(exc.decision.action), exc.decision.resource
    else:
        action, resource = "auth.login", f"{request.method} {request.url.path}"
    event = AuditEvent(
        actor=principal.subject if principal is not None else "anonymous",
        action=action,
        object=resource,
        outcome="denied" if isinstance(exc, PermissionDenied) else "failed",
        reason=exc.message,
        project_id=principal.project if principal is not None else None,
        client_ip=client_ip,
        request_id=scope_state.get("request_id"),
    )
    return bool(state.audit_writer.offer(state.audit_log.stamped(event)))


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 for unknown paths and methods, in our shape."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        return error_response(
            MethodNotAllowed(f"Method {request.method} is not allowed on {request.url.path}."),
            request.scope,
        )
    return error_response(
        RouteNotFound(f"No route {request.method} {request.url.path}."), request.scope
    )
