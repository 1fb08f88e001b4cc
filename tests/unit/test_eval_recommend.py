"""Recommendations and route entries from summaries of scripted results (evals/recommend.py).

Each model is scripted with a known accuracy per tag, a price per case and a latency, the way the
fake upstreams of the end-to-end tests are; the summaries come from the real `summarize`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from modelyard.catalog.routes import RouteDefinition
from modelyard.evals.outcome import CaseResult
from modelyard.evals.recommend import Recommendation, recommend, route_entries
from modelyard.evals.stats import Summary, summarize, wilson
from tests.support.eval_results import case_result


def scripted(
    model: str,
    accuracy: dict[str, tuple[int, int]],
    *,
    cost_micros: int,
    latency_ms: float = 200.0,
    deployment: str | None = None,
    extra: dict[str, Any] | None = None,
) -> list[CaseResult]:
    """`model`'s results: for each tag, (passes, cases) pass/fail results."""
    results = []
    for tag, (passes, cases) in accuracy.items():
        for i in range(cases):
            results.append(
                case_result(
                    model,
                    f"{tag}-{i}",
                    1.0 if i < passes else 0.0,
                    tags=(tag,),
                    deployment=deployment or f"{model}-dep",
                    latency_ms=latency_ms,
                    cost_micros=cost_micros,
                    request_id=None,
                    output=None,
                    extra=extra or {},
                )
            )
    return results


def by_tag(recommendations: list[Recommendation]) -> dict[str, Recommendation]:
    return {r.tag: r for r in recommendations}


def reasons(recommendation: Recommendation) -> dict[str, str]:
    return dict(recommendation.excluded)


# Lower bounds at 40 cases: 34/40 -> 0.709, 39/40 -> 0.871, 40/40 -> 0.912.
CATALOG_RUN = [
    *scripted("cheap", {"extraction": (34, 40), "classification": (20, 40)}, cost_micros=10),
    *scripted("mid", {"extraction": (39, 40), "classification": (30, 40)}, cost_micros=50),
    *scripted("dear", {"extraction": (40, 40), "classification": (33, 40)}, cost_micros=400),
]


def test_recommend_picks_the_cheapest_whose_lower_bound_clears_the_bar() -> None:
    extraction = by_tag(recommend(summarize(CATALOG_RUN), min_quality=0.8))["extraction"]
    assert extraction.chosen is not None
    # "cheap" scores a mean of 0.85, above the bar, but its interval does not clear it.
    assert extraction.chosen.model == "mid"
    assert [s.model for s in extraction.qualified] == ["mid", "dear"]
    assert reasons(extraction) == {"cheap": "quality lower bound 0.71 < 0.80"}


def test_recommend_picks_none_when_no_interval_clears_the_bar() -> None:
    classification = by_tag(recommend(summarize(CATALOG_RUN), min_quality=0.8))["classification"]
    assert classification.chosen is None
    assert classification.qualified == []
    assert set(reasons(classification)) == {"cheap", "mid", "dear"}
    assert reasons(classification)["dear"] == "quality lower bound 0.68 < 0.80"


def test_recommend_gives_one_recommendation_per_tag_and_none_for_all_cases() -> None:
    assert [r.tag for r in recommend(summarize(CATALOG_RUN), 0.8)] == [
        "classification",
        "extraction",
    ]


def test_recommend_honours_the_latency_limit() -> None:
    results = [
        *scripted("fast-dear", {"qa": (40, 40)}, cost_micros=400, latency_ms=300),
        *scripted("slow-cheap", {"qa": (40, 40)}, cost_micros=10, latency_ms=1450),
    ]
    unlimited = recommend(summarize(results), 0.9)[0]
    assert unlimited.chosen is not None and unlimited.chosen.model == "slow-cheap"

    limited = recommend(summarize(results), 0.9, max_p95_latency_ms=1000)[0]
    assert limited.chosen is not None and limited.chosen.model == "fast-dear"
    assert reasons(limited) == {"slow-cheap": "p95 latency 1450 ms > 1000 ms"}


def test_every_shortfall_is_named() -> None:
    results = scripted("weak-slow", {"qa": (10, 40)}, cost_micros=1, latency_ms=5000)
    (recommendation,) = recommend(summarize(results), 0.9, max_p95_latency_ms=1000)
    assert reasons(recommendation) == {
        "weak-slow": "quality lower bound 0.14 < 0.90; p95 latency 5000 ms > 1000 ms"
    }


