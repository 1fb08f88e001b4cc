"""Who is signed in to the console on this request: the session cookie resolved to a `SignedIn`,
the session and the principal its credential stands for today (re-checked on every page)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from starlette.requests import Request

from modelyard.auth.principal import Principal
from modelyard.auth.sessions import ConsoleSession
from modelyard.errors import AuthenticationFailed
from modelyard.policy.rbac import Action, role_allows
from modelyard.state import app_state

COOKIE = "modelyard_console"
SIGN_IN_PATH = "/console/sign-in"


class NotSignedIn(AuthenticationFailed):
    code = "console_sign_in_required"


@dataclass(frozen=True)
class SignedIn:
    session: ConsoleSession
    principal: Principal
    # Every project of the gateway; what the person may do in each is `may`.
    all_projects: tuple[str, ...]

    @property
    def csrf_token(self) -> str:
        return self.session.csrf_token

    def may(self, action: Action | str, project: str) -> bool:
        role = self.principal.role_in(project)
        return role is not None and role_allows(role, Action(action))

    def projects(self, action: Action | str = Action.PROJECTS_READ) -> list[str]:
        """The projects where the person may take `action`, in name order."""
        if self.principal.project is not None and self.principal.kind == "key":
            own = self.principal.project
            return [own] if self.may(action, own) else []
        return [p for p in self.all_projects if self.may(action, p)]

    def may_anywhere(self, action: Action | str) -> bool:
        return bool(self.projects(action))


async def signed_in(request: Request) -> SignedIn:
    """The signed-in person, checked now; NotSignedIn when there is none (or it ended)."""
    token = request.cookies.get(COOKIE)
    if not token:
        raise NotSignedIn("Sign in to the console first.")
    state = app_state(request)
    session = await asyncio.to_thread(state.sessions.find, token)
    if session is None:
        raise NotSignedIn("The console session has ended; sign in again.")
    try:
        principal = state.authenticator.session_principal(session.credential)
    except AuthenticationFailed:
        # The key may have been created or rotated through another replica a moment ago.
        if not await state.directory_sync.catch_up():
            await asyncio.to_thread(state.sessions.close, token)
            raise
        principal = state.authenticator.session_principal(session.credential)
    client_ip = request.scope.get("state", {}).get("client_ip")
    if client_ip is None and request.client is not None:
        client_ip = request.client.host
    principal = principal._replace(client_ip=client_ip)
    return SignedIn(session, principal, tuple(sorted(state.directory.projects)))
