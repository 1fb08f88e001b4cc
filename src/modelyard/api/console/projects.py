"""The console's Projects pages: the projects a person may read, and one project's settings
(description, allowed models, regions and networks), members and API keys, with the forms that
change them.

Everything is done through the /admin routes as the signed-in person (`internal.call`). What a
page offers mirrors what the server would allow (`who.may`, and the grant rules of
`admin/rules.py` and `admin/keys.py`) for display only; the server decides, and its refusals are
shown with their status. A new or rotated key is shown once, in the answer to the POST that made
it (htmx swaps that section into the page), never in a URL or a redirect: reloading the page
does not show it again. Forms post to the section they change and get that section back (the
whole page when htmx is not there).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import quote

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from modelyard.api.console import internal
from modelyard.api.console.forms import Outcome, form_list, form_text, form_whole_number
from modelyard.api.console.page import console_page, wants_fragment
from modelyard.api.console.rendering import error_page, render
from modelyard.api.console.session import SignedIn
from modelyard.errors import InvalidParameter
from modelyard.policy.rbac import Action, Role, role_within

# The roles a project grants (the owner role is held on every project, never granted on one).
PROJECT_ROLES = (Role.ADMIN, Role.DEVELOPER, Role.VIEWER, Role.AUDITOR)
GRACE_CHOICES = ((0, "none"), (3600, "1 hour"), (86_400, "1 day"), (7 * 86_400, "7 days"))
DEFAULT_GRACE_S = 86_400
# How far back "last used" looks in the usage rollup.
LAST_USE_DAYS = 90
SECTION_TEMPLATES = {
    "settings": "project_settings.html",
    "members": "members_section.html",
    "keys": "keys_section.html",
}


def key_body(form: FormData) -> dict[str, Any]:
    """The new key a create form asks for (KeyCreate's fields)."""
    body: dict[str, Any] = {"name": form_text(form, "name"), "role": form_text(form, "role")}
    if not body["role"]:
        body["role"] = Role.DEVELOPER.value
    models = form_list(form, "models")
    if models is not None:
        body["models"] = models
    expires = form_text(form, "expires_on")
    if expires:
        try:
            day = date.fromisoformat(expires)
        except ValueError:
            raise InvalidParameter(
                "The expiry date must be a day like 2026-12-31.", param="expires_on"
            ) from None
        # The key works through the whole of the day chosen (UTC).
        body["expires_at"] = datetime.combine(day, time(23, 59, 59), UTC).isoformat()
    return body


def settings_changes(current: dict[str, Any], form: FormData) -> dict[str, Any]:
    """Only what the form changes: a project admin who leaves the models as they are must not
    send them back (sending 'any model' would be widening, which only an owner may)."""
    changes: dict[str, Any] = {}
    description = form_text(form, "description")
    if description != (current.get("description") or ""):
        changes["description"] = description
    for name in ("allowed_models", "allowed_regions", "allowed_cidrs"):
        wanted, was = form_list(form, name), current.get(name)
        if (None if wanted is None else set(wanted)) != (None if was is None else set(was)):
            changes[name] = wanted
    return changes


# -- what the person may do (for display; the server decides) ------------------------------------


def grantable_roles(who: SignedIn, project: str) -> list[str]:
    """The roles this person could hand out in the project (admin/rules.py `check_grantable`)."""
    held = who.principal.role_in(project)
    if held is None:
        return []
    return [role.value for role in PROJECT_ROLES if role_within(role, held)]


def key_state(key: dict[str, Any], now: datetime) -> str:
    if key["revoked_at"] is not None:
        return "revoked"
    expires = key["expires_at"]
    if expires is not None and datetime.fromisoformat(expires) <= now:
        return "rotated" if key["replaced_by"] else "expired"
    return "rotated, in grace" if key["replaced_by"] else "active"


def may_manage_key(who: SignedIn, project: str, key: dict[str, Any]) -> bool:
    """admin/keys.py `_managed_key`: every key with keys.manage, else the person's own."""
    return who.may(Action.KEYS_MANAGE, project) or (
        who.may(Action.KEYS_MANAGE_OWN, project) and key["subject"] == who.principal.subject
    )


# -- sections -----------------------------------------------------------------------------------


def settings_view(
    who: SignedIn, project: dict[str, Any], outcome: Outcome | None
) -> dict[str, Any]:
    return {
        "project": project,
        "may_manage": who.may(Action.PROJECTS_MANAGE, project["id"]),
        "owner": who.principal.is_owner(),
        **(outcome or Outcome()).view(),
    }


async def members_view(
    request: Request, who: SignedIn, project: str, outcome: Outcome | None
) -> dict[str, Any] | None:
    if not who.may(Action.MEMBERS_READ, project):
        return None
    outcome = outcome or Outcome()
    answer = await internal.call(request, who, "GET", f"/admin/projects/{project}/members")
    if not answer.ok and outcome.error is None:
        outcome = Outcome.refused(answer)
    manage = who.may(Action.MEMBERS_MANAGE, project)
    roles = grantable_roles(who, project) if manage else []
    rows = [
        {**member, "manageable": manage and member["role"] in roles}
        for member in (answer.json()["data"] if answer.ok else [])
    ]
    return {"rows": rows, "may_manage": manage, "roles": roles, **outcome.view()}


async def keys_view(
    request: Request, who: SignedIn, project: str, outcome: Outcome | None
) -> dict[str, Any] | None:
    if not (who.may(Action.KEYS_READ, project) or who.may(Action.KEYS_MANAGE_OWN, project)):
        return None
    outcome = outcome or Outcome()
    answer = await internal.call(request, who, "GET", f"/admin/projects/{project}/keys")
    if not answer.ok and outcome.error is None:
        outcome = Outcome.refused(answer)
    last_used = await last_use_days(request, who, project)
    now = datetime.now(UTC)
    roles = grantable_roles(who, project)
    rows = []
    for key in reversed(answer.json()["data"] if answer.ok else []):
        state = key_state(key, now)
        manage = may_manage_key(who, project, key) and state in ("active", "rotated, in grace")
        rows.append(
            {
                **key,
                "state": state,
                "last_used": last_used.get(key["id"]),
                "may_revoke": manage,
                "may_rotate": manage and key["replaced_by"] is None and key["role"] in roles,
                "may_limit": who.may(Action.KEYS_MANAGE, project),
            }
        )
    return {
        "rows": rows,
        "may_create": who.may(Action.KEYS_MANAGE, project)
        or who.may(Action.KEYS_MANAGE_OWN, project),
        "everyone": who.may(Action.KEYS_READ, project),
        "roles": roles,
        "grace_choices": GRACE_CHOICES,
        "default_grace": DEFAULT_GRACE_S,
        "today": now.date().isoformat(),
        "shows_last_use": who.may(Action.USAGE_READ, project),
        **outcome.view(),
    }


async def last_use_days(request: Request, who: SignedIn, project: str) -> dict[str, str]:
    """The last day (UTC) each key was used, from the usage rollup, for whoever reads usage."""
    if not who.may(Action.USAGE_READ, project):
        return {}
    today = datetime.now(UTC).date()
    query = {
        "group_by": "key_id,day",
        "project": project,
        "since": (today - timedelta(days=LAST_USE_DAYS)).isoformat(),
        "until": today.isoformat(),
    }
    answer = await internal.call(request, who, "GET", "/admin/usage", query=query)
    if not answer.ok:
        return {}
    last: dict[str, str] = {}
    for row in answer.json()["data"]:
        if row["key_id"] and row["day"] > last.get(row["key_id"], ""):
            last[row["key_id"]] = row["day"]
    return last


# -- pages --------------------------------------------------------------------------------------


async def projects_list(
    request: Request,
    who: SignedIn,
    *,
    outcome: Outcome | None = None,
    submitted: dict[str, str] | None = None,
) -> Response:
    answer = await internal.call(request, who, "GET", "/admin/projects")
    if not answer.ok:
        return error_page(request, who, answer.status, answer.error_message)
    rows = [
        {**project, "role": role.value if (role := who.principal.role_in(project["id"])) else ""}
        for project in answer.json()["data"]
    ]
    outcome = outcome or Outcome()
    context = {
        "rows": rows,
        "may_create": who.principal.is_owner(),
        "submitted": submitted or {"id": "", "description": ""},
        **outcome.view(),
    }
    return render(request, "projects.html", context, who=who, status=outcome.status)


@console_page
async def projects_page(request: Request, who: SignedIn) -> Response:
    return await projects_list(request, who)


@console_page
async def create_project(request: Request, who: SignedIn) -> Response:
    form = await request.form()
    body = {"id": form_text(form, "id"), "description": form_text(form, "description")}
    answer = await internal.call(request, who, "POST", "/admin/projects", json=body)
    if not answer.ok:
        return await projects_list(request, who, outcome=Outcome.refused(answer), submitted=body)
    return RedirectResponse(f"/console/projects/{quote(answer.json()['id'])}", status_code=303)


async def project_page(
    request: Request, who: SignedIn, project: str, outcomes: dict[str, Outcome] | None = None
) -> Response:
    outcomes = outcomes or {}
    got = await internal.call(request, who, "GET", f"/admin/projects/{project}")
    if not got.ok:
        return error_page(request, who, got.status, got.error_message)
    context = {
        "pid": project,
        "settings": settings_view(who, got.json(), outcomes.get("settings")),
        "members": await members_view(request, who, project, outcomes.get("members")),
        "keys": await keys_view(request, who, project, outcomes.get("keys")),
        "role": who.principal.role_in(project),
    }
    # A refusal for a section this person cannot see (a forged post) is shown above them all.
    unseen = [outcome for name, outcome in outcomes.items() if context[name] is None]
    context["page"] = (unseen[0] if unseen else Outcome()).view()
    status = max((o.status for o in outcomes.values()), default=200)
    return render(request, "project.html", context, who=who, status=status)


async def answer_section(
    request: Request, who: SignedIn, project: str, section: str, outcome: Outcome
) -> Response:
    """The changed section for htmx to swap in, or the whole page for a plain form post."""
    if not wants_fragment(request):
        return await project_page(request, who, project, {section: outcome})
    view: dict[str, Any] | None
    if section == "settings":
        got = await internal.call(request, who, "GET", f"/admin/projects/{project}")
        if not got.ok:
            return error_page(request, who, got.status, got.error_message)
        view = settings_view(who, got.json(), outcome)
    elif section == "members":
        view = await members_view(request, who, project, outcome)
    else:
        view = await keys_view(request, who, project, outcome)
    if view is None:  # the person lost the right to read the section meanwhile
        return error_page(request, who, outcome.status, outcome.error or "Nothing to show.")
    context = {"pid": project, section: view}
    return render(request, SECTION_TEMPLATES[section], context, who=who, status=outcome.status)


@console_page
async def show_project(request: Request, who: SignedIn) -> Response:
    return await project_page(request, who, request.path_params["project"])


@console_page
async def update_settings(request: Request, who: SignedIn) -> Response:
    project = request.path_params["project"]
    form = await request.form()
    got = await internal.call(request, who, "GET", f"/admin/projects/{project}")
    if not got.ok:
        return await answer_section(request, who, project, "settings", Outcome.refused(got))
    changes = settings_changes(got.json(), form)
    if not changes:
        return await answer_section(
            request, who, project, "settings", Outcome(notice="Nothing changed.")
        )
    answer = await internal.call(request, who, "PATCH", f"/admin/projects/{project}", json=changes)
    saved = "Saved: " + ", ".join(name.replace("_", " ") for name in sorted(changes)) + "."
    return await answer_section(request, who, project, "settings", Outcome.of(answer, saved))


def member_path(project: str, subject: str) -> str:
    # Quoted so a subject with '/' or '?' reaches the API's own check (and its 400) intact.
    return f"/admin/projects/{project}/members/{quote(subject, safe='@:+')}"


async def grant(request: Request, who: SignedIn, project: str, subject: str, role: str) -> Response:
    """Bind `subject` to `role` in `project` (new or changed), and show the members again."""
    answer = await internal.call(
        request, who, "PUT", member_path(project, subject), json={"role": role}
    )
    notice = f"{subject} now holds the role {role}."
    return await answer_section(request, who, project, "members", Outcome.of(answer, notice))


@console_page
async def add_member(request: Request, who: SignedIn) -> Response:
    form = await request.form()
    subject, role = form_text(form, "subject"), form_text(form, "role")
    return await grant(request, who, request.path_params["project"], subject, role)


@console_page
async def change_member(request: Request, who: SignedIn) -> Response:
    project, subject = request.path_params["project"], request.path_params["subject"]
    return await grant(request, who, project, subject, form_text(await request.form(), "role"))


@console_page
async def remove_member(request: Request, who: SignedIn) -> Response:
    project, subject = request.path_params["project"], request.path_params["subject"]
    answer = await internal.call(request, who, "DELETE", member_path(project, subject))
    notice = f"{subject} is no longer a member of {project}."
    return await answer_section(request, who, project, "members", Outcome.of(answer, notice))


@console_page
async def create_key(request: Request, who: SignedIn) -> Response:
    project = request.path_params["project"]
    try:
        body = key_body(await request.form())
    except InvalidParameter as wrong:
        return await answer_section(request, who, project, "keys", Outcome.invalid(wrong))
    answer = await internal.call(request, who, "POST", f"/admin/projects/{project}/keys", json=body)
    if not answer.ok:
        return await answer_section(request, who, project, "keys", Outcome.refused(answer))
    made = answer.json()
    outcome = Outcome(
        notice=f"Created the key '{made['name']}' ({made['id']}).",
        new_key={"key": made["key"], "title": f"The new key '{made['name']}'"},
    )
    return await answer_section(request, who, project, "keys", outcome)


@console_page
async def revoke_key(request: Request, who: SignedIn) -> Response:
    project, key_id = request.path_params["project"], request.path_params["key_id"]
    answer = await internal.call(
        request, who, "POST", f"/admin/projects/{project}/keys/{key_id}/revoke"
    )
    notice = f"Revoked the key {key_id}: it no longer works."
    return await answer_section(request, who, project, "keys", Outcome.of(answer, notice))


@console_page
async def rotate_key(request: Request, who: SignedIn) -> Response:
    project, key_id = request.path_params["project"], request.path_params["key_id"]
    try:
        grace = form_whole_number(await request.form(), "grace_seconds", "The grace period")
    except InvalidParameter as wrong:
        return await answer_section(request, who, project, "keys", Outcome.invalid(wrong))
    answer = await internal.call(
        request,
        who,
        "POST",
        f"/admin/projects/{project}/keys/{key_id}/rotate",
        json={"grace_seconds": DEFAULT_GRACE_S if grace is None else grace},
    )
    if not answer.ok:
        return await answer_section(request, who, project, "keys", Outcome.refused(answer))
    made = answer.json()
    until = datetime.fromisoformat(made["replaces"]["expires_at"]).strftime("%Y-%m-%d %H:%M UTC")
    outcome = Outcome(
        notice=f"Rotated the key {key_id}: the old key works until {until}.",
        new_key={"key": made["key"], "title": f"The replacement of '{made['name']}'"},
    )
    return await answer_section(request, who, project, "keys", outcome)


ROUTES: list[BaseRoute] = [
    Route("/projects", projects_page, methods=["GET"]),
    Route("/projects", create_project, methods=["POST"]),
    Route("/projects/{project}", show_project, methods=["GET"]),
    Route("/projects/{project}/settings", update_settings, methods=["POST"]),
    Route("/projects/{project}/members", add_member, methods=["POST"]),
    Route("/projects/{project}/members/{subject}", change_member, methods=["POST"]),
    Route("/projects/{project}/members/{subject}/remove", remove_member, methods=["POST"]),
    Route("/projects/{project}/keys", create_key, methods=["POST"]),
    Route("/projects/{project}/keys/{key_id}/revoke", revoke_key, methods=["POST"]),
    Route("/projects/{project}/keys/{key_id}/rotate", rotate_key, methods=["POST"]),
]
