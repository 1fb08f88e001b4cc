"""Statistics over case results: mean quality with a 95% interval per model and tag, latency and
cost per case, and pairwise comparisons that say when two models are not distinguishable.

Intervals: Wilson score intervals for pass rates (every result of the group scored pass/fail),
percentile bootstrap of the mean otherwise; differences of two pass rates use Newcombe's hybrid
score interval, other differences a bootstrap (paired by case when both models ran the same cases).
Everything is deterministic: the bootstrap draws from a `random.Random` with a fixed seed.

Conventions:
- A result with `error` set scores 0 (and fails) and counts as an error.
- Repeats count as observations: a group's `n` is its number of results; `cases` the distinct
  case ids. A paired comparison first averages each case's repeats.
- Cost per case is the mean over results of `cost_micros` plus the judge's cost when scoring
  called one (`extra["judge_cost_micros"]`).
- Latency percentiles are nearest-rank over the results without an error (over all results when
  every one failed); TTFT over those that report one.
- A model's deployment is the one that answered most of its results; `route` is set when its
  answers came through a route (the runner stores the x-modelyard-route header in
  `extra["route"]`).
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Literal

from modelyard.evals.outcome import CaseResult

ALL_TAGS = "*"
Z_95 = 1.96
# Percentile-bootstrap tails for a 95% interval.
_LOW_TAIL, _HIGH_TAIL = 0.025, 0.975


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float
    n: int
    method: Literal["wilson", "bootstrap"]


@dataclass(frozen=True)
class Summary:
    model: str
    deployment: str | None
    tag: str
    quality: Interval
    cases: int
    errors: int
    cost_micros_per_case: float
    p50_latency_ms: float
    p95_latency_ms: float
    ttft_p50_ms: float | None
    # The route the answers came through, when the model evaluated is a route.
    route: str | None = None


@dataclass(frozen=True)
class Comparison:
    tag: str
    a: str
    b: str
    # Quality of a minus quality of b, with its 95% interval.
    difference: float
    low: float
    high: float
    distinguishable: bool


def wilson(passes: int, n: int, z: float = Z_95) -> Interval:
    """The Wilson score interval of a pass rate; [0, 1] when there is nothing to measure."""
    if not 0 <= passes <= n:
        raise ValueError(f"passes must be between 0 and n, got {passes} of {n}")
    if n == 0:
        return Interval(0.0, 0.0, 1.0, 0, "wilson")
    rate = passes / n
    z2 = z * z
    denominator = 1 + z2 / n
    centre = (rate + z2 / (2 * n)) / denominator
    half = z * math.sqrt(rate * (1 - rate) / n + z2 / (4 * n * n)) / denominator
    # Exact at the edges: floating point would leave 0/n a hair above 0.
    low = 0.0 if passes == 0 else max(0.0, centre - half)
    high = 1.0 if passes == n else min(1.0, centre + half)
    return Interval(rate, low, high, n, "wilson")


def bootstrap(values: Sequence[float], rounds: int = 2000, seed: int = 0) -> Interval:
    """The mean of `values` with a 95% percentile-bootstrap interval ([0, 1] when empty)."""
    if not values:
        return Interval(0.0, 0.0, 1.0, 0, "bootstrap")
    means = sorted(_resampled_means(list(values), rounds, random.Random(seed)))
    low, high = _percentiles(means)
    mean = math.fsum(values) / len(values)
    # Rounding in the resampled sums can leave a zero-width interval a hair off the mean.
    return Interval(mean, min(low, mean), max(high, mean), len(values), "bootstrap")


def summarize(results: Sequence[CaseResult]) -> list[Summary]:
    """One summary per model and tag, plus tag "*" over all of a model's results; sorted by model
    then tag ("*" first)."""
    groups: dict[tuple[str, str], list[CaseResult]] = {}
    for result in results:
        for tag in (ALL_TAGS, *result.tags):
            groups.setdefault((result.model, tag), []).append(result)
    return [_summary(model, tag, group) for (model, tag), group in sorted(groups.items())]


def compare(results: Sequence[CaseResult], tag: str) -> list[Comparison]:
    """Every pair of models on `tag` ("*" for all cases), the better-scoring model as `a`."""
    by_model: dict[str, list[CaseResult]] = {}
    for result in results:
        if tag == ALL_TAGS or tag in result.tags:
            by_model.setdefault(result.model, []).append(result)
    ranked = sorted(by_model, key=lambda model: (-_mean_quality(by_model[model]), model))
    return [_compare(tag, a, b, by_model[a], by_model[b]) for a, b in combinations(ranked, 2)]


def newcombe(passes_a: int, n_a: int, passes_b: int, n_b: int, z: float = Z_95) -> Interval:
    """Newcombe's hybrid score interval for the difference of two pass rates (a minus b)."""
    a, b = wilson(passes_a, n_a, z), wilson(passes_b, n_b, z)
    difference = a.mean - b.mean
    low = difference - math.hypot(a.mean - a.low, b.high - b.mean)
    high = difference + math.hypot(a.high - a.mean, b.mean - b.low)
    return Interval(difference, low, high, n_a + n_b, "wilson")


