"""The web console at `/console`: server-rendered pages over the gateway's own API.

Every page goes through `page.console_page` (session, CSRF, errors, security headers) and acts
through `internal.call`/`internal.relay`, the /admin and /v1 routes called in-process with the
signed-in person's principal. Static files (ours and the vendored libraries, see
`static/vendor/README.md`) are served from the installed package.
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from modelyard.api.console import (
    audit_log,
    catalog,
    evals,
    home,
    limits,
    oidc,
    playground,
    projects,
    routes_page,
    sign_in,
    usage,
)


def console_routes() -> list[BaseRoute]:
    pages = [
        *home.ROUTES,
        *sign_in.ROUTES,
        *oidc.ROUTES,
        *catalog.ROUTES,
        *playground.ROUTES,
        *projects.ROUTES,
        *limits.ROUTES,
        *usage.ROUTES,
        *audit_log.ROUTES,
        *routes_page.ROUTES,
        *evals.ROUTES,
    ]
    static = StaticFiles(packages=[("modelyard.api.console", "static")])
    return [
        Mount("/console", routes=[*pages, Mount("/static", app=static, name="console-static")]),
    ]


def page_routes() -> list[Route]:
    """Every console page route (for the tests that hold each one to the session rules)."""
    mount = console_routes()[0]
    assert isinstance(mount, Mount)
    return [route for route in mount.routes if isinstance(route, Route)]
