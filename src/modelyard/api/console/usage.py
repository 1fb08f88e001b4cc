"""The console's Usage page: usage and cost over time by model, route and arm, key or project,
as a chart (uPlot, `static/usage.js`), two tables and a CSV export.

Every number is what `GET /admin/usage` answers for the signed-in person and the same query
(`internal.call`): the rows grouped by day and group feed the chart, the rows grouped by group
alone the totals table, the rows grouped by day alone the per-day table, each shown as the API
gave it (nothing is re-added or re-averaged here, so a table equals the API cell by cell). The
CSV is the API's own (`format=csv`). Days are UTC days of the ledger's daily rollup, the finest
grain the API offers. Nothing is decided here about who may read what: a project the person may
not read is refused by the API, and that refusal is the page's answer.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from modelyard.api.console import internal
from modelyard.api.console.page import console_page
from modelyard.api.console.rendering import NOTHING, error_page, render
from modelyard.api.console.session import SignedIn
from modelyard.errors import InvalidParameter, PermissionDenied
from modelyard.policy.rbac import Action
from modelyard.protocol.admin import USAGE_FILTERS, USAGE_MEASURES


@dataclass(frozen=True)
class Grouping:
    label: str
    dimensions: tuple[str, ...]  # the /admin/usage `group_by` dimensions it stands for


GROUPINGS: dict[str, Grouping] = {
    "model": Grouping("Model", ("model",)),
    "route": Grouping("Route and arm", ("route", "arm")),
    "key": Grouping("Key", ("key_id",)),
    "project": Grouping("Project", ("project_id",)),
}
DIMENSION_LABELS = {
    "model": "Model",
    "route": "Route",
    "arm": "Arm",
    "key_id": "Key",
    "project_id": "Project",
}
# What an empty dimension means in the rollup (a request that named a model, not a route; a
# request made with the admin key or a sign-in token, not a project key).
EMPTY_DIMENSION = {"route": "(no route)", "arm": NOTHING, "key_id": "(admin key or token)"}
_MEASURE_LABELS = {
    "requests": "Requests",
    "prompt_tokens": "Prompt tokens",
    "completion_tokens": "Completion tokens",
    "cost_usd": "Cost (USD)",
    "errors": "Errors",
    "error_rate": "Error rate",
    "latency_ms_avg": "Mean latency (ms)",
}
# Every measure the API reports, in its order (a new one without a label fails at import).
MEASURES: tuple[tuple[str, str], ...] = tuple((m, _MEASURE_LABELS[m]) for m in USAGE_MEASURES)
# Measures that are 0 on a day without usage; the others (a rate, a mean) have no value then.
ADDITIVE = frozenset({"requests", "prompt_tokens", "completion_tokens", "cost_usd", "errors"})
DEFAULT_GROUPING, DEFAULT_MEASURE = "model", "requests"
DEFAULT_DAYS = 7
# The API takes any range; the page keeps a chart of days readable.
MAX_DAYS = 366
# The chart draws the largest groups; the totals table lists every one.
CHART_SERIES = 10
_FILE_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class UsageQuery:
    grouping: str
    since: date
    until: date
    project: str | None  # None: every project the person may read
    measure: str

    @property
    def dimensions(self) -> tuple[str, ...]:
        return GROUPINGS[self.grouping].dimensions

    def api_query(
        self,
        group_by: Sequence[str],
        *,
        csv: bool = False,
        only: Mapping[str, Sequence[str]] | None = None,
    ) -> dict[str, Any]:
        return {
            "group_by": ",".join(group_by),
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "project": self.project,
            "format": "csv" if csv else None,
            **{name: list(values) for name, values in (only or {}).items()},
        }

    def page_query(self) -> dict[str, str]:
        """This query as the page's own URL parameters (for the CSV links)."""
        return {
            "group_by": self.grouping,
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "project": self.project or "",
            "measure": self.measure,
        }


def form_values(params: Mapping[str, str], today: date) -> dict[str, str]:
    """What the form shows: the query's values as typed, the defaults where none was given."""
    return {
        "group_by": params.get("group_by") or DEFAULT_GROUPING,
        "measure": params.get("measure") or DEFAULT_MEASURE,
        "since": params.get("since") or (today - timedelta(days=DEFAULT_DAYS - 1)).isoformat(),
        "until": params.get("until") or today.isoformat(),
        "project": params.get("project") or "",
    }


