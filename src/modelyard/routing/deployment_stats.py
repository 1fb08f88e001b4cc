"""What the router knows of each deployment's recent behaviour: attempts in flight, moving
averages of its latency, its last error and its circuit breaker; and their metric samples.

The caller reports; nothing here decides what counts as a failure. An error the client caused
(a bad request) is recorded with `record_error` but is no verdict on the deployment, so the
caller tells the breaker separately. Not thread-safe: one asyncio event loop, no locks.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from modelyard.observability.metrics import MetricSample
from modelyard.routing.breaker import DEFAULT_POLICY, BreakerPolicy, BreakerState, CircuitBreaker

# Weight of the newest sample in the moving averages: about the last ten samples matter.
EWMA_ALPHA = 0.2


@dataclass(frozen=True)
class LastError:
    code: str  # the error's stable code (e.g. "upstream_unavailable"), never its message
    status: int
    at: datetime  # UTC


class DeploymentStats:
    """One deployment: requests in flight, moving averages of time to first token and time per
    output token, the last error, and its circuit breaker."""

    def __init__(
        self,
        deployment_id: str,
        policy: BreakerPolicy = DEFAULT_POLICY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.deployment_id = deployment_id
        self.breaker = CircuitBreaker(policy, clock)
        self.in_flight = 0
        self.ttft_s: float | None = None
        self.per_token_s: float | None = None
        self.samples = 0
        self.last_error: LastError | None = None
        self.last_used: float | None = None  # clock() when the latest attempt started
        self._clock = clock
        # Until when (clock()) the deployment asked not to be sent requests (429 Retry-After).
        self._rest_until = 0.0

    def started(self) -> None:
        """An attempt starts."""
        self.in_flight += 1
        self.last_used = self._clock()

    def finished(self) -> None:
        """An attempt ended, however it ended."""
        if self.in_flight > 0:
            self.in_flight -= 1

    def observe(self, ttft_s: float, per_token_s: float | None) -> None:
        """One attempt's time to first token and, when it produced enough tokens to tell, its
        time per output token (None leaves that average as it is)."""
        _check_duration("ttft_s", ttft_s)
        if per_token_s is not None:
            _check_duration("per_token_s", per_token_s)
            self.per_token_s = _moved(self.per_token_s, per_token_s)
        self.ttft_s = _moved(self.ttft_s, ttft_s)
        self.samples += 1

    def record_error(self, code: str, status: int) -> None:
        """Keep the error's stable code and status; its message may quote the prompt."""
        self.last_error = LastError(code=code, status=status, at=datetime.now(UTC))

    def rest(self, seconds: float) -> None:
        """The deployment asked for a pause (a 429 with Retry-After): it is passed over until
        the pause ends, without counting as a failure."""
        self._rest_until = max(self._rest_until, self._clock() + seconds)

    def resting_s(self) -> float:
        """Seconds of the pause left; 0 when there is none."""
        return max(0.0, self._rest_until - self._clock())

    def metric_samples(self) -> list[MetricSample]:
        labels = {"deployment": self.deployment_id}
        state = self.breaker.state
        samples = [
            MetricSample(
                "modelyard_deployment_in_flight",
                "gauge",
                "Attempts in flight to the deployment",
                self.in_flight,
                labels,
            ),
            MetricSample(
                "modelyard_deployment_breaker_open",
                "gauge",
                "Whether the deployment's circuit breaker is open or half-open (1) or closed (0)",
                0.0 if state is BreakerState.CLOSED else 1.0,
                labels,
            ),
        ]
        samples += [
            MetricSample(
                "modelyard_deployment_breaker_state",
                "gauge",
                "The state of the deployment's circuit breaker: 1 for the current one",
                1.0 if each is state else 0.0,
                {"deployment": self.deployment_id, "state": each.value},
            )
            for each in BreakerState
        ]
        if self.ttft_s is not None:
            samples.append(
                MetricSample(
                    "modelyard_deployment_ttft_seconds",
                    "gauge",
                    "Moving average of the deployment's time to first token",
                    self.ttft_s,
                    labels,
                )
            )
        if self.per_token_s is not None:
            samples.append(
                MetricSample(
                    "modelyard_deployment_time_per_token_seconds",
                    "gauge",
                    "Moving average of the deployment's time per output token",
                    self.per_token_s,
                    labels,
                )
            )
        return samples


class Fleet:
    """The stats of every deployment, created on first use."""

    def __init__(
        self,
        policy: BreakerPolicy = DEFAULT_POLICY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._policy = policy
        self._clock = clock
        self._stats: dict[str, DeploymentStats] = {}

    def of(self, deployment_id: str) -> DeploymentStats:
        stats = self._stats.get(deployment_id)
        if stats is None:
            stats = DeploymentStats(deployment_id, self._policy, self._clock)
            self._stats[deployment_id] = stats
        return stats

    def all(self) -> list[DeploymentStats]:
        """Sorted by deployment id."""
        return [self._stats[key] for key in sorted(self._stats)]

    def metric_samples(self) -> list[MetricSample]:
        return [sample for stats in self.all() for sample in stats.metric_samples()]


def _moved(average: float | None, sample: float) -> float:
    return sample if average is None else average + EWMA_ALPHA * (sample - average)


def _check_duration(name: str, value: float) -> None:
    # A NaN or infinity would stay in the average for good.
    if not (math.isfinite(value) and value >= 0.0):
        raise ValueError(f"{name} must be a finite number of seconds, at least 0: {value!r}")
