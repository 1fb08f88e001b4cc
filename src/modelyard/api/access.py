"""Who is calling this request: the Principal, with the client address it came from.

Every route starts here. Failures (401) are left to the error renderer, which also audits them.
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request

from modelyard.auth.principal import Principal
from modelyard.state import app_state


def client_ip(request: Request) -> str | None:
    resolved: str | None = request.scope.get("state", {}).get("client_ip")
    if resolved is not None:
        return resolved
    return request.client.host if request.client else None


async def caller(request: Request) -> Principal:
    authenticator = app_state(request).authenticator
    if authenticator.may_block(request.headers):
        principal = await asyncio.to_thread(authenticator.authenticate, request.headers)
    else:
        principal = authenticator.authenticate(request.headers)
    principal = principal._replace(client_ip=client_ip(request))
    request.scope.setdefault("state", {})["principal"] = principal
    return principal
