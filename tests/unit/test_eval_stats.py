"""Intervals, summaries and comparisons over hand-built case results (evals/stats.py)."""

from __future__ import annotations

import random
import statistics
from typing import Any

import pytest

from modelyard.evals.outcome import CaseResult
from modelyard.evals.stats import (
    Interval,
    bootstrap,
    compare,
    nearest_rank,
    newcombe,
    summarize,
    wilson,
)
from tests.support.eval_results import case_result


def result(
    model: str,
    case_id: str,
    score: float,
    *,
    tags: tuple[str, ...] = ("qa",),
    binary: bool = True,
    repeat: int = 0,
    deployment: str | None = None,
    latency_ms: float = 100.0,
    ttft_ms: float | None = None,
    cost_micros: int = 0,
    error: str | None = None,
    extra: dict[str, Any] | None = None,
) -> CaseResult:
    return case_result(
        model,
        case_id,
        score,
        repeat=repeat,
        tags=tags,
        deployment=deployment if deployment is not None else f"{model}-dep",
        binary=binary,
        latency_ms=latency_ms,
        ttft_ms=ttft_ms,
        cost_micros=cost_micros,
        error=error,
        extra=extra or {},
    )


def pass_fail(model: str, passes: int, n: int, tag: str = "qa") -> list[CaseResult]:
    return [result(model, f"{tag}-{i}", 1.0 if i < passes else 0.0, tags=(tag,)) for i in range(n)]


# -- Wilson ----------------------------------------------------------------------------------------


def test_wilson_matches_published_values() -> None:
    interval = wilson(8, 10)
    assert interval.mean == pytest.approx(0.8)
    assert (round(interval.low, 3), round(interval.high, 3)) == (0.490, 0.943)
    assert interval.n == 10
    assert interval.method == "wilson"


def test_wilson_none_passed_has_a_lower_bound_of_exactly_zero() -> None:
    interval = wilson(0, 10)
    assert interval.low == 0.0
    assert interval.high == pytest.approx(0.2775, abs=1e-4)


def test_wilson_all_passed_has_an_upper_bound_of_exactly_one() -> None:
    interval = wilson(10, 10)
    assert interval.high == 1.0
    assert interval.low == pytest.approx(0.7225, abs=1e-4)


def test_wilson_without_observations_claims_nothing() -> None:
    assert wilson(0, 0) == Interval(0.0, 0.0, 1.0, 0, "wilson")


def test_wilson_narrows_as_the_sample_grows() -> None:
    small, large = wilson(8, 10), wilson(800, 1000)
    assert large.high - large.low < (small.high - small.low) / 5


def test_wilson_refuses_more_passes_than_observations() -> None:
    with pytest.raises(ValueError):
        wilson(11, 10)


# -- bootstrap -------------------------------------------------------------------------------------


def test_bootstrap_is_reproducible_with_its_seed() -> None:
    values = [i / 50 for i in range(50)]
    assert bootstrap(values, seed=3) == bootstrap(values, seed=3)
    assert bootstrap(values, seed=3) != bootstrap(values, seed=4)


def test_bootstrap_interval_agrees_with_the_normal_approximation() -> None:
    rng = random.Random(11)
    values = [rng.random() for _ in range(400)]
    interval = bootstrap(values)
    mean = statistics.fmean(values)
    half = 1.96 * statistics.stdev(values) / len(values) ** 0.5
    assert interval.mean == pytest.approx(mean)
    assert interval.method == "bootstrap"
    assert interval.n == 400
    assert interval.low == pytest.approx(mean - half, abs=0.01)
    assert interval.high == pytest.approx(mean + half, abs=0.01)


def test_bootstrap_of_identical_values_has_no_width() -> None:
    interval = bootstrap([0.5] * 30)
    assert (interval.low, interval.mean, interval.high) == (0.5, 0.5, 0.5)


def test_bootstrap_of_nothing_claims_nothing() -> None:
    assert bootstrap([]) == Interval(0.0, 0.0, 1.0, 0, "bootstrap")


# -- Newcombe and nearest rank ---------------------------------------------------------------------


