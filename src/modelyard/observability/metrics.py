"""Prometheus text exposition of samples that the providers and services report."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class MetricSample:
    name: str
    kind: str  # "counter" or "gauge"
    help: str
    value: float
    labels: dict[str, str] = field(default_factory=dict)


def render_prometheus(samples: Iterable[MetricSample]) -> str:
    lines: list[str] = []
    described: set[str] = set()
    for sample in sorted(samples, key=lambda s: s.name):
        if sample.name not in described:
            described.add(sample.name)
            lines.append(f"# HELP {sample.name} {sample.help}")
            lines.append(f"# TYPE {sample.name} {sample.kind}")
        labels = ",".join(
            f'{key}="{_escape(value)}"' for key, value in sorted(sample.labels.items())
        )
        lines.append(
            f"{sample.name}{{{labels}}} {sample.value:g}"
            if labels
            else f"{sample.name} {sample.value:g}"
        )
    return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
