"""The console's Limits page: a project's budgets and rate limits, and its keys', with what has
been spent in each budget's current window, and the forms that set them.

Spend is the ledger's cost (`GET /admin/usage` over the budget's window: the UTC day, the UTC
month, or everything for `total`), so it equals the usage report for the same days; requests in
flight are not in it until they end. Everything goes through the /admin routes as the signed-in
person; a project's limits are the owners' to set (`PUT .../limits` is owner-only), a key's are
set by whoever manages the project's keys, and the server refuses the rest.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from modelyard.api.console import internal
from modelyard.api.console.forms import Outcome, form_text, form_whole_number
from modelyard.api.console.page import console_page
from modelyard.api.console.projects import key_state
from modelyard.api.console.rendering import error_page, render
from modelyard.api.console.session import SignedIn
from modelyard.errors import InvalidParameter
from modelyard.money import to_micros
from modelyard.policy.rbac import Action
from modelyard.policy.spending import Period, window_label, window_start

RATE_LIMITS = (
    ("requests_per_minute", "Requests per minute"),
    ("tokens_per_minute", "Tokens per minute"),
    ("max_concurrent", "Requests at once"),
)
# Spend by key id in each period's current window; the key "" is requests made without a key.
Spend = dict[Period, dict[str, int]]


@dataclass(frozen=True)
class BudgetLine:
    period: str
    window: str
    limit_micros: int
    spent_micros: int | None  # None: the person may not read usage

    @property
    def remaining_micros(self) -> int | None:
        return None if self.spent_micros is None else self.limit_micros - self.spent_micros

    @property
    def percent(self) -> float | None:
        if self.spent_micros is None or self.limit_micros <= 0:
            return None
        return round(100 * self.spent_micros / self.limit_micros, 1)

    @property
    def meter_value(self) -> int:
        # A meter's value is clamped to its range anyway; say so rather than rely on it.
        return min(max(self.spent_micros or 0, 0), self.limit_micros)


def budget_lines(limits: dict[str, Any], spent: dict[Period, int] | None) -> list[BudgetLine]:
    now = datetime.now(UTC)
    lines = []
    for name, limit in limits["budgets_usd"].items():
        period = Period(name)
        lines.append(
            BudgetLine(
                period=name,
                window=window_label(period, now),
                limit_micros=to_micros(limit),
                spent_micros=None if spent is None else spent.get(period, 0),
            )
        )
    return lines


async def spend(
    request: Request, who: SignedIn, project: str, periods: set[Period]
) -> Spend | None:
    """The ledger's cost by key in each period's current window (None: usage is not theirs)."""
    if not who.may(Action.USAGE_READ, project):
        return None
    now = datetime.now(UTC)
    found: Spend = {}
    for period in sorted(periods):
        query = {
            "group_by": "key_id",
            "project": project,
            "since": window_start(period, now).date().isoformat(),
            "until": now.date().isoformat(),
        }
        answer = await internal.call(request, who, "GET", "/admin/usage", query=query)
        if not answer.ok:
            return None
        found[period] = {row["key_id"]: int(row["cost_micros"]) for row in answer.json()["data"]}
    return found


def project_spend(found: Spend | None) -> dict[Period, int] | None:
    if found is None:
        return None
    return {period: sum(by_key.values()) for period, by_key in found.items()}


def key_spend(found: Spend | None, key_id: str) -> dict[Period, int] | None:
    if found is None:
        return None
    return {period: by_key.get(key_id, 0) for period, by_key in found.items()}


def limits_body(form: FormData) -> dict[str, Any]:
    """LimitsPut from the form: every limit left empty is none."""
    budgets = {}
    for period in Period:
        value = form_text(form, f"budget_{period}").removeprefix("$").replace(",", "")
        if value:
            budgets[str(period)] = value
    body: dict[str, Any] = {"budgets_usd": budgets}
    for name, label in RATE_LIMITS:
        number = form_whole_number(form, name, label)
        if number is not None:
            body[name] = number
    return body


def form_values(limits: dict[str, Any]) -> dict[str, str]:
    """A limits answer as the edit form's values (dollars without trailing zeros)."""
    values = {f"budget_{period}": "" for period in Period}
    for name, limit in limits["budgets_usd"].items():
        values[f"budget_{name}"] = limit.rstrip("0").rstrip(".")
    for name, _label in RATE_LIMITS:
        values[name] = "" if limits.get(name) is None else str(limits[name])
    return values


def submitted_values(form: FormData) -> dict[str, str]:
    names = [f"budget_{period}" for period in Period] + [name for name, _ in RATE_LIMITS]
    return {name: form_text(form, name) for name in names}


# -- the project page ---------------------------------------------------------------------------


async def key_limits(
    request: Request, who: SignedIn, project: str
) -> list[tuple[dict[str, Any], dict[str, Any]]] | None:
    """The usable keys the person may see, each with its limits (None: no key is theirs)."""
    if not (who.may(Action.KEYS_READ, project) or who.may(Action.KEYS_MANAGE_OWN, project)):
        return None
    listed = await internal.call(request, who, "GET", f"/admin/projects/{project}/keys")
    if not listed.ok:
        return None
    now = datetime.now(UTC)
    usable = [
        key
        for key in listed.json()["data"]
        if key_state(key, now) in ("active", "rotated, in grace")
    ]
    # One read per key (there is no batch route), all at once rather than one after another.
    answers = await asyncio.gather(
        *(
            internal.call(request, who, "GET", f"/admin/projects/{project}/keys/{key['id']}/limits")
            for key in usable
        )
    )
    return [(key, limits.json()) for key, limits in zip(usable, answers, strict=True) if limits.ok]


