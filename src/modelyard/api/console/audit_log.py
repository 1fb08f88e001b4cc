"""The console's Audit log page: the hash-chained audit events, searched by project, actor and
action, newest first, paged by `seq`, and, for owners, the verdict on the chain.

Events are what `GET /admin/audit` answers the signed-in person (`internal.call`): an owner
reads every project's, an auditor the events of a project where they hold `audit.read`, anyone
else gets the API's 403, shown as the page's answer. The API filters (exactly) and pages; each
page reads one event more than it shows, which says whether there is another page:
- the newest page is `order=desc`, an older one `order=desc&before_seq=<the last seq shown>`;
- a newer one is `order=asc&after_seq=<the first seq shown>`, shown newest first.

Verification is `AuditLog.verify`, what `modelyard audit verify` runs (there is no /admin route
for it); it reads every project's events, so only an owner is shown it, computed off the event
loop when the page asks for it (`/console/audit/verify`, loaded by htmx after the page).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from modelyard.api.console import internal
from modelyard.api.console.page import console_page
from modelyard.api.console.rendering import error_page, render
from modelyard.api.console.session import SignedIn
from modelyard.errors import InvalidParameter, PermissionDenied
from modelyard.policy.rbac import Action
from modelyard.state import app_state

Event = dict[str, Any]

PAGE_SIZES = (25, 50, 100, 200)
DEFAULT_PAGE_SIZE = 50
_LONGEST_FILTER = 200  # the actor column's size
_MAX_SEQ = 2**63 - 1
RESULTS_ID = "audit-results"


@dataclass(frozen=True)
class AuditQuery:
    """The page's search and where it stands: at most one of `before_seq` and `after_seq`."""

    project: str | None  # None: every project (an owner's view)
    actor: str | None
    action: str | None
    size: int
    before_seq: int | None = None
    after_seq: int | None = None

    def link(self, **cursor: int) -> dict[str, str]:
        """The query of a page of the same search (`before_seq` or `after_seq`), for a URL."""
        return {
            "project": self.project or "",
            "actor": self.actor or "",
            "action": self.action or "",
            "limit": str(self.size),
            **{name: str(value) for name, value in cursor.items()},
        }

    def api_query(self) -> dict[str, Any]:
        """The `/admin/audit` query that reads this page and one event beyond it."""
        newer = self.after_seq is not None
        return {
            "project": self.project,
            "actor": self.actor,
            "action": self.action,
            "after_seq": self.after_seq,
            "before_seq": self.before_seq,
            "order": "asc" if newer else "desc",
            "limit": self.size + 1,
        }


@dataclass(frozen=True)
class AuditPage:
    events: list[Event]  # newest first
    older: int | None  # `before_seq` of the next older page; None when nothing is older
    newer: int | None  # `after_seq` of the next newer page; None when nothing is newer


def page_of(query: AuditQuery, read: list[Event]) -> AuditPage:
    """The page `query` shows, from what `api_query` read (in the order it was asked)."""
    more = len(read) > query.size
    shown = read[: query.size]
    if query.after_seq is not None:  # read oldest first, from just above `after_seq`
        bottom = shown[0]["seq"] if shown else query.after_seq + 1
        return AuditPage(
            shown[::-1],
            bottom if query.after_seq > 0 else None,  # the page came from an event there
            shown[-1]["seq"] if more else None,
        )
    older = shown[-1]["seq"] if more else None
    if query.before_seq is None:
        return AuditPage(shown, older, None)
    top = shown[0]["seq"] if shown else query.before_seq - 1
    return AuditPage(shown, older, top if top >= 0 else None)


def parse_query(params: Mapping[str, str], who: SignedIn) -> AuditQuery:
    """The page's query; InvalidParameter, naming the field, when one is wrong. Without a project
    an owner reads every project and anyone else their first where they may read the log."""
    project = params.get("project", "").strip() or None
    if project is None and not who.principal.is_owner():
        # Someone who may read no project's log asks for their own: the API's 403 names it.
        project = next(
            iter(who.projects(Action.AUDIT_READ) or who.projects()), who.principal.project
        )
    size = _seq(params.get("limit"), "limit")
    size = DEFAULT_PAGE_SIZE if size is None else size
    if size not in PAGE_SIZES:
        raise InvalidParameter(f"limit is one of {', '.join(map(str, PAGE_SIZES))}.", param="limit")
    before, after = (
        _seq(params.get("before_seq"), "before_seq"),
        _seq(params.get("after_seq"), "after_seq"),
    )
    if before is not None and after is not None:
        raise InvalidParameter("Give before_seq or after_seq, not both.", param="after_seq")
    return AuditQuery(
        project,
        _text(params.get("actor"), "actor"),
        _text(params.get("action"), "action"),
        size,
        before,
        after,
    )


def _seq(value: str | None, name: str) -> int | None:
    if value is None or value == "":
        return None
    if not (value.isascii() and value.isdigit()) or int(value) > _MAX_SEQ:
        raise InvalidParameter(f"{name} must be a whole number from 0 to {_MAX_SEQ}.", param=name)
    return int(value)


def _text(value: str | None, name: str) -> str | None:
    value = (value or "").strip()
    if len(value) > _LONGEST_FILTER:
        raise InvalidParameter(f"{name} is at most {_LONGEST_FILTER} characters long.", param=name)
    return value or None


@console_page
async def audit_page(request: Request, who: SignedIn) -> Response:
    query = parse_query(request.query_params, who)
    answer = await internal.call(request, who, "GET", "/admin/audit", query=query.api_query())
    if not answer.ok:
        return error_page(request, who, answer.status, answer.error_message)
    context = {
        "query": query,
        "page": page_of(query, answer.json()["data"]),
        "projects": who.projects(Action.AUDIT_READ),
        "every_project": who.principal.is_owner(),
        "page_sizes": PAGE_SIZES,
        "results_id": RESULTS_ID,
    }
    if request.headers.get("hx-target") == RESULTS_ID:
        return render(request, "audit_results.html", context, who=who)
    return render(request, "audit.html", context, who=who)


@console_page
async def verify_chain(request: Request, who: SignedIn) -> Response:
    if not who.principal.is_owner():
        raise PermissionDenied(
            "Verifying the audit chain is for owners: it reads every project's events."
        )
    report = await asyncio.to_thread(app_state(request).audit_log.verify)
    template = (
        "audit_verify.html"
        if request.headers.get("hx-request") == "true"
        else "audit_verify_page.html"
    )
    return render(request, template, {"report": report}, who=who)


ROUTES: list[BaseRoute] = [
    Route("/audit", audit_page, methods=["GET"]),
    Route("/audit/verify", verify_chain, methods=["GET"]),
]