def test_newcombe_matches_the_published_example() -> None:
    # Newcombe (1998), Statistics in Medicine 17, example (a): 56/70 vs 48/80, method 10.
    interval = newcombe(56, 70, 48, 80)
    assert interval.mean == pytest.approx(0.2)
    assert (round(interval.low, 4), round(interval.high, 4)) == (0.0524, 0.3339)


def test_nearest_rank_takes_an_observed_value() -> None:
    values = [float(v) for v in range(1, 21)]
    assert nearest_rank(values, 50) == 10.0
    assert nearest_rank(values, 95) == 19.0
    assert nearest_rank(values, 100) == 20.0
    assert nearest_rank([42.0], 95) == 42.0


# -- summarize -------------------------------------------------------------------------------------


def test_summarize_gives_one_summary_per_model_and_tag_plus_all_cases() -> None:
    results = [
        *pass_fail("alpha", 3, 4, "extraction"),
        *pass_fail("alpha", 1, 2, "classification"),
        *pass_fail("beta", 2, 2, "extraction"),
    ]
    summaries = summarize(results)
    keys = [(s.model, s.tag) for s in summaries]
    assert keys == [
        ("alpha", "*"),
        ("alpha", "classification"),
        ("alpha", "extraction"),
        ("beta", "*"),
        ("beta", "extraction"),
    ]
    alpha_all = summaries[0]
    assert alpha_all.quality == wilson(4, 6)
    assert summaries[2].quality == wilson(3, 4)


def test_a_case_with_several_tags_counts_in_each() -> None:
    results = [result("alpha", "c1", 1.0, tags=("qa", "fr")), result("alpha", "c2", 0.0)]
    by_tag = {s.tag: s for s in summarize(results)}
    assert by_tag["fr"].quality.n == 1
    assert by_tag["qa"].quality.n == 2
    assert by_tag["*"].quality.n == 2


def test_graded_scores_use_the_bootstrap_and_pass_fail_uses_wilson() -> None:
    results = [
        *pass_fail("alpha", 5, 10, "binary"),
        *(result("alpha", f"g{i}", i / 10, tags=("graded",), binary=False) for i in range(10)),
    ]
    by_tag = {s.tag: s for s in summarize(results)}
    assert by_tag["binary"].quality.method == "wilson"
    assert by_tag["graded"].quality.method == "bootstrap"
    assert by_tag["graded"].quality.mean == pytest.approx(0.45)
    # One graded result among the pass/fail ones makes the whole group graded.
    assert by_tag["*"].quality.method == "bootstrap"


def test_errors_score_zero_and_are_counted() -> None:
    results = [
        result("alpha", "c1", 1.0),
        result("alpha", "c2", 1.0, error="upstream_error: 502"),
        result("alpha", "c3", 0.6, binary=False, error="timeout"),
    ]
    summary = summarize(results)[0]
    assert summary.errors == 2
    assert summary.quality.mean == pytest.approx(1 / 3)


def test_cost_per_case_includes_the_judges_cost() -> None:
    results = [
        result("alpha", "c1", 1.0, cost_micros=100, extra={"judge_cost_micros": 50}),
        result("alpha", "c2", 1.0, cost_micros=300),
    ]
    assert summarize(results)[0].cost_micros_per_case == pytest.approx(225.0)


def test_latency_percentiles_are_nearest_rank_over_answered_results() -> None:
    results = [
        result("alpha", f"c{i}", 1.0, latency_ms=float(i), ttft_ms=float(i) / 10)
        for i in range(1, 21)
    ]
    # A fast failure must not make the model look faster.
    results.append(result("alpha", "failed", 0.0, latency_ms=0.5, error="refused"))
    summary = summarize(results)[0]
    assert (summary.p50_latency_ms, summary.p95_latency_ms) == (10.0, 19.0)
    assert summary.ttft_p50_ms == 1.0


def test_latency_of_a_model_whose_every_call_failed_is_that_of_its_failures() -> None:
    results = [result("alpha", f"c{i}", 0.0, latency_ms=30.0, error="down") for i in range(3)]
    summary = summarize(results)[0]
    assert summary.p95_latency_ms == 30.0
    assert summary.ttft_p50_ms is None


