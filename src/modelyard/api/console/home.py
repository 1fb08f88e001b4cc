"""The console's front page: who is signed in, their role in each project, and the sections."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from modelyard.api.console.page import console_page
from modelyard.api.console.rendering import render
from modelyard.api.console.session import SignedIn


@console_page
async def home(request: Request, who: SignedIn) -> Response:
    roles = [
        (project, role.value)
        for project in who.projects()
        if (role := who.principal.role_in(project)) is not None
    ]
    return render(request, "home.html", {"roles": roles}, who=who)


ROUTES: list[BaseRoute] = [Route("/", home, methods=["GET"])]
