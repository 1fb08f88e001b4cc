"""Signing in to the console with an API key (or the admin key), and signing out.

Sign-in is the one console form posted without a session, so it carries its own token: the
sign-in page sets it in a short-lived `SameSite=Strict` cookie and in the form, and the POST
must bring both, equal (and come from this origin). A refused key is audited like a refused API
request; a sign-in and a sign-out are audited as such. Sign-out deletes the session row, so the
cookie is worthless afterwards even if it was copied.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
from typing import Any, Literal

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from modelyard.api.console.page import console_page, with_page_headers
from modelyard.api.console.rendering import render
from modelyard.api.console.security import CSRF_FIELD, CsrfRefused, check_origin
from modelyard.api.console.session import COOKIE, SIGN_IN_PATH, SignedIn, signed_in
from modelyard.api.errors import audit_refusal
from modelyard.audit.events import AuditEvent, Outcome
from modelyard.auth.principal import Principal
from modelyard.auth.sessions import SessionCredential
from modelyard.errors import AuthenticationFailed
from modelyard.state import AppState, app_state

SIGN_IN_COOKIE = "modelyard_console_sign_in"
_SIGN_IN_COOKIE_S = 3600


def safe_next(value: str | None) -> str:
    """Where to go after signing in: a console path, never another site."""
    if value and value.startswith("/console") and not value.startswith("//"):
        return value
    return "/console"


def secure_cookies(request: Request) -> bool:
    return request.url.scheme == "https"


def set_console_cookie(
    response: Response,
    request: Request,
    name: str,
    value: str,
    *,
    max_age: int,
    path: str,
    samesite: Literal["strict", "lax"] = "strict",
) -> None:
    """A cookie of the console's: HttpOnly, Secure under TLS, scoped to `path`."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=path,
        httponly=True,
        secure=secure_cookies(request),
        samesite=samesite,
    )


def sign_in_page(
    request: Request, *, status: int = 200, error: str | None = None, **context: Any
) -> Response:
    token = secrets.token_urlsafe(32)
    response = render(
        request,
        "sign_in.html",
        {
            "sign_in_token": token,
            "next": safe_next(request.query_params.get("next") or context.pop("next", None)),
            "error": error,
            "oidc": app_state(request).console_client is not None,
            **context,
        },
        status=status,
    )
    set_console_cookie(
        response, request, SIGN_IN_COOKIE, token, max_age=_SIGN_IN_COOKIE_S, path=SIGN_IN_PATH
    )
    return with_page_headers(response)


async def show_sign_in(request: Request) -> Response:
    try:
        await signed_in(request)
    except AuthenticationFailed:
        return sign_in_page(request)
    return with_page_headers(RedirectResponse(safe_next(request.query_params.get("next")), 303))


async def sign_in(request: Request) -> Response:
    check_origin(request)
    form = await request.form()
    presented = str(form.get(CSRF_FIELD) or "")
    expected = request.cookies.get(SIGN_IN_COOKIE, "")
    if not expected or not hmac.compare_digest(presented, expected):
        raise CsrfRefused(
            "The sign-in form is stale or came from elsewhere; reload it and try again.",
            param=CSRF_FIELD,
        )
    next_path = safe_next(str(form.get("next") or ""))
    key = str(form.get("api_key") or "").strip()
    state = app_state(request)
    try:
        if not key:
            raise AuthenticationFailed("Enter an API key.")
        principal = await _authenticate(state, key)
        credential = (
            state.authenticator.token_session_credential(key)
            if principal.kind == "token"
            else state.authenticator.session_credential(principal)
        )
    except AuthenticationFailed as refused:
        request.scope.setdefault("state", {})["principal"] = None
        audit_refusal(request, refused)
        return sign_in_page(request, status=401, error=refused.message, next=next_path)
    return await start_session(request, state, credential, next_path)


async def start_session(
    request: Request, state: AppState, credential: SessionCredential, next_path: str
) -> Response:
    """Open the session for `credential`, audit it, set the cookie and go to `next_path`."""
    token, session = await asyncio.to_thread(state.sessions.open, credential)
    _audit(request, state, credential.subject, "console.sign_in", "succeeded")
    response = RedirectResponse(next_path, status_code=303)
    lifetime_s = int((session.expires_at - session.created_at).total_seconds()) or 1
    set_console_cookie(response, request, COOKIE, token, max_age=lifetime_s, path="/console")
    response.delete_cookie(SIGN_IN_COOKIE, path=SIGN_IN_PATH)
    return with_page_headers(response)


async def _authenticate(state: AppState, key: str) -> Principal:
    headers = {"authorization": f"Bearer {key}"}
    try:
        return await asyncio.to_thread(state.authenticator.authenticate, headers)
    except AuthenticationFailed:
        if not await state.directory_sync.catch_up():
            raise
        return await asyncio.to_thread(state.authenticator.authenticate, headers)


@console_page
async def sign_out(request: Request, who: SignedIn) -> Response:
    state = app_state(request)
    await asyncio.to_thread(state.sessions.close, request.cookies.get(COOKIE, ""))
    _audit(request, state, who.principal.subject, "console.sign_out", "succeeded")
    response = RedirectResponse(SIGN_IN_PATH, status_code=303)
    response.delete_cookie(COOKIE, path="/console")
    return response


def _audit(request: Request, state: AppState, subject: str, action: str, outcome: Outcome) -> None:
    scope_state = request.scope.get("state", {})
    event = AuditEvent(
        actor=subject,
        action=action,
        object="console",
        outcome=outcome,
        reason="web console",
        client_ip=scope_state.get("client_ip"),
        request_id=scope_state.get("request_id"),
    )
    state.audit_writer.offer(state.audit_log.stamped(event))


ROUTES: list[BaseRoute] = [
    Route("/sign-in", show_sign_in, methods=["GET"]),
    Route("/sign-in", sign_in, methods=["POST"]),
    Route("/sign-out", sign_out, methods=["POST"]),
]