def test_repeats_are_observations_but_not_extra_cases() -> None:
    results = [result("alpha", f"c{i}", 1.0, repeat=r) for i in range(4) for r in range(3)]
    summary = summarize(results)[0]
    assert summary.cases == 4
    assert summary.quality.n == 12


def test_deployment_is_the_one_that_answered_most() -> None:
    results = [
        result("router", "c1", 1.0, deployment="b-dep"),
        result("router", "c2", 1.0, deployment="a-dep"),
        result("router", "c3", 1.0, deployment="b-dep"),
    ]
    summary = summarize(results)[0]
    assert summary.deployment == "b-dep"
    assert summary.route is None


def test_answers_through_a_route_mark_the_summary_as_a_route() -> None:
    results = [result("support", "c1", 1.0, deployment="a-dep", extra={"route": "support"})]
    summary = summarize(results)[0]
    assert summary.route == "support"
    assert summary.deployment == "a-dep"


# -- compare ---------------------------------------------------------------------------------------


def test_nine_of_ten_against_eight_of_ten_is_not_distinguishable() -> None:
    results = [*pass_fail("alpha", 9, 10), *pass_fail("beta", 8, 10)]
    (comparison,) = compare(results, "qa")
    assert (comparison.a, comparison.b) == ("alpha", "beta")
    assert comparison.difference == pytest.approx(0.1)
    assert comparison.low < 0 < comparison.high
    assert not comparison.distinguishable


def test_ninety_five_of_a_hundred_against_fifty_is_distinguishable() -> None:
    results = [*pass_fail("beta", 50, 100), *pass_fail("alpha", 95, 100)]
    (comparison,) = compare(results, "qa")
    assert (comparison.a, comparison.b) == ("alpha", "beta")
    assert comparison.difference == pytest.approx(0.45)
    assert (comparison.low, comparison.high) == pytest.approx(
        (newcombe(95, 100, 50, 100).low, newcombe(95, 100, 50, 100).high)
    )
    assert comparison.distinguishable


def test_compare_covers_every_pair_on_the_tag_only() -> None:
    results = [
        *pass_fail("alpha", 9, 10),
        *pass_fail("beta", 5, 10),
        *pass_fail("gamma", 1, 10),
        *pass_fail("delta", 10, 10, tag="other"),
    ]
    pairs = [(c.a, c.b) for c in compare(results, "qa")]
    assert pairs == [("alpha", "beta"), ("alpha", "gamma"), ("beta", "gamma")]
    assert len(compare(results, "*")) == 6


def test_graded_comparison_on_the_same_cases_is_paired() -> None:
    # Cases differ a lot in difficulty; alpha is better by 0.05 on every one of them. Pairing by
    # case sees that; comparing the two samples as unrelated would not.
    difficulty = [0.1 + 0.8 * i / 29 for i in range(30)]
    alpha = [result("alpha", f"c{i}", d + 0.05, binary=False) for i, d in enumerate(difficulty)]
    beta = [result("beta", f"c{i}", d, binary=False) for i, d in enumerate(difficulty)]
    (paired,) = compare([*alpha, *beta], "qa")
    assert paired.difference == pytest.approx(0.05)
    assert paired.distinguishable

    beta_other_cases = [
        result("beta", f"other{i}", d, binary=False) for i, d in enumerate(difficulty)
    ]
    (unpaired,) = compare([*alpha, *beta_other_cases], "qa")
    assert unpaired.difference == pytest.approx(0.05)
    assert not unpaired.distinguishable


def test_paired_comparison_averages_each_cases_repeats() -> None:
    alpha = [
        result("alpha", f"c{i}", score, binary=False, repeat=r)
        for i in range(10)
        for r, score in enumerate((1.0, 0.5))
    ]
    beta = [result("beta", f"c{i}", 0.25, binary=False) for i in range(10)]
    (comparison,) = compare([*alpha, *beta], "qa")
    assert comparison.difference == pytest.approx(0.5)
    assert comparison.low == pytest.approx(0.5)
