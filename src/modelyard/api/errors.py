"""The only renderer of errors: every failure becomes the OpenAI error shape.

    {"error": {"message": ..., "type": ..., "param": ..., "code": ...}}

`Retry-After` is sent on 429 and 503 only: the Azure SDK retries any status that carries it
(CLIENTS.md gotcha 18). Unexpected exceptions become a 500 that says nothing about their cause
(`api/middleware.py`, `UnexpectedErrorMiddleware`).
"""

from __future__ import annotations

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from modelyard.audit.events import AuditEvent
from modelyard.errors import (
    AuthenticationFailed,
    BacklogFull,
    MethodNotAllowed,
    ModelyardError,
    PermissionDenied,
    RouteNotFound,
)
from modelyard.policy.access import AccessDenied

MAX_RETRY_AFTER_S = 120


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


def error_response(error: ModelyardError) -> Response:
    headers = dict(error.headers)
    if error.status in (429, 503):
        retry_after = min(error.retry_after_s or 1, MAX_RETRY_AFTER_S)
        headers["retry-after"] = str(retry_after)
        headers["retry-after-ms"] = str(retry_after * 1000)
    return Response(
        error_body(error), status_code=error.status, headers=headers, media_type="application/json"
    )


async def handle_modelyard_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ModelyardError)
    if isinstance(exc, AuthenticationFailed | PermissionDenied) and not _audit_refusal(
        request, exc
    ):
        return error_response(
            BacklogFull(
                "The gateway cannot record refusals for now: its audit log is behind (the "
                "database is slow or away). Retry shortly.",
                retry_after_s=2,
            )
        )
    return error_response(exc)


def _audit_refusal(request: Request, exc: AuthenticationFailed | PermissionDenied) -> bool:
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
            MethodNotAllowed(f"Method {request.method} is not allowed on {request.url.path}.")
        )
    return error_response(RouteNotFound(f"No route {request.method} {request.url.path}."))
