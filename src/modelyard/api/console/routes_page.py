"""The console's Routes page: every route in force with its strategy, candidates, weights and
each candidate deployment's health, and the form that changes a route's weights.

What is shown is what the API answers for the signed-in person: `GET /admin/routes` (anyone who
may read the catalog), health from `GET /admin/deployments` for an owner (breaker, requests in
flight, latency) and otherwise the readiness `GET /v1/models` gives. A weight change is
`PUT /admin/routes/{route}` with the route's current definition and the new weights; the form is
offered to whoever may manage the catalog, and the API refuses anyone else (its status is
passed on). A route changed since the page was loaded is not overwritten (409).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from modelyard.api.console import internal
from modelyard.api.console.page import console_page, wants_fragment
from modelyard.api.console.rendering import error_page, render
from modelyard.api.console.session import SignedIn
from modelyard.catalog.routes import Strategy
from modelyard.errors import Conflict, InvalidParameter, ModelyardError, NotFound
from modelyard.policy.rbac import Action

MAX_WEIGHT = 1_000_000
STRATEGY_NOTES: dict[str, str] = {
    Strategy.PRIORITY: "in the order listed: each later candidate is a fallback",
    Strategy.WEIGHTED: "split by weight, each caller kept on one candidate",
    Strategy.LEAST_LATENCY: "lowest moving average of first-token and per-token time first",
    Strategy.CHEAPEST: "lowest expected cost of the request first",
    Strategy.LEAST_BUSY: "fewest requests in flight first",
}


@dataclass(frozen=True)
class Health:
    """A deployment as the router sees it (breaker, load and latency for owners only)."""

    state: str  # ready, failing, unavailable
    region: str | None = None
    breaker: str | None = None
    in_flight: int | None = None
    ttft_ms: float | None = None
    per_token_ms: float | None = None
    samples: int | None = None
    last_error: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class CandidateView:
    deployment: str
    weight: int
    # The share of callers the weighted strategy sends here, in percent.
    share: float | None
    health: Health | None


@dataclass(frozen=True)
class RouteView:
    id: str
    strategy: str
    strategy_note: str
    description: str
    source: str
    languages: tuple[str, ...]
    regions: tuple[str, ...]
    capabilities: tuple[str, ...]
    max_attempts: int
    candidates: tuple[CandidateView, ...]
    # The definition as `PUT /admin/routes/{id}` takes it.
    definition: dict[str, Any]


def route_view(entry: Mapping[str, Any], health: Mapping[str, Health]) -> RouteView:
    candidates = entry["candidates"]
    total = sum(int(c["weight"]) for c in candidates)
    weighted = entry["strategy"] == Strategy.WEIGHTED
    strategy = str(entry["strategy"])
    return RouteView(
        id=entry["id"],
        strategy=strategy,
        strategy_note=STRATEGY_NOTES.get(strategy, ""),
        description=entry.get("description") or "",
        source=str(entry.get("source") or ""),
        languages=tuple(entry.get("languages") or ()),
        regions=tuple(entry.get("regions") or ()),
        capabilities=tuple(entry.get("capabilities") or ()),
        max_attempts=int(entry.get("max_attempts_effective") or len(candidates)),
        candidates=tuple(
            CandidateView(
                deployment=c["deployment"],
                weight=int(c["weight"]),
                share=100 * int(c["weight"]) / total if weighted and total else None,
                health=health.get(c["deployment"]),
            )
            for c in candidates
        ),
        definition={
            "strategy": strategy,
            "candidates": [
                {"deployment": c["deployment"], "weight": c["weight"]} for c in candidates
            ],
            "languages": entry.get("languages"),
            "max_attempts": entry.get("max_attempts"),
            "description": entry.get("description") or "",
        },
    )


def detailed_health(deployments: Sequence[Mapping[str, Any]]) -> dict[str, Health]:
    """Health per deployment from `GET /admin/deployments` (owners)."""
    found = {}
    for entry in deployments:
        latency = entry.get("latency") or {}
        last = entry.get("last_error")
        found[entry["id"]] = Health(
            state=entry["health"],
            region=entry.get("region"),
            breaker=(entry.get("breaker") or {}).get("state"),
            in_flight=entry.get("in_flight"),
            ttft_ms=latency.get("ttft_ms"),
            per_token_ms=latency.get("per_token_ms"),
            samples=latency.get("samples"),
            last_error=f"{last['code']} ({last['status']})" if last else None,
            reason=entry.get("reason"),
        )
    return found


def listed_health(models: Sequence[Mapping[str, Any]]) -> dict[str, Health]:
    """Readiness per deployment from `GET /v1/models` (what anyone who reads the catalog sees)."""
    return {
        deployment["id"]: Health(state=deployment["health"], region=deployment.get("region"))
        for entry in models
        for deployment in entry.get("deployments") or ()
        if "health" in deployment
    }


def new_weights(form: FormData, route: RouteView) -> list[int]:
    """The weights the form gives, one per candidate of `route`, in its order."""
    deployments = [str(value) for value in form.getlist("deployment")]
    if deployments != [c.deployment for c in route.candidates]:
        raise Conflict(
            f"The route '{route.id}' changed since this page was loaded; reload it and try again.",
            param="deployment",
        )
    weights = []
    for candidate, raw in zip(route.candidates, form.getlist("weight"), strict=False):
        text = str(raw).strip()
        # ASCII digits only: int() takes other scripts' digits, and refuses "²".
        if not (text.isascii() and text.isdigit() and len(text) <= 7) or int(text) > MAX_WEIGHT:
            raise InvalidParameter(
                f"The weight of '{candidate.deployment}' must be a whole number from 0 to "
                f"{MAX_WEIGHT:,}.",
                param="weight",
            )
        weights.append(int(text))
    if len(weights) != len(route.candidates):
        raise InvalidParameter("Give one weight per candidate.", param="weight")
    return weights


def _project(who: SignedIn) -> str | None:
    """The project the catalog is read in: the person's own, else the first they may read."""
    if who.principal.project is not None:
        return who.principal.project
    return next(iter(who.projects(Action.CATALOG_READ)), None)


