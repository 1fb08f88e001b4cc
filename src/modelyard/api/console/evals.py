"""The console's Evaluations pages: the runs the signed-in person may read, and one run's
leaderboard, comparisons, recommendation per tag and quality-vs-cost plot.

Runs and results come from `GET /admin/evals`, `GET /admin/evals/{run}` and its `/results`, as
the API answers this person. Every number is computed by the evaluation's own code, exactly as
`modelyard eval` reports it: `stats.summarize` and `stats.compare` on the results,
`report.ordered` for the order and `report`'s formatting, `recommend.recommend` for the routes
a tag could use, `plots.points_of` and `plots.pareto_front` for the plot (drawn in the browser
by uPlot, `static/evals.js`).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from modelyard.api.console import internal
from modelyard.api.console.page import console_page
from modelyard.api.console.rendering import error_page, render
from modelyard.api.console.session import SignedIn
from modelyard.errors import InvalidParameter
from modelyard.evals.outcome import CaseResult
from modelyard.evals.recommend import Recommendation, recommend
from modelyard.evals.report import (
    cost_per_1k_cases,
    describe_comparison,
    milliseconds,
    ordered,
    quality_text,
    tag_label,
)
from modelyard.evals.stats import ALL_TAGS, Comparison, Summary, compare, summarize
from modelyard.evals.wire import result_from_json
from modelyard.policy.rbac import Action

# The bar a tag's recommendation starts from; the page's form changes it.
DEFAULT_MIN_QUALITY = 0.8


@dataclass(frozen=True)
class Row:
    """One model on the leaderboard, as `report` formats it."""

    rank: int
    model: str
    deployment: str
    route: str | None
    quality: str
    method: str
    n: int
    cases: int
    cost_per_1k: str
    p50_ms: str
    p95_ms: str
    ttft_p50_ms: str
    errors: int
    on_front: bool


@dataclass(frozen=True)
class Board:
    tag: str
    label: str
    rows: list[Row]


@dataclass(frozen=True)
class Analysis:
    boards: list[Board]  # "(all)" first, then each tag
    comparisons: list[Comparison]
    recommendations: list[Recommendation]
    plot: dict[str, Any]


def analyse(results: Sequence[CaseResult], min_quality: float) -> Analysis:
    """The run's statistics and what the page shows of them (CPU-bound: run it off the loop)."""
    # plots imports matplotlib, which only this page needs: not at the gateway's start.
    from modelyard.evals.plots import AXIS_LABELS, pareto_front, points_of

    summaries = ordered(summarize(results))
    overall = [s for s in summaries if s.tag == ALL_TAGS]
    points = points_of(overall, "cost")
    front_indexes = pareto_front([(p.x, p.quality) for p in points])
    front = {points[i].label for i in front_indexes}
    boards: dict[str, list[Summary]] = {}
    for summary in summaries:
        boards.setdefault(summary.tag, []).append(summary)
    return Analysis(
        boards=[
            Board(tag, tag_label(tag), [_row(i, s, front) for i, s in enumerate(group, 1)])
            for tag, group in boards.items()
        ],
        comparisons=compare(results, ALL_TAGS),
        recommendations=recommend(summaries, min_quality),
        plot={
            "x_label": AXIS_LABELS["cost"],
            "y_label": "quality (mean, 95% interval)",
            "points": [
                {
                    "label": p.label,
                    "x": p.x,
                    "quality": p.quality,
                    "low": p.low,
                    "high": p.high,
                    "front": i in front_indexes,
                }
                for i, p in enumerate(points)
            ],
        },
    )


def _row(rank: int, summary: Summary, front: set[str]) -> Row:
    return Row(
        rank=rank,
        model=summary.model,
        deployment=summary.deployment or "\u2013",
        route=summary.route,
        quality=quality_text(summary),
        method=summary.quality.method,
        n=summary.quality.n,
        cases=summary.cases,
        cost_per_1k=cost_per_1k_cases(summary),
        p50_ms=milliseconds(summary.p50_latency_ms),
        p95_ms=milliseconds(summary.p95_latency_ms),
        ttft_p50_ms=milliseconds(summary.ttft_p50_ms),
        errors=summary.errors,
        on_front=summary.tag == ALL_TAGS and summary.model in front,
    )


def min_quality_of(request: Request) -> float:
    raw = request.query_params.get("min_quality", "").strip()
    if not raw:
        return DEFAULT_MIN_QUALITY
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0 <= value <= 1:
        raise InvalidParameter("The minimum quality is a number from 0 to 1.", param="min_quality")
    return value


@console_page
async def runs_page(request: Request, who: SignedIn) -> Response:
    projects = who.projects(Action.PROJECTS_READ)
    project = request.query_params.get("project", "").strip() or None
    answer = await internal.call(request, who, "GET", "/admin/evals", query={"project": project})
    if not answer.ok:
        return error_page(request, who, answer.status, answer.error_message)
    runs = sorted(answer.json()["data"], key=lambda run: run["created_at"], reverse=True)
    context = {"runs": runs, "projects": projects, "project": project or ""}
    return render(request, "evals.html", context, who=who)


@console_page
async def run_page(request: Request, who: SignedIn) -> Response:
    run_id = request.path_params["run"]
    min_quality = min_quality_of(request)
    run = await internal.call(request, who, "GET", f"/admin/evals/{run_id}")
    if not run.ok:
        return error_page(request, who, run.status, run.error_message)
    listed = await internal.call(request, who, "GET", f"/admin/evals/{run_id}/results")
    if not listed.ok:
        return error_page(request, who, listed.status, listed.error_message)
    results = [result_from_json(entry) for entry in listed.json()["data"]]
    analysis = await asyncio.to_thread(analyse, results, min_quality)
    context = {
        "run": run.json(),
        "result_count": len(results),
        "analysis": analysis,
        "describe": describe_comparison,
        "tag_label": tag_label,
        "min_quality": min_quality,
    }
    return render(request, "evals_run.html", context, who=who)


ROUTES: list[BaseRoute] = [
    Route("/evals", runs_page, methods=["GET"]),
    Route("/evals/{run}", run_page, methods=["GET"]),
]
