"""The /admin routes: each reads its input, asks the AdminService, and renders JSON.

Mutations run through the idempotency store, so any of them may carry `Idempotency-Key`. The
route table below is also the source of the OpenAPI description (`openapi.py`).
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
from datetime import UTC, date, datetime, timedelta

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelyard.api.admin.evals import EVALS_ROUTES
from modelyard.api.admin.handling import AdminRoute, Handler, mutate, read
from modelyard.api.admin.routing import ROUTING_ROUTES
from modelyard.api.authentication import caller
from modelyard.api.parsing import read_model
from modelyard.audit.log import AuditQuery
from modelyard.errors import InvalidParameter, NotFound, PermissionDenied
from modelyard.protocol.admin import (
    FEEDBACK_MEASURES,
    MAX_USAGE_FILTER_VALUES,
    SUBJECT_PATTERN,
    USAGE_DIMENSIONS,
    USAGE_FILTERS,
    USAGE_MEASURES,
    KeyCreate,
    KeyRotate,
    LimitsPut,
    MemberPut,
    ProjectCreate,
    ProjectUpdate,
)
from modelyard.state import app_state


async def whoami(request: Request) -> Response:
    principal = await caller(request)
    return Response(
        orjson.dumps(
            {
                "subject": principal.subject,
                "kind": principal.kind,
                "project": principal.project,
                "roles": {project: role.value for project, role in principal.grants.items()},
                "key_id": principal.key_id,
                "models": sorted(principal.models) if principal.models is not None else None,
            }
        ),
        media_type="application/json",
    )


async def list_projects(request: Request) -> Response:
    principal = await caller(request)
    return await read(lambda: app_state(request).admin.list_projects(principal))


async def create_project(request: Request) -> Response:
    principal = await caller(request)
    body = await read_model(request, ProjectCreate, frozenset())
    return await mutate(
        request, lambda: app_state(request).admin.create_project(principal, body), 201
    )


async def get_project(request: Request) -> Response:
    principal = await caller(request)
    project = request.path_params["project"]
    return await read(lambda: app_state(request).admin.get_project(principal, project))


async def update_project(request: Request) -> Response:
    principal = await caller(request)
    body = await read_model(request, ProjectUpdate, frozenset())
    project = request.path_params["project"]
    return await mutate(
        request, lambda: app_state(request).admin.update_project(principal, project, body)
    )


async def list_members(request: Request) -> Response:
    principal = await caller(request)
    project = request.path_params["project"]
    return await read(lambda: app_state(request).admin.list_members(principal, project))


async def put_member(request: Request) -> Response:
    principal = await caller(request)
    body = await read_model(request, MemberPut, frozenset())
    project, subject = request.path_params["project"], _subject(request)
    return await mutate(
        request, lambda: app_state(request).admin.put_member(principal, project, subject, body)
    )


async def remove_member(request: Request) -> Response:
    principal = await caller(request)
    project, subject = request.path_params["project"], _subject(request)
    return await mutate(
        request, lambda: app_state(request).admin.remove_member(principal, project, subject)
    )


async def list_keys(request: Request) -> Response:
    principal = await caller(request)
    project = request.path_params["project"]
    return await read(lambda: app_state(request).admin.keys.list_keys(principal, project))


async def create_key(request: Request) -> Response:
    principal = await caller(request)
    body = await read_model(request, KeyCreate, frozenset())
    project = request.path_params["project"]
    return await mutate(
        request, lambda: app_state(request).admin.keys.create_key(principal, project, body), 201
    )


async def get_key(request: Request) -> Response:
    principal = await caller(request)
    project, key_id = request.path_params["project"], request.path_params["key_id"]
    return await read(lambda: app_state(request).admin.keys.get_key(principal, project, key_id))


async def revoke_key(request: Request) -> Response:
    principal = await caller(request)
    project, key_id = request.path_params["project"], request.path_params["key_id"]
    return await mutate(
        request, lambda: app_state(request).admin.keys.revoke_key(principal, project, key_id)
    )


async def rotate_key(request: Request) -> Response:
    principal = await caller(request)
    raw = await request.body()
    body = await read_model(request, KeyRotate, frozenset()) if raw.strip() else KeyRotate()
    project, key_id = request.path_params["project"], request.path_params["key_id"]
    return await mutate(
        request, lambda: app_state(request).admin.keys.rotate_key(principal, project, key_id, body)
    )


async def read_audit(request: Request) -> Response:
    principal = await caller(request)
    query = request.query_params
    limit = _int_query(query.get("limit"), "limit", 100)
    if not 1 <= limit <= 1000:
        raise InvalidParameter("limit must be between 1 and 1000.", param="limit")
    order = query.get("order", "asc")
    if order not in ("asc", "desc"):
        raise InvalidParameter("order must be 'asc' (oldest first) or 'desc'.", param="order")
    before = query.get("before_seq")
    asked = AuditQuery(
        project_id=query.get("project"),
        actor=query.get("actor"),
        action=query.get("action"),
        after_seq=_int_query(query.get("after_seq"), "after_seq", 0),
        before_seq=_int_query(before, "before_seq", 0) if before is not None else None,
        limit=limit,
        newest_first=order == "desc",
    )
    return await read(lambda: app_state(request).admin.read_audit(principal, asked))


async def get_limits(request: Request) -> Response:
    principal = await caller(request)
    project, key_id = request.path_params["project"], request.path_params.get("key_id")
    return await read(lambda: app_state(request).admin.get_limits(principal, project, key_id))


async def set_limits(request: Request) -> Response:
    principal = await caller(request)
    body = await read_model(request, LimitsPut, frozenset())
    project, key_id = request.path_params["project"], request.path_params.get("key_id")
    return await mutate(
        request, lambda: app_state(request).admin.set_limits(principal, project, key_id, body)
    )


async def usage_report(request: Request) -> Response:
    principal = await caller(request)
    query = request.query_params
    group_by = [g for g in query.get("group_by", "day,project_id").split(",") if g]
    unknown = [g for g in group_by if g not in USAGE_DIMENSIONS]
    if unknown or not group_by:
        raise InvalidParameter(
            f"group_by takes a comma-separated list of: {', '.join(USAGE_DIMENSIONS)}.",
            param="group_by",
        )
    today = datetime.now(UTC).date()
    since = _day_query(query.get("since"), "since", today - timedelta(days=30))
    until = _day_query(query.get("until"), "until", today)
    project = query.get("project")
    only = {name: query.getlist(name) for name in USAGE_FILTERS if name in query}
    for name, values in only.items():
        if len(values) > MAX_USAGE_FILTER_VALUES:
            raise InvalidParameter(
                f"{name} is given {len(values)} times; at most {MAX_USAGE_FILTER_VALUES}.",
                param=name,
            )
    report = await asyncio.to_thread(
        app_state(request).admin.usage_report, principal, group_by, since, until, project, only
    )
    if query.get("format", "json") == "csv":
        return Response(
            usage_csv(group_by, report["data"]),
            media_type="text/csv",
            headers={"content-disposition": 'attachment; filename="usage.csv"'},
        )
    return Response(orjson.dumps(report), media_type="application/json")


def usage_csv(group_by: list[str], rows: list[dict[str, object]]) -> str:
    out = io.StringIO()
    columns = [*group_by, *USAGE_MEASURES]
    if "deployment" in group_by:
        columns += FEEDBACK_MEASURES
    writer = csv.DictWriter(out, columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def _day_query(value: str | None, name: str, default: date) -> str:
    if value is None:
        return default.isoformat()
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise InvalidParameter(f"{name} must be a day like 2026-11-27.", param=name) from None


# Query integers fit a signed 64-bit database column.
MAX_QUERY_INT = 2**63 - 1
SUBJECT = re.compile(SUBJECT_PATTERN)


def _int_query(value: str | None, name: str, default: int) -> int:
    if value is None:
        return default
    # isdigit() is true for '²' and other digits that int() refuses: ASCII only.
    if not (value.isascii() and value.isdigit()) or int(value) > MAX_QUERY_INT:
        raise InvalidParameter(
            f"{name} must be a whole number from 0 to {MAX_QUERY_INT}.", param=name
        )
    return int(value)


def _subject(request: Request) -> str:
    subject: str = request.path_params["subject"]
    if SUBJECT.fullmatch(subject) is None:
        raise InvalidParameter(
            "The member subject must be 1 to 200 letters, digits and @._:+- (starting with a "
            "letter or digit).",
            param="subject",
        )
    return subject


P = "/admin/projects/{project}"
ADMIN_ROUTES = (
    AdminRoute("GET", "/admin/whoami", whoami, "The caller's identity and roles", "any"),
    AdminRoute(
        "GET", "/admin/projects", list_projects, "Projects you hold a role on", "projects.read"
    ),
    AdminRoute(
        "POST",
        "/admin/projects",
        create_project,
        "Create a project",
        "projects.create",
        ProjectCreate,
        201,
    ),
    AdminRoute("GET", P, get_project, "One project", "projects.read"),
    AdminRoute(
        "PATCH",
        P,
        update_project,
        "Change a project's models, networks or content logging",
        "projects.manage",
        ProjectUpdate,
    ),
    AdminRoute("GET", P + "/members", list_members, "A project's role bindings", "members.read"),
    AdminRoute(
        "PUT",
        P + "/members/{subject}",
        put_member,
        "Grant a role on the project",
        "members.manage",
        MemberPut,
    ),
    AdminRoute(
        "DELETE", P + "/members/{subject}", remove_member, "Remove a role binding", "members.manage"
    ),
    AdminRoute(
        "GET",
        P + "/keys",
        list_keys,
        "API keys (all with keys.read, else your own)",
        "keys.read | keys.manage_own",
    ),
    AdminRoute(
        "POST",
        P + "/keys",
        create_key,
        "Mint an API key (shown once)",
        "keys.manage | keys.manage_own",
        KeyCreate,
        201,
    ),
    AdminRoute(
        "GET",
        P + "/keys/{key_id}",
        get_key,
        "One API key's metadata",
        "keys.read | keys.manage_own",
    ),
    AdminRoute(
        "POST",
        P + "/keys/{key_id}/revoke",
        revoke_key,
        "Revoke a key, effective at once",
        "keys.manage | keys.manage_own",
    ),
    AdminRoute(
        "POST",
        P + "/keys/{key_id}/rotate",
        rotate_key,
        "Replace a key; the old one works for a grace period",
        "keys.manage | keys.manage_own",
        KeyRotate,
    ),
    AdminRoute(
        "GET", P + "/limits", get_limits, "A project's budgets and rate limits", "projects.read"
    ),
    AdminRoute(
        "PUT",
        P + "/limits",
        set_limits,
        "Set a project's budgets and rate limits (owner)",
        "owner",
        LimitsPut,
    ),
    AdminRoute(
        "GET",
        P + "/keys/{key_id}/limits",
        get_limits,
        "A key's budgets and rate limits",
        "keys.read | keys.manage_own",
    ),
    AdminRoute(
        "PUT",
        P + "/keys/{key_id}/limits",
        set_limits,
        "Set a key's budgets and rate limits",
        "keys.manage",
        LimitsPut,
    ),
    AdminRoute(
        "GET",
        "/admin/usage",
        usage_report,
        "Usage and cost by project, key, model, deployment, day (format=csv for CSV)",
        "usage.read",
    ),
    AdminRoute("GET", "/admin/audit", read_audit, "Audit events (hash-chained)", "audit.read"),
    *ROUTING_ROUTES,
    *EVALS_ROUTES,
)


def admin_routes() -> list[Route]:
    by_path: dict[str, dict[str, Handler]] = {}
    for route in ADMIN_ROUTES:
        by_path.setdefault(route.path, {})[route.method] = route.handler
    return [
        Route(path, _dispatch(handlers), methods=list(handlers))
        for path, handlers in by_path.items()
    ]


def _dispatch(handlers: dict[str, Handler]) -> Handler:
    async def endpoint(request: Request) -> Response:
        # Starlette answers HEAD on GET routes; it gets the GET handler.
        handler = handlers.get(request.method) or handlers["GET"]
        try:
            return await handler(request)
        except (NotFound, PermissionDenied):
            # The project, member or key may have been created through another replica a
            # moment ago; a refused request changed nothing, so it can run once more.
            if not await app_state(request).directory_sync.catch_up():
                raise
            return await handler(request)

    return endpoint
