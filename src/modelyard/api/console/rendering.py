"""Pages from the console's Jinja templates (autoescaped, strict about undefined names).

Every page gets `who` (the `SignedIn`, or None on the sign-in page), `csrf_token`, `nav` (the
sections this person may open) and `static(path)`. Filters: `dollars` (micro-dollars as $),
`count` (thousands separated), `when` (a UTC time, to the second).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from modelyard.api.console.session import SignedIn
from modelyard.policy.rbac import Action

STATIC_PREFIX = "/console/static/"
NOTHING = "\u2013"  # an en dash, for a value that is not there
# (label, path, the action that opens it: shown only to whoever may take it somewhere)
SECTIONS: tuple[tuple[str, str, Action | None], ...] = (
    ("Catalog", "/console/catalog", Action.CATALOG_READ),
    ("Playground", "/console/playground", Action.MODELS_USE),
    ("Projects & keys", "/console/projects", Action.PROJECTS_READ),
    ("Limits", "/console/limits", Action.USAGE_READ),
    ("Usage", "/console/usage", Action.USAGE_READ),
    ("Audit log", "/console/audit", Action.AUDIT_READ),
    ("Routes", "/console/routes", Action.CATALOG_READ),
    ("Evaluations", "/console/evals", Action.PROJECTS_READ),
)


def _dollars(micros: int | float | None) -> str:
    if micros is None:
        return NOTHING
    dollars = micros / 1_000_000
    return f"${dollars:,.6f}" if abs(dollars) < 1 else f"${dollars:,.2f}"


def _count(value: int | float | None) -> str:
    if value is None:
        return NOTHING
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def _when(value: datetime | str | None) -> str:
    if value is None:
        return NOTHING
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


environment = Environment(
    loader=PackageLoader("modelyard.api.console", "templates"),
    autoescape=select_autoescape(["html"], default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    auto_reload=False,
)
environment.filters.update(dollars=_dollars, count=_count, when=_when)
environment.globals["static"] = lambda path: STATIC_PREFIX + path


def nav(request: Request, who: SignedIn | None) -> list[dict[str, Any]]:
    if who is None:
        return []
    return [
        {"label": label, "href": href, "current": request.url.path.startswith(href)}
        for label, href, action in SECTIONS
        if action is None or who.may_anywhere(action)
    ]


def render(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    who: SignedIn | None = None,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    html = environment.get_template(template).render(
        {
            "who": who,
            "csrf_token": who.csrf_token if who is not None else "",
            "nav": nav(request, who),
            "path": request.url.path,
            **(context or {}),
        }
    )
    return HTMLResponse(html, status_code=status, headers=headers)


def error_page(request: Request, who: SignedIn | None, status: int, message: str) -> HTMLResponse:
    """The error as a whole page, or as a fragment when htmx asked (it swaps it in place)."""
    fragment = request.headers.get("hx-request") == "true"
    template = "error_fragment.html" if fragment else "error.html"
    return render(request, template, {"status": status, "message": message}, who=who, status=status)