async def _routes(request: Request, who: SignedIn) -> internal.Answer:
    return await internal.call(request, who, "GET", "/admin/routes", project=_project(who))


async def _health(request: Request, who: SignedIn) -> dict[str, Health]:
    if who.principal.is_owner():
        answer = await internal.call(request, who, "GET", "/admin/deployments")
        if answer.ok:
            return detailed_health(answer.json()["data"])
    answer = await internal.call(request, who, "GET", "/v1/models", project=_project(who))
    return listed_health(answer.json()["data"]) if answer.ok else {}


def _context(who: SignedIn, **more: Any) -> dict[str, Any]:
    return {
        "may_edit": who.may_anywhere(Action.CATALOG_MANAGE),
        "detailed": who.principal.is_owner(),
        "max_weight": MAX_WEIGHT,
        **more,
    }


@console_page
async def routes_page(request: Request, who: SignedIn) -> Response:
    listed = await _routes(request, who)
    if not listed.ok:
        return error_page(request, who, listed.status, listed.error_message)
    health = await _health(request, who)
    routes = [route_view(entry, health) for entry in listed.json()["data"]]
    return render(request, "routes.html", _context(who, routes=routes), who=who)


@console_page
async def change_weights(request: Request, who: SignedIn) -> Response:
    route_id = request.path_params["route"]
    form = await request.form()
    listed = await _routes(request, who)
    if not listed.ok:
        return error_page(request, who, listed.status, listed.error_message)
    current = {entry["id"]: entry for entry in listed.json()["data"]}
    if route_id not in current:
        raise NotFound(f"The route '{route_id}' does not exist.", param="route")
    health = await _health(request, who)
    route = route_view(current[route_id], health)
    try:
        weights = new_weights(form, route)
    except ModelyardError as bad:
        return _refused(request, who, route, bad.status, bad.message)
    candidates = [
        {"deployment": c.deployment, "weight": weight}
        for c, weight in zip(route.candidates, weights, strict=True)
    ]
    answer = await internal.call(
        request,
        who,
        "PUT",
        f"/admin/routes/{route_id}",
        json={**route.definition, "candidates": candidates},
        project=_project(who),
    )
    if not answer.ok:
        return _refused(request, who, route, answer.status, answer.error_message)
    if not wants_fragment(request):
        return RedirectResponse("/console/routes", status_code=303)
    changed = route_view({**current[route_id], **answer.json()}, health)
    context = _context(who, route=changed, notice=f"Saved the weights of '{route_id}'.")
    return render(request, "routes_card.html", context, who=who)


def _refused(
    request: Request, who: SignedIn, route: RouteView, status: int, message: str
) -> Response:
    """The refusal in the route's card (htmx swaps it in place), or as the error page."""
    if not wants_fragment(request):
        return error_page(request, who, status, message)
    context = _context(who, route=route, error=message)
    return render(request, "routes_card.html", context, who=who, status=status)


ROUTES: list[BaseRoute] = [
    Route("/routes", routes_page, methods=["GET"]),
    Route("/routes/{route}/weights", change_weights, methods=["POST"]),
]
