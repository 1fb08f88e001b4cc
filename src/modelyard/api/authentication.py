"""Who is calling this request: the Principal, with the client address it came from.

Every route starts here. Failures (401) are left to the error renderer, which also audits them.
The Anthropic surface also takes the key as `x-api-key` (older `anthropic` SDKs send it there),
checked like Azure's `api-key`: one credential, or the same one in both headers.
A key or project this replica does not know yet may have just been created through another: it
catches up with the database once before refusing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from starlette.requests import Request

from modelyard.auth.authenticator import Authenticator
from modelyard.auth.principal import Principal
from modelyard.errors import AuthenticationFailed, PermissionDenied
from modelyard.observability.tracing import traced_call
from modelyard.state import app_state


def client_ip(request: Request) -> str | None:
    resolved: str | None = request.scope.get("state", {}).get("client_ip")
    if resolved is not None:
        return resolved
    return request.client.host if request.client else None


@traced_call("authenticate")
async def caller(request: Request, *, x_api_key: bool = False) -> Principal:
    """`x_api_key`: also take the key from `x-api-key` (the Anthropic surface).

    A request the console dispatches in-process arrives with its session's principal already
    in the scope (no client can put it there); it is used as is, so the console is authorized
    by the very same route code as the API.
    """
    signed_in: Principal | None = request.scope.get("state", {}).get("principal")
    if signed_in is not None:
        return signed_in
    state = app_state(request)
    headers = _with_x_api_key(request) if x_api_key else request.headers
    try:
        principal = await _authenticate(state.authenticator, headers)
    except (AuthenticationFailed, PermissionDenied):
        if not await state.directory_sync.catch_up():
            raise
        principal = await _authenticate(state.authenticator, headers)
    principal = principal._replace(client_ip=client_ip(request))
    request.scope.setdefault("state", {})["principal"] = principal
    return principal


def _with_x_api_key(request: Request) -> Mapping[str, str]:
    """The headers with `x-api-key` presented as `api-key`, which the authenticator reads."""
    key = request.headers.get("x-api-key")
    if key is None:
        return request.headers
    other = request.headers.get("api-key")
    if other is not None and other.strip() != key.strip():
        raise AuthenticationFailed("The 'x-api-key' and 'api-key' headers carry different keys.")
    headers = request.headers.mutablecopy()
    headers["api-key"] = key
    return headers


async def _authenticate(authenticator: Authenticator, headers: Mapping[str, str]) -> Principal:
    if authenticator.may_block(headers):
        return await asyncio.to_thread(authenticator.authenticate, headers)
    return authenticator.authenticate(headers)
