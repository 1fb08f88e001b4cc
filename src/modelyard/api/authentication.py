"""Who is calling this request: the Principal, with the client address it came from.

Every route starts here. Failures (401) are left to the error renderer, which also audits them.
A key or project this replica does not know yet may have just been created through another: it
catches up with the database once before refusing.
"""

from __future__ import annotations

import asyncio

from starlette.datastructures import Headers
from starlette.requests import Request

from modelyard.auth.authenticator import Authenticator
from modelyard.auth.principal import Principal
from modelyard.errors import AuthenticationFailed, PermissionDenied
from modelyard.state import app_state


def client_ip(request: Request) -> str | None:
    resolved: str | None = request.scope.get("state", {}).get("client_ip")
    if resolved is not None:
        return resolved
    return request.client.host if request.client else None


async def caller(request: Request) -> Principal:
    state = app_state(request)
    try:
        principal = await _authenticate(state.authenticator, request.headers)
    except (AuthenticationFailed, PermissionDenied):
        if not await state.directory_sync.catch_up():
            raise
        principal = await _authenticate(state.authenticator, request.headers)
    principal = principal._replace(client_ip=client_ip(request))
    request.scope.setdefault("state", {})["principal"] = principal
    return principal


async def _authenticate(authenticator: Authenticator, headers: Headers) -> Principal:
    if authenticator.may_block(headers):
        return await asyncio.to_thread(authenticator.authenticate, headers)
    return authenticator.authenticate(headers)