def test_a_reason_never_shows_the_bound_equal_to_the_bar() -> None:
    summary = summarize(scripted("close", {"qa": (40, 40)}, cost_micros=1))[1]
    close = replace(summary, quality=replace(summary.quality, low=0.8996))
    (recommendation,) = recommend([close], min_quality=0.9)
    assert reasons(recommendation) == {"close": "quality lower bound 0.8996 < 0.9000"}


def test_an_evaluated_route_is_excluded_because_it_is_not_a_deployment() -> None:
    results = [
        *scripted("support", {"qa": (40, 40)}, cost_micros=1, extra={"route": "support"}),
        *scripted("mid", {"qa": (40, 40)}, cost_micros=50),
    ]
    (recommendation,) = recommend(summarize(results), 0.9)
    assert recommendation.chosen is not None and recommendation.chosen.model == "mid"
    assert reasons(recommendation) == {"support": "it is a route, not a deployment"}


def test_a_model_without_cases_on_a_tag_is_excluded_for_that_tag() -> None:
    results = [
        *scripted("generalist", {"qa": (40, 40), "fr": (40, 40)}, cost_micros=50),
        *scripted("english-only", {"qa": (40, 40)}, cost_micros=1),
    ]
    fr = by_tag(recommend(summarize(results), 0.9))["fr"]
    assert fr.chosen is not None and fr.chosen.model == "generalist"
    assert reasons(fr) == {"english-only": "no cases with this tag"}


def test_equal_costs_go_to_the_higher_lower_bound() -> None:
    base = summarize(scripted("a", {"qa": (40, 40)}, cost_micros=5))[1]
    better = replace(base, model="z-better", quality=wilson(400, 400))
    worse = replace(base, model="a-worse", quality=wilson(39, 40))
    (recommendation,) = recommend([worse, better], 0.85)
    assert [s.model for s in recommendation.qualified] == ["z-better", "a-worse"]


# -- route entries ---------------------------------------------------------------------------------


def test_route_entries_are_catalog_routes_with_the_choice_first() -> None:
    results = [
        *CATALOG_RUN,
        # Same deployment as "mid" under another name: listed once.
        *scripted("mid-alias", {"extraction": (39, 40)}, cost_micros=60, deployment="mid-dep"),
    ]
    entries = route_entries(recommend(summarize(results), 0.8), prefix="eval-")
    # classification has no choice, so it gets no route.
    assert [entry["id"] for entry in entries] == ["eval-extraction"]
    (entry,) = entries
    assert entry["strategy"] == "priority"
    assert entry["candidates"] == [{"deployment": "mid-dep"}, {"deployment": "dear-dep"}]
    route = RouteDefinition.model_validate(entry)
    assert [c.deployment for c in route.spec().candidates] == ["mid-dep", "dear-dep"]


def test_route_entries_refuse_an_id_a_route_cannot_have() -> None:
    summary = summarize(scripted("a", {"qa": (40, 40)}, cost_micros=5))[1]
    recommendation = Recommendation("support fr", summary, [summary], [])
    with pytest.raises(ValueError, match="'support fr' cannot be a route id"):
        route_entries([recommendation])


def test_route_entries_skip_summaries_without_a_deployment() -> None:
    chosen: Summary = summarize(scripted("a", {"qa": (40, 40)}, cost_micros=5))[1]
    anonymous = replace(chosen, model="b", deployment=None)
    entries = route_entries([Recommendation("qa", chosen, [chosen, anonymous], [])])
    assert entries[0]["candidates"] == [{"deployment": "a-dep"}]


def test_a_tag_with_too_few_cases_never_qualifies_however_well_it_scored() -> None:
    few = [*scripted("tiny", {"rare": (3, 3)}, cost_micros=1)]
    many = [*scripted("broad", {"rare": (12, 12)}, cost_micros=5)]
    (recommendation,) = recommend(summarize([*few, *many]), min_quality=0.4)
    assert recommendation.chosen is not None and recommendation.chosen.model == "broad"
    assert reasons(recommendation)["tiny"].startswith("only 3 cases with this tag")