def quality_of(result: CaseResult) -> float:
    """The score a result counts for: 0 when it ended in an error."""
    return 0.0 if result.error is not None else result.score


def passed(result: CaseResult) -> bool:
    return result.error is None and result.passed


def nearest_rank(sorted_values: Sequence[float], percent: float) -> float:
    """The nearest-rank percentile of already sorted values (which must not be empty)."""
    rank = max(1, math.ceil(percent / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def _summary(model: str, tag: str, results: list[CaseResult]) -> Summary:
    answered = [r for r in results if r.error is None]
    latencies = sorted(r.latency_ms for r in (answered or results))
    ttfts = sorted(r.ttft_ms for r in answered if r.ttft_ms is not None)
    cost = math.fsum(r.cost_micros + _judge_cost(r) for r in results) / len(results)
    routes = [str(r.extra["route"]) for r in results if r.extra.get("route")]
    return Summary(
        model=model,
        deployment=_most_frequent([r.deployment for r in results if r.deployment]),
        tag=tag,
        quality=_quality(results),
        cases=len({r.case_id for r in results}),
        errors=len(results) - len(answered),
        cost_micros_per_case=cost,
        p50_latency_ms=nearest_rank(latencies, 50),
        p95_latency_ms=nearest_rank(latencies, 95),
        ttft_p50_ms=nearest_rank(ttfts, 50) if ttfts else None,
        route=_most_frequent(routes),
    )


def _quality(results: list[CaseResult]) -> Interval:
    if all(r.binary for r in results):
        return wilson(sum(passed(r) for r in results), len(results))
    return bootstrap([quality_of(r) for r in results])


def _mean_quality(results: list[CaseResult]) -> float:
    if all(r.binary for r in results):
        return sum(passed(r) for r in results) / len(results)
    return math.fsum(quality_of(r) for r in results) / len(results)


def _compare(
    tag: str, a: str, b: str, results_a: list[CaseResult], results_b: list[CaseResult]
) -> Comparison:
    if all(r.binary for r in (*results_a, *results_b)):
        interval = newcombe(
            sum(passed(r) for r in results_a),
            len(results_a),
            sum(passed(r) for r in results_b),
            len(results_b),
        )
    else:
        interval = _bootstrap_difference(results_a, results_b)
    return Comparison(
        tag=tag,
        a=a,
        b=b,
        difference=interval.mean,
        low=interval.low,
        high=interval.high,
        distinguishable=interval.low > 0 or interval.high < 0,
    )


def _bootstrap_difference(
    results_a: list[CaseResult], results_b: list[CaseResult], rounds: int = 2000, seed: int = 0
) -> Interval:
    per_case_a, per_case_b = _per_case_means(results_a), _per_case_means(results_b)
    if per_case_a.keys() == per_case_b.keys():
        # Same cases: resampling cases keeps each case's pair together, which removes the
        # case-difficulty variance both models share.
        return bootstrap([per_case_a[case] - per_case_b[case] for case in per_case_a], rounds, seed)
    values_a = [quality_of(r) for r in results_a]
    values_b = [quality_of(r) for r in results_b]
    rng = random.Random(seed)
    means_a = _resampled_means(values_a, rounds, rng)
    means_b = _resampled_means(values_b, rounds, rng)
    low, high = _percentiles(sorted(x - y for x, y in zip(means_a, means_b, strict=True)))
    difference = math.fsum(values_a) / len(values_a) - math.fsum(values_b) / len(values_b)
    return Interval(difference, low, high, len(values_a) + len(values_b), "bootstrap")


def _per_case_means(results: list[CaseResult]) -> dict[str, float]:
    scores: dict[str, list[float]] = {}
    for result in results:
        scores.setdefault(result.case_id, []).append(quality_of(result))
    return {case: math.fsum(values) / len(values) for case, values in scores.items()}


def _resampled_means(values: list[float], rounds: int, rng: random.Random) -> list[float]:
    n = len(values)
    return [sum(rng.choices(values, k=n)) / n for _ in range(rounds)]


def _percentiles(sorted_means: list[float]) -> tuple[float, float]:
    return (
        nearest_rank(sorted_means, _LOW_TAIL * 100),
        nearest_rank(sorted_means, _HIGH_TAIL * 100),
    )


def _judge_cost(result: CaseResult) -> int:
    cost = result.extra.get("judge_cost_micros", 0)
    return int(cost) if isinstance(cost, int | float) else 0


def _most_frequent(names: list[str]) -> str | None:
    """The most frequent name; the alphabetically first among equals, for determinism."""
    if not names:
        return None
    counts = Counter(names)
    return min(counts, key=lambda name: (-counts[name], name))
