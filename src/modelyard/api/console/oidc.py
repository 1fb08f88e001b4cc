"""Signing in to the console through the identity provider (OIDC authorization code with PKCE).

`GET /console/sign-in/oidc` starts a sign-in: it keeps its state, nonce and code_verifier in a
short-lived cookie scoped to `/console/oidc` and sends the browser to the provider. The cookie
is `SameSite=Lax` because the provider's redirect back is a cross-site top-level GET, which a
Strict cookie would not follow; it is `HttpOnly` and used once. `GET /console/oidc/callback`
checks the state, trades the code (with the verifier) for an id_token, verifies that token as
the API verifies bearer tokens, checks its nonce and opens the session (`sign_in.start_session`).
Every failure shows the sign-in page with the reason and a 4xx (503 when the provider cannot be
reached), is audited as a failed login, and never shows the code or a token.

Offered only when the identity provider file (`MODELYARD_AUTH_CONFIG`) has a `console` section.
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from modelyard.api.console.page import with_page_headers
from modelyard.api.console.rendering import render
from modelyard.api.console.sign_in import (
    safe_next,
    set_console_cookie,
    sign_in_page,
    start_session,
)
from modelyard.api.errors import audit_refusal
from modelyard.auth.oidc_flow import (
    OidcSignInFailed,
    PendingSignIn,
    authorization_url,
    check_nonce,
    check_state,
    exchange_code,
    refused_by_provider,
)
from modelyard.auth.sessions import SessionCredential
from modelyard.errors import AuthenticationFailed, ModelyardError, NotFound, PermissionDenied
from modelyard.state import AppState, app_state

FLOW_COOKIE = "modelyard_console_oidc"
FLOW_PATH = "/console/oidc"
CALLBACK_PATH = FLOW_PATH + "/callback"
# Long enough to type a password and answer a second factor at the provider.
FLOW_COOKIE_S = 600


class OidcNotConfigured(NotFound):
    code = "oidc_not_configured"


def redirect_uri(request: Request) -> str:
    return str(request.base_url).rstrip("/") + CALLBACK_PATH


async def start(request: Request) -> Response:
    next_path = safe_next(request.query_params.get("next"))
    client = app_state(request).console_client
    if client is None:
        return sign_in_page(
            request,
            status=OidcNotConfigured.status,
            error="Signing in with an identity provider is not set up on this gateway.",
            next=next_path,
        )
    pending = PendingSignIn.start(next_path)
    response = RedirectResponse(
        authorization_url(client, pending, redirect_uri(request)), status_code=303
    )
    # Lax: the provider's redirect back is a top-level GET from another site.
    set_console_cookie(
        response,
        request,
        FLOW_COOKIE,
        pending.to_cookie(),
        max_age=FLOW_COOKIE_S,
        path=FLOW_PATH,
        samesite="lax",
    )
    return with_page_headers(response)


async def callback(request: Request) -> Response:
    state = app_state(request)
    pending = PendingSignIn.from_cookie(request.cookies.get(FLOW_COOKIE))
    next_path = pending.next_path if pending is not None else "/console"
    try:
        credential = await _signed_in_credential(request, state, pending)
    except ModelyardError as failed:
        if isinstance(failed, AuthenticationFailed | PermissionDenied):
            request.scope.setdefault("state", {})["principal"] = None
            audit_refusal(request, failed)
        response = sign_in_page(request, status=failed.status, error=failed.message, next=next_path)
    else:
        # Not a redirect: a page of this site moves on, so that the browser sends the session's
        # SameSite=Strict cookie (it withholds it all along a redirect chain the provider began).
        started = await start_session(request, state, credential, next_path)
        response = render(request, "oidc_continue.html", {"next": next_path})
        for name, value in started.raw_headers:
            if name == b"set-cookie":
                response.raw_headers.append((name, value))
        response = with_page_headers(response)
    response.delete_cookie(FLOW_COOKIE, path=FLOW_PATH)
    return response


async def _signed_in_credential(
    request: Request, state: AppState, pending: PendingSignIn | None
) -> SessionCredential:
    client = state.console_client
    if client is None:
        raise OidcNotConfigured(
            "Signing in with an identity provider is not set up on this gateway."
        )
    error = request.query_params.get("error")
    if error is not None:
        raise refused_by_provider(error)
    pending = check_state(pending, request.query_params.get("state"))
    code = request.query_params.get("code")
    if not code:
        raise OidcSignInFailed(
            "The identity provider's answer has no code; sign in again.", param="code"
        )
    id_token = await exchange_code(client, code, pending.code_verifier, redirect_uri(request))
    credential = await asyncio.to_thread(state.authenticator.token_session_credential, id_token)
    check_nonce(id_token, pending.nonce)
    return credential


ROUTES: list[BaseRoute] = [
    Route("/sign-in/oidc", start, methods=["GET"]),
    Route("/oidc/callback", callback, methods=["GET"]),
]
