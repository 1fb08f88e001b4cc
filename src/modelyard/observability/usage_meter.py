"""Token usage per deployment, counted for every request whatever its ending: completed,
failed, or abandoned by its client. In memory only; the usage ledger builds on the same hook.
No content is ever seen here, only counts."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from modelyard.observability.metrics import MetricSample
from modelyard.protocol.generation import Usage


@dataclass
class _Totals:
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    estimated: int = 0
    disconnected: int = 0


class UsageMeter:
    def __init__(self) -> None:
        self._totals: defaultdict[tuple[str, str], _Totals] = defaultdict(_Totals)

    def record(self, deployment: str, model: str, usage: Usage, disconnected: bool) -> None:
        totals = self._totals[(deployment, model)]
        totals.requests += 1
        totals.prompt_tokens += usage.prompt_tokens
        totals.completion_tokens += usage.completion_tokens
        totals.estimated += usage.estimated
        totals.disconnected += disconnected

    def metric_samples(self) -> list[MetricSample]:
        samples = []
        for (deployment, model), totals in self._totals.items():
            labels = {"deployment": deployment, "model": model}
            samples += [
                MetricSample(
                    "modelyard_requests_total",
                    "counter",
                    "Requests that reached a provider",
                    totals.requests,
                    labels,
                ),
                MetricSample(
                    "modelyard_prompt_tokens_total",
                    "counter",
                    "Prompt tokens",
                    totals.prompt_tokens,
                    labels,
                ),
                MetricSample(
                    "modelyard_completion_tokens_total",
                    "counter",
                    "Completion tokens, streamed and abandoned ones included",
                    totals.completion_tokens,
                    labels,
                ),
                MetricSample(
                    "modelyard_usage_estimated_total",
                    "counter",
                    "Requests whose upstream reported no usage",
                    totals.estimated,
                    labels,
                ),
                MetricSample(
                    "modelyard_client_disconnects_total",
                    "counter",
                    "Requests whose client left early",
                    totals.disconnected,
                    labels,
                ),
            ]
        return samples
