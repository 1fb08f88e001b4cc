"""From measurements to one summary per server and cell, with comparisons against direct.

Owns the reduction of repeats: each number is the median over repeats with its min..max. The
added latency of a server is computed within each repeat (server minus direct upstream, same
cell, measured back to back) and then reduced, as are ratios between servers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bench.overhead.cells import Measurement
from bench.overhead.summary import Spread

Pick = Callable[[Measurement], float]


def throughput(m: Measurement) -> float:
    return m.rps


def latency(name: str) -> Pick:
    return lambda m: m.latency_ms[name]


def ttft(name: str) -> Pick:
    return lambda m: m.ttft_ms[name] if m.ttft_ms else math.nan


@dataclass(frozen=True)
class CellSummary:
    server: str
    cell: str
    repeats: int
    rps: Spread
    p50: Spread
    p90: Spread
    p99: Spread
    ttft_p50: Spread
    ttft_p99: Spread
    added_p50: Spread | None  # vs direct; for streams, the total time
    added_p99: Spread | None
    added_ttft_p50: Spread | None
    added_ttft_p99: Spread | None
    server_cpu_ms: Spread
    upstream_cpu_ms: Spread | None
    errors: int
    error_samples: list[str]
    generator_cores_max: float
    others_cores_max: float

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, value in vars(self).items():
            out[name] = value.as_dict() if isinstance(value, Spread) else value
        return out


class Results:
    """Every measurement of a run, looked up by server, cell and repeat."""

    def __init__(self, measurements: Sequence[Measurement]) -> None:
        self.measurements = list(measurements)
        self._index = {(m.server, m.cell, m.repeat): m for m in measurements}

    def of(self, server: str, cell: str) -> list[Measurement]:
        return [m for m in self.measurements if m.server == server and m.cell == cell]

    def paired(self, server: str, other: str, cell: str, pick: Pick) -> list[tuple[float, float]]:
        """(server's value, other's value) for each repeat in which both ran the cell."""
        pairs = []
        for mine in self.of(server, cell):
            theirs = self._index.get((other, cell, mine.repeat))
            if theirs is not None:
                pairs.append((pick(mine), pick(theirs)))
        return pairs

    def difference(self, server: str, other: str, cell: str, pick: Pick) -> Spread | None:
        pairs = self.paired(server, other, cell, pick)
        return Spread.of([a - b for a, b in pairs]) if pairs else None

    def ratio(self, server: str, other: str, cell: str, pick: Pick) -> Spread | None:
        pairs = self.paired(server, other, cell, pick)
        return Spread.of([a / b for a, b in pairs if b > 0]) if pairs else None

    def summary(self, server: str, cell: str) -> CellSummary | None:
        runs = self.of(server, cell)
        if not runs:
            return None
        proxied = server != "direct"

        def spread(pick: Pick) -> Spread:
            return Spread.of([pick(m) for m in runs])

        def added(pick: Pick) -> Spread | None:
            return self.difference(server, "direct", cell, pick) if proxied else None

        upstream_cpu = [m.upstream_cpu_ms for m in runs if m.upstream_cpu_ms is not None]
        return CellSummary(
            server=server,
            cell=cell,
            repeats=len(runs),
            rps=spread(throughput),
            p50=spread(latency("p50")),
            p90=spread(latency("p90")),
            p99=spread(latency("p99")),
            ttft_p50=spread(ttft("p50")),
            ttft_p99=spread(ttft("p99")),
            added_p50=added(latency("p50")),
            added_p99=added(latency("p99")),
            added_ttft_p50=added(ttft("p50")),
            added_ttft_p99=added(ttft("p99")),
            server_cpu_ms=spread(lambda m: m.server_cpu_ms),
            upstream_cpu_ms=Spread.of(upstream_cpu) if upstream_cpu else None,
            errors=sum(m.errors for m in runs),
            error_samples=[s for m in runs for s in m.error_samples][:5],
            generator_cores_max=max(m.generator_cores for m in runs),
            others_cores_max=max(m.others_cores for m in runs),
        )
