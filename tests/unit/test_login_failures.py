"""Failed logins are recorded one per source and minute, and counted beyond that."""

from __future__ import annotations

from modelyard.audit.login_failures import OTHER_SOURCES, LoginFailures


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_the_first_failures_per_source_and_minute_are_recorded_the_rest_counted() -> None:
    clock = Clock()
    failures = LoginFailures(per_source=3, clock=clock)
    recorded = [failures.should_record("10.0.0.1") for _ in range(1000)]
    assert recorded.count(True) == 3 and recorded[:3] == [True, True, True]
    assert failures.should_record("10.0.0.2")
    assert failures.summaries() == []  # the minute is not over
    clock.now += 60
    (summary,) = failures.summaries()
    assert summary.client_ip == "10.0.0.1" and summary.object == "997 failed logins"
    assert failures.should_record("10.0.0.1")  # a new minute: recorded again


def test_sources_beyond_the_bound_are_counted_together() -> None:
    clock = Clock()
    failures = LoginFailures(per_source=1, max_sources=3, clock=clock)
    recorded = [failures.should_record(f"10.0.0.{n}") for n in range(50)]
    assert recorded.count(True) == 3  # three sources; the rest only counted, together
    (summary,) = failures.summaries(include_current=True)
    assert summary.client_ip is None and OTHER_SOURCES in summary.reason
    assert summary.object == "47 failed logins"
