"""The console's Catalog page: the models and routes the signed-in person may call in one of
their projects, as cards, filtered on the server, and a side-by-side comparison of two to four.

What is listed is exactly what `GET /v1/models` answers for the person acting in that project
(the same allowlists as the API; nothing is decided here); `catalog_listing.py` shapes,
filters and compares those entries. The filters are a GET form, so a filtered view is a
shareable URL that works without JavaScript; htmx sends the same query and gets only the cards
back.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from modelyard.api.console import internal
from modelyard.api.console.catalog_listing import (
    CAPABILITY_LABELS,
    COMPARED_AT_LEAST,
    COMPARED_AT_MOST,
    SOURCE_LABELS,
    Facets,
    Filters,
    Listing,
    comparison,
    listing_of,
)
from modelyard.api.console.page import console_page
from modelyard.api.console.rendering import error_page, render
from modelyard.api.console.session import SignedIn
from modelyard.errors import InvalidParameter, ModelNotFound
from modelyard.policy.rbac import Action


async def _listings(
    request: Request, who: SignedIn, project: str | None
) -> list[Listing] | Response:
    """The project's models and routes as the API lists them to this person, or its refusal."""
    answer = await internal.call(request, who, "GET", "/v1/models", project=project)
    if not answer.ok:
        return error_page(request, who, answer.status, answer.error_message)
    return [listing_of(entry) for entry in answer.json()["data"]]


def _project(request: Request, who: SignedIn) -> tuple[str | None, list[str]]:
    """The project asked for (the API refuses one that is not the person's), else the first."""
    projects = who.projects(Action.CATALOG_READ)
    asked = request.query_params.get("project", "").strip()
    return (asked or (projects[0] if projects else None)), projects


@console_page
async def catalog_page(request: Request, who: SignedIn) -> Response:
    filters = Filters.from_query(request.query_params)
    project, projects = _project(request, who)
    context: dict[str, Any] = {
        "project": project,
        "projects": projects,
        "filters": filters,
        "picked": request.query_params.getlist("model"),
        "capability_labels": CAPABILITY_LABELS,
        "source_labels": SOURCE_LABELS,
    }
    if project is None:
        return render(request, "catalog.html", {**context, "facets": None}, who=who)
    listings = await _listings(request, who, project)
    if isinstance(listings, Response):
        return listings
    context.update(
        facets=Facets.of(listings),
        shown=[listing for listing in listings if filters.matches(listing)],
        total=len(listings),
    )
    fragment = (
        request.headers.get("hx-request") == "true"
        and request.headers.get("hx-history-restore-request") != "true"
    )
    template = "catalog_cards.html" if fragment else "catalog.html"
    return render(request, template, context, who=who, headers={"vary": "HX-Request"})


@console_page
async def compare_page(request: Request, who: SignedIn) -> Response:
    asked = list(dict.fromkeys(request.query_params.getlist("model")))
    if not COMPARED_AT_LEAST <= len(asked) <= COMPARED_AT_MOST:
        raise InvalidParameter(
            f"Tick {COMPARED_AT_LEAST} to {COMPARED_AT_MOST} models or routes to compare; "
            f"{len(asked)} {'was' if len(asked) == 1 else 'were'} ticked.",
            param="model",
        )
    project, _ = _project(request, who)
    listings = await _listings(request, who, project)
    if isinstance(listings, Response):
        return listings
    by_name = {name: listing for listing in listings for name in (listing.id, *listing.aliases)}
    missing = next((name for name in asked if name not in by_name), None)
    if missing is not None:
        raise ModelNotFound(
            f"The model '{missing}' does not exist or you do not have access to it.",
            param="model",
        )
    compared = [by_name[name] for name in asked]
    return render(
        request,
        "compare.html",
        {"project": project or "", "compared": compared, "rows": comparison(compared)},
        who=who,
    )


ROUTES: list[BaseRoute] = [
    Route("/catalog", catalog_page, methods=["GET"]),
    Route("/catalog/compare", compare_page, methods=["GET"]),
]
