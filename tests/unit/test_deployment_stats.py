"""What the router keeps per deployment: attempts in flight, moving averages of latency, the last
error, and the metric samples of all of it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from modelyard.observability.metrics import MetricSample, StateMetrics
from modelyard.routing.breaker import BreakerPolicy, BreakerState
from modelyard.routing.deployment_stats import DeploymentStats, Fleet, LastError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


OPENS_AFTER_TWO = BreakerPolicy(consecutive_failures=2, cooldown_s=5.0)


def by_name(samples: list[MetricSample]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for s in samples}


def trip(stats: DeploymentStats) -> None:
    for _ in range(2):
        assert stats.breaker.admit()
        stats.breaker.failed()


def test_a_new_deployment_knows_nothing_yet() -> None:
    stats = DeploymentStats("d1", clock=Clock())
    assert stats.deployment_id == "d1"
    assert (stats.in_flight, stats.samples) == (0, 0)
    assert stats.ttft_s is stats.per_token_s is stats.last_error is stats.last_used is None
    assert stats.breaker.state is BreakerState.CLOSED


def test_started_counts_in_flight_and_remembers_when() -> None:
    clock = Clock()
    stats = DeploymentStats("d1", clock=clock)
    stats.started()
    clock.now = 1007.5
    stats.started()
    assert stats.in_flight == 2
    assert stats.last_used == 1007.5
    stats.finished()
    assert stats.in_flight == 1


def test_in_flight_never_goes_below_zero() -> None:
    stats = DeploymentStats("d1", clock=Clock())
    stats.started()
    stats.finished()
    stats.finished()
    stats.finished()
    assert stats.in_flight == 0
    stats.started()
    assert stats.in_flight == 1


def test_the_first_sample_is_the_average_then_it_moves_by_a_fifth() -> None:
    stats = DeploymentStats("d1", clock=Clock())
    stats.observe(1.0, 0.05)
    assert (stats.ttft_s, stats.per_token_s) == (1.0, 0.05)
    stats.observe(2.0, 0.10)
    assert stats.ttft_s == pytest.approx(1.2)  # 1.0 + 0.2 * (2.0 - 1.0)
    assert stats.per_token_s == pytest.approx(0.06)
    stats.observe(0.2, 0.01)
    assert stats.ttft_s == pytest.approx(1.0)  # 1.2 + 0.2 * (0.2 - 1.2)
    assert stats.per_token_s == pytest.approx(0.05)
    assert stats.samples == 3


def test_a_sample_without_a_time_per_token_leaves_that_average_alone() -> None:
    stats = DeploymentStats("d1", clock=Clock())
    stats.observe(0.5, None)
    assert (stats.ttft_s, stats.per_token_s) == (0.5, None)
    stats.observe(1.5, 0.02)
    assert stats.per_token_s == 0.02  # its first sample
    stats.observe(0.5, None)
    assert stats.per_token_s == 0.02
    assert stats.ttft_s == pytest.approx(0.66)  # 0.5, then 0.7, then 0.7 + 0.2 * (0.5 - 0.7)
    assert stats.samples == 3


def test_the_average_follows_a_lasting_change() -> None:
    stats = DeploymentStats("d1", clock=Clock())
    stats.observe(10.0, None)
    for _ in range(30):
        stats.observe(1.0, None)
    assert stats.ttft_s == pytest.approx(1.0 + 9.0 * 0.8**30)


@pytest.mark.parametrize(
    ("ttft_s", "per_token_s"),
    [(-0.1, None), (float("nan"), None), (float("inf"), None), (0.1, -1.0), (0.1, float("nan"))],
)
def test_an_impossible_duration_is_refused_and_changes_nothing(
    ttft_s: float, per_token_s: float | None
) -> None:
    stats = DeploymentStats("d1", clock=Clock())
    stats.observe(0.3, 0.01)
    with pytest.raises(ValueError):
        stats.observe(ttft_s, per_token_s)
    assert (stats.ttft_s, stats.per_token_s, stats.samples) == (0.3, 0.01, 1)


def test_the_last_error_keeps_its_code_status_and_utc_time() -> None:
    stats = DeploymentStats("d1", clock=Clock())
    before = datetime.now(UTC)
    stats.record_error("upstream_unavailable", 503)
    stats.record_error("upstream_timeout", 504)
    after = datetime.now(UTC)
    assert stats.last_error is not None
    assert (stats.last_error.code, stats.last_error.status) == ("upstream_timeout", 504)
    assert stats.last_error.at.utcoffset() is not None
    assert before <= stats.last_error.at <= after
    assert stats.breaker.state is BreakerState.CLOSED  # an error is no verdict by itself
    assert isinstance(stats.last_error, LastError)


def test_metric_samples_of_a_closed_deployment_with_no_latency_yet() -> None:
    stats = DeploymentStats("d1", clock=Clock())
    stats.started()
    stats.started()
    d1 = (("deployment", "d1"),)
    assert by_name(stats.metric_samples()) == {
        ("modelyard_deployment_in_flight", d1): 2,
        ("modelyard_deployment_breaker_open", d1): 0,
        ("modelyard_deployment_breaker_state", (*d1, ("state", "closed"))): 1,
        ("modelyard_deployment_breaker_state", (*d1, ("state", "half_open"))): 0,
        ("modelyard_deployment_breaker_state", (*d1, ("state", "open"))): 0,
    }
    assert {s.kind for s in stats.metric_samples()} == {"gauge"}


def test_metric_samples_follow_the_breaker_and_the_latency() -> None:
    clock = Clock()
    stats = DeploymentStats("d1", OPENS_AFTER_TWO, clock)
    stats.observe(0.8, 0.04)
    trip(stats)
    d1 = (("deployment", "d1"),)
    samples = by_name(stats.metric_samples())
    assert samples[("modelyard_deployment_breaker_open", d1)] == 1
    assert samples[("modelyard_deployment_breaker_state", (*d1, ("state", "open")))] == 1
    assert samples[("modelyard_deployment_breaker_state", (*d1, ("state", "closed")))] == 0
    assert samples[("modelyard_deployment_ttft_seconds", d1)] == 0.8
    assert samples[("modelyard_deployment_time_per_token_seconds", d1)] == 0.04

    clock.now += 5.0  # the cool-down has passed: half-open, still counted as open
    samples = by_name(stats.metric_samples())
    assert samples[("modelyard_deployment_breaker_open", d1)] == 1
    assert samples[("modelyard_deployment_breaker_state", (*d1, ("state", "half_open")))] == 1
    assert samples[("modelyard_deployment_breaker_state", (*d1, ("state", "open")))] == 0
    assert stats.breaker.admit()  # reading the metrics did not take the probe


def test_a_fleet_makes_stats_on_first_use_and_keeps_them() -> None:
    fleet = Fleet(OPENS_AFTER_TWO, Clock())
    assert fleet.all() == []
    b = fleet.of("b")
    b.started()
    assert fleet.of("b") is b and fleet.of("b").in_flight == 1
    fleet.of("a")
    fleet.of("c")
    assert [stats.deployment_id for stats in fleet.all()] == ["a", "b", "c"]


def test_a_fleet_gives_its_policy_and_clock_to_every_deployment() -> None:
    clock = Clock()
    fleet = Fleet(OPENS_AFTER_TWO, clock)
    stats = fleet.of("d1")
    assert stats.breaker.policy is OPENS_AFTER_TWO
    trip(stats)
    assert stats.breaker.snapshot().retry_in_s == 5.0
    clock.now += 5.0
    assert stats.breaker.admit()
    stats.started()
    assert stats.last_used == clock.now


def test_fleet_metric_samples_cover_every_deployment_in_order() -> None:
    fleet = Fleet(clock=Clock())
    fleet.of("b").observe(0.5, None)
    fleet.of("a")
    samples = fleet.metric_samples()
    assert [s.labels["deployment"] for s in samples] == ["a"] * 5 + ["b"] * 6
    assert len(by_name(samples)) == len(samples)  # no sample twice
    registry = CollectorRegistry()
    StateMetrics(registry).update(samples)
    text = generate_latest(registry).decode()
    assert 'modelyard_deployment_ttft_seconds{deployment="b"} 0.5\n' in text
    assert 'modelyard_deployment_ttft_seconds{deployment="a"}' not in text
    assert text.count("# TYPE modelyard_deployment_breaker_state gauge") == 1


def test_a_pause_asked_for_is_kept_then_over() -> None:
    clock = Clock()
    stats = DeploymentStats("d", clock=clock)
    assert stats.resting_s() == 0.0
    stats.rest(3.0)
    stats.rest(1.0)  # a shorter pause never shortens the one under way
    clock.now += 2.0
    assert stats.resting_s() == 1.0
    clock.now += 1.5
    assert stats.resting_s() == 0.0