async def project_limits_page(
    request: Request,
    who: SignedIn,
    project: str,
    *,
    outcome: Outcome | None = None,
    submitted: dict[str, str] | None = None,
) -> Response:
    got = await internal.call(request, who, "GET", f"/admin/projects/{project}/limits")
    if not got.ok:
        return error_page(request, who, got.status, got.error_message)
    limits = got.json()
    keys = await key_limits(request, who, project)
    periods = {Period(p) for p in limits["budgets_usd"]} | {
        Period(p) for _key, key_limit in keys or [] for p in key_limit["budgets_usd"]
    }
    found = await spend(request, who, project, periods)
    manages_keys = who.may(Action.KEYS_MANAGE, project)
    key_rows = [
        {
            "key": key,
            "limits": key_limit,
            "budgets": budget_lines(key_limit, key_spend(found, key["id"])),
            "may_edit": manages_keys and key["id"] != who.principal.key_id,
        }
        for key, key_limit in keys or []
    ]
    outcome = outcome or Outcome()
    context = {
        "project": project,
        "choices": who.projects(Action.PROJECTS_READ),
        "limits": limits,
        "budgets": budget_lines(limits, project_spend(found)),
        "rate_limits": RATE_LIMITS,
        "periods": [str(p) for p in Period],
        "shows_spend": found is not None,
        # PUT /admin/projects/{p}/limits is the owners' (AdminService.set_limits).
        "may_edit": who.principal.is_owner(),
        "values": submitted or form_values(limits),
        "key_rows": key_rows,
        "keys_visible": keys is not None,
        **outcome.view(),
    }
    return render(request, "limits.html", context, who=who, status=outcome.status)


def default_project(who: SignedIn, choices: list[str]) -> str | None:
    if who.principal.project in choices:
        return who.principal.project
    return choices[0] if choices else None


@console_page
async def limits_page(request: Request, who: SignedIn) -> Response:
    choices = who.projects(Action.PROJECTS_READ)
    project = request.query_params.get("project") or default_project(who, choices)
    if project is None:
        return render(request, "limits_none.html", {}, who=who)
    saved = Outcome(notice="Limits saved.") if request.query_params.get("saved") else None
    return await project_limits_page(request, who, project, outcome=saved)


@console_page
async def set_project_limits(request: Request, who: SignedIn) -> Response:
    project = request.path_params["project"]
    form = await request.form()
    try:
        body = limits_body(form)
    except InvalidParameter as wrong:
        return await project_limits_page(
            request, who, project, outcome=Outcome.invalid(wrong), submitted=submitted_values(form)
        )
    answer = await internal.call(
        request, who, "PUT", f"/admin/projects/{project}/limits", json=body
    )
    if not answer.ok:
        return await project_limits_page(
            request, who, project, outcome=Outcome.refused(answer), submitted=submitted_values(form)
        )
    return RedirectResponse(f"/console/limits?project={quote(project)}&saved=1", status_code=303)


# -- one key's page -----------------------------------------------------------------------------


async def key_limits_page(
    request: Request,
    who: SignedIn,
    project: str,
    key_id: str,
    *,
    outcome: Outcome | None = None,
    submitted: dict[str, str] | None = None,
) -> Response:
    path = f"/admin/projects/{project}/keys/{key_id}"
    key = await internal.call(request, who, "GET", path)
    if not key.ok:
        return error_page(request, who, key.status, key.error_message)
    got = await internal.call(request, who, "GET", path + "/limits")
    if not got.ok:
        return error_page(request, who, got.status, got.error_message)
    limits = got.json()
    periods = {Period(p) for p in limits["budgets_usd"]}
    found = await spend(request, who, project, periods)
    outcome = outcome or Outcome()
    context = {
        "project": project,
        "key": key.json(),
        "limits": limits,
        "budgets": budget_lines(limits, key_spend(found, key_id)),
        "rate_limits": RATE_LIMITS,
        "periods": [str(p) for p in Period],
        "shows_spend": found is not None,
        "may_edit": who.may(Action.KEYS_MANAGE, project) and key_id != who.principal.key_id,
        "values": submitted or form_values(limits),
        **outcome.view(),
    }
    return render(request, "limits_key.html", context, who=who, status=outcome.status)


@console_page
async def show_key_limits(request: Request, who: SignedIn) -> Response:
    project, key_id = request.path_params["project"], request.path_params["key_id"]
    saved = Outcome(notice="Limits saved.") if request.query_params.get("saved") else None
    return await key_limits_page(request, who, project, key_id, outcome=saved)


@console_page
async def set_key_limits(request: Request, who: SignedIn) -> Response:
    project, key_id = request.path_params["project"], request.path_params["key_id"]
    form = await request.form()
    try:
        body = limits_body(form)
    except InvalidParameter as wrong:
        return await key_limits_page(
            request,
            who,
            project,
            key_id,
            outcome=Outcome.invalid(wrong),
            submitted=submitted_values(form),
        )
    answer = await internal.call(
        request, who, "PUT", f"/admin/projects/{project}/keys/{key_id}/limits", json=body
    )
    if not answer.ok:
        return await key_limits_page(
            request,
            who,
            project,
            key_id,
            outcome=Outcome.refused(answer),
            submitted=submitted_values(form),
        )
    target = f"/console/limits/{quote(project)}/keys/{quote(key_id)}?saved=1"
    return RedirectResponse(target, status_code=303)


ROUTES: list[BaseRoute] = [
    Route("/limits", limits_page, methods=["GET"]),
    Route("/limits/{project}", set_project_limits, methods=["POST"]),
    Route("/limits/{project}/keys/{key_id}", show_key_limits, methods=["GET"]),
    Route("/limits/{project}/keys/{key_id}", set_key_limits, methods=["POST"]),
]
