"""From summaries to routing: per tag, the cheapest deployment whose quality is good enough, the
models left out and why, and the catalog `routes:` entries that send each tag's traffic there.

"Good enough" is judged on the interval's lower bound, not the mean, so a model that merely got
lucky on a small sample does not qualify; nor does a tag with fewer than `MIN_CASES` cases.
Cost is `cost_micros_per_case`; equal costs go to the higher lower bound, then to the model's
name (for determinism). Only a deployment can be a route's candidate, so a route that was
evaluated, or a model whose answers named no deployment, is left out with its reason.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from modelyard.catalog.routes import ROUTE_ID_PATTERN, Strategy
from modelyard.evals.stats import ALL_TAGS, Summary

NO_CASES = "no cases with this tag"
IS_ROUTE = "it is a route, not a deployment"
NO_DEPLOYMENT = "no answer named the deployment that gave it"
# A bootstrap interval over a handful of graded cases is narrower than it has earned (one case
# gives none at all), so fewer distinct cases than this never qualify.
MIN_CASES = 10


@dataclass(frozen=True)
class Recommendation:
    tag: str
    # The cheapest qualified model; None when no model meets the bar.
    chosen: Summary | None
    # Every model that meets the bar, cheapest first (`chosen` is the first).
    qualified: list[Summary]
    # (model, why it was left out), one entry per model that does not qualify.
    excluded: list[tuple[str, str]]


def recommend(
    summaries: Sequence[Summary], min_quality: float, max_p95_latency_ms: float | None = None
) -> list[Recommendation]:
    """One recommendation per tag (other than "*"), sorted by tag."""
    models = sorted({s.model for s in summaries})
    tags = sorted({s.tag for s in summaries if s.tag != ALL_TAGS})
    by_key = {(s.model, s.tag): s for s in summaries}
    recommendations = []
    for tag in tags:
        qualified: list[Summary] = []
        excluded: list[tuple[str, str]] = []
        for model in models:
            summary = by_key.get((model, tag))
            if summary is None:
                excluded.append((model, NO_CASES))
                continue
            reasons = _shortfalls(summary, min_quality, max_p95_latency_ms)
            if reasons:
                excluded.append((model, "; ".join(reasons)))
            else:
                qualified.append(summary)
        qualified.sort(key=lambda s: (s.cost_micros_per_case, -s.quality.low, s.model))
        chosen = qualified[0] if qualified else None
        recommendations.append(Recommendation(tag, chosen, qualified, excluded))
    return recommendations


def route_entries(
    recommendations: Sequence[Recommendation], prefix: str = ""
) -> list[dict[str, Any]]:
    """The catalog `routes:` entries for the tags that have a choice: id `prefix + tag`, priority
    strategy, the chosen deployment first, then the other qualified ones by cost as fallbacks.

    Raises ValueError when `prefix + tag` cannot be a route id."""
    entries = []
    for recommendation in recommendations:
        chosen = recommendation.chosen
        if chosen is None:
            continue
        route_id = prefix + recommendation.tag
        if re.fullmatch(ROUTE_ID_PATTERN, route_id) is None:
            raise ValueError(
                f"'{route_id}' cannot be a route id (letters, digits and . _ : - only, "
                "starting with a letter or digit); choose another prefix or rename the tag"
            )
        deployments: list[str] = []
        for summary in recommendation.qualified:
            if summary.deployment is not None and summary.deployment not in deployments:
                deployments.append(summary.deployment)
        entries.append(
            {
                "id": route_id,
                "strategy": str(Strategy.PRIORITY),
                "candidates": [{"deployment": deployment} for deployment in deployments],
                "description": (
                    f"Recommended by modelyard eval for '{recommendation.tag}': {chosen.model} "
                    f"at quality lower bound {chosen.quality.low:.2f} over {chosen.cases} cases"
                ),
            }
        )
    return entries


def _shortfalls(
    summary: Summary, min_quality: float, max_p95_latency_ms: float | None
) -> list[str]:
    reasons = []
    if summary.cases < MIN_CASES:
        reasons.append(f"only {summary.cases} cases with this tag (at least {MIN_CASES} needed)")
    if summary.quality.low < min_quality:
        low, bar = _distinct(summary.quality.low, min_quality, decimals=2)
        reasons.append(f"quality lower bound {low} < {bar}")
    if max_p95_latency_ms is not None and summary.p95_latency_ms > max_p95_latency_ms:
        p95, limit = _distinct(summary.p95_latency_ms, max_p95_latency_ms, decimals=0)
        reasons.append(f"p95 latency {p95} ms > {limit} ms")
    if summary.route is not None:
        reasons.append(IS_ROUTE)
    elif summary.deployment is None:
        reasons.append(NO_DEPLOYMENT)
    return reasons


def _distinct(value: float, bound: float, decimals: int) -> tuple[str, str]:
    """Both numbers with the fewest decimals (from `decimals`) that still tell them apart, so a
    reason never reads "0.90 < 0.90"."""
    for places in range(decimals, decimals + 6):
        shown = f"{value:.{places}f}", f"{bound:.{places}f}"
        if shown[0] != shown[1]:
            return shown
    return f"{value:g}", f"{bound:g}"