def parse_query(form: Mapping[str, str]) -> UsageQuery:
    """The form's values as a query; InvalidParameter, naming the field, when one is wrong."""
    if form["group_by"] not in GROUPINGS:
        raise InvalidParameter(f"Group by one of: {', '.join(GROUPINGS)}.", param="group_by")
    if form["measure"] not in _MEASURE_LABELS:
        raise InvalidParameter(f"Chart one of: {', '.join(USAGE_MEASURES)}.", param="measure")
    since, until = _day(form["since"], "since", "From"), _day(form["until"], "until", "To")
    if since > until:
        raise InvalidParameter(
            f"The range is empty: From ({since}) is after To ({until}).", param="since"
        )
    if (until - since).days + 1 > MAX_DAYS:
        raise InvalidParameter(
            f"The range is {(until - since).days + 1} days; the page shows at most {MAX_DAYS}.",
            param="until",
        )
    return UsageQuery(form["group_by"], since, until, form["project"] or None, form["measure"])


def _day(value: str, param: str, label: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidParameter(f"{label} must be a day like 2026-11-27.", param=param) from None


def readable_projects(who: SignedIn) -> list[str]:
    return who.projects(Action.USAGE_READ)


def with_project_to_ask(query: UsageQuery, who: SignedIn) -> UsageQuery:
    """The query to send. Asked for every project by someone who may read usage in none, the API
    would answer an empty report; asked for their own project it answers what they may do: 403."""
    if query.project is not None or readable_projects(who):
        return query
    own = who.principal.project or next(iter(who.projects()), None)
    if own is None:
        raise PermissionDenied("You may not read usage in any project.")
    return replace(query, project=own)


# -- shaping the API's rows -------------------------------------------------------------------


def group_key(row: Mapping[str, Any], dimensions: Sequence[str]) -> tuple[str, ...]:
    return tuple(str(row[name]) for name in dimensions)


def dimension_text(name: str, value: str) -> str:
    return value or EMPTY_DIMENSION.get(name, NOTHING)


def group_label(key: Sequence[str], dimensions: Sequence[str]) -> str:
    parts = [dimension_text(name, value) for name, value in zip(dimensions, key, strict=True)]
    return " / ".join(parts)


def measure_text(measure: str, value: Any) -> str:
    """A measure as the tables show it: exact, with thousands separated."""
    if value is None:
        return NOTHING
    if measure == "cost_usd":
        return f"${Decimal(str(value)):,}"
    if measure == "error_rate":
        return f"{float(value) * 100:.2f}%"
    if measure == "latency_ms_avg":
        return f"{float(value):,.1f} ms"
    return f"{int(value):,}"


def table_rows(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> list[list[str]]:
    """Each API row as the table's cells: its columns (a day or a dimension), then its measures."""
    return [
        [dimension_text(name, str(row[name])) for name in columns]
        + [measure_text(measure, row[measure]) for measure in USAGE_MEASURES]
        for row in rows
    ]


def _size(row: Mapping[str, Any]) -> tuple[Decimal, int]:
    return Decimal(str(row["cost_usd"])), int(row["requests"])


def largest(totals: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The groups the chart draws: the largest by cost, then requests."""
    return sorted(totals, key=_size, reverse=True)[:CHART_SERIES]


def drawn_only(
    totals: Sequence[Mapping[str, Any]], dimensions: Sequence[str]
) -> dict[str, list[str]]:
    """What narrows the per-day report to the groups the chart draws (a report by day and key
    over months is tens of thousands of rows; the chart needs ten series of them)."""
    drawn = largest(totals)
    return {
        name: sorted({str(row[name]) for row in drawn})
        for name in dimensions
        if name in USAGE_FILTERS
    }


def chart_data(
    daily: Sequence[Mapping[str, Any]],
    totals: Sequence[Mapping[str, Any]],
    query: UsageQuery,
) -> dict[str, Any]:
    """What `usage.js` draws: one series per group (the largest by cost, then requests), every
    measure per day of the range (days as UTC midnights in Unix seconds) and over the whole
    range (its totals row, for the legend when no day is pointed at)."""
    dimensions = query.dimensions
    days = [query.since + timedelta(days=n) for n in range((query.until - query.since).days + 1)]
    index = {day.isoformat(): n for n, day in enumerate(days)}
    shown = largest(totals)
    drawn = {group_key(row, dimensions): n for n, row in enumerate(shown)}
    values: list[dict[str, list[float | int | None]]] = [
        {m: [0 if m in ADDITIVE else None] * len(days) for m in USAGE_MEASURES} for _ in drawn
    ]
    for row in daily:
        series = drawn.get(group_key(row, dimensions))
        day = index.get(str(row["day"]))
        if series is None or day is None:
            continue
        for measure in USAGE_MEASURES:
            values[series][measure][day] = _plotted(measure, row[measure])
    return {
        "measure": query.measure,
        "measures": [{"key": key, "label": label} for key, label in MEASURES],
        "days": [int(datetime.combine(day, time(), UTC).timestamp()) for day in days],
        "series": [
            {
                "label": group_label(key, dimensions),
                "values": values[n],
                "totals": {m: _plotted(m, shown[n][m]) for m in USAGE_MEASURES},
            }
            for key, n in drawn.items()
        ],
        "grouping": GROUPINGS[query.grouping].label,
        "groups": len(totals),
    }


def _plotted(measure: str, value: Any) -> float | int | None:
    # The API writes cost as exact decimal text; a chart needs a number.
    return float(value) if measure == "cost_usd" and value is not None else value


# -- pages ------------------------------------------------------------------------------------


async def _report(
    request: Request,
    who: SignedIn,
    query: UsageQuery,
    group_by: Sequence[str],
    only: Mapping[str, Sequence[str]] | None = None,
) -> internal.Answer:
    asked = query.api_query(group_by, only=only)
    return await internal.call(request, who, "GET", "/admin/usage", query=asked)


@console_page
async def usage_page(request: Request, who: SignedIn) -> Response:
    form = form_values(request.query_params, datetime.now(UTC).date())
    context: dict[str, Any] = {
        "form": form,
        "groupings": GROUPINGS,
        "measures": MEASURES,
        "measure_labels": _MEASURE_LABELS,
        "projects": readable_projects(who),
        "every_project": who.principal.is_owner() or len(readable_projects(who)) > 1,
        "error": None,
    }
    try:
        query = parse_query(form)
    except InvalidParameter as invalid:
        context["error"] = invalid.message
        return render(request, "usage.html", context, who=who, status=invalid.status)
    asked = with_project_to_ask(query, who)
    dimensions = list(query.dimensions)
    totals, days = await asyncio.gather(
        _report(request, who, asked, dimensions),
        _report(request, who, asked, ["day"]),
    )
    for answer in (totals, days):
        if not answer.ok:
            return error_page(request, who, answer.status, answer.error_message)
    total_rows, day_rows = totals.json()["data"], days.json()["data"]
    only = drawn_only(total_rows, dimensions)
    daily = await _report(request, who, asked, ["day", *dimensions], only)
    if not daily.ok:
        return error_page(request, who, daily.status, daily.error_message)
    context.update(
        query=query,
        dimension_labels=[DIMENSION_LABELS[name] for name in dimensions],
        totals=table_rows(total_rows, dimensions),
        days=table_rows(day_rows, ["day"]),
        chart=chart_data(daily.json()["data"], total_rows, query),
        csv_query=query.page_query(),
    )
    return render(request, "usage.html", context, who=who)


@console_page
async def usage_csv(request: Request, who: SignedIn) -> Response:
    """The API's own CSV of the same query: `rows=daily` by day and group, else group totals."""
    query = parse_query(form_values(request.query_params, datetime.now(UTC).date()))
    rows = request.query_params.get("rows", "totals")
    if rows not in ("totals", "daily"):
        raise InvalidParameter("rows is either totals or daily.", param="rows")
    daily = rows == "daily"
    group_by = ["day", *query.dimensions] if daily else list(query.dimensions)
    asked = with_project_to_ask(query, who)
    answer = await internal.call(
        request, who, "GET", "/admin/usage", query=asked.api_query(group_by, csv=True)
    )
    if not answer.ok:
        return error_page(request, who, answer.status, answer.error_message)
    readable = readable_projects(who)
    scope = query.project or (readable[0] if len(readable) == 1 else "all-projects")
    name = "-".join(
        ["usage", scope, query.grouping]
        + (["daily"] if daily else [])
        + [query.since.isoformat(), query.until.isoformat()]
    )
    return Response(
        answer.body,
        media_type="text/csv; charset=utf-8",
        headers={
            "content-disposition": f'attachment; filename="{_FILE_NAME_UNSAFE.sub("_", name)}.csv"'
        },
    )


ROUTES: list[BaseRoute] = [
    Route("/usage", usage_page, methods=["GET"]),
    Route("/usage.csv", usage_csv, methods=["GET"]),
]
