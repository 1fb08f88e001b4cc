"""Numbers from samples: percentiles of one run, and the median and spread of repeats.

Owns how results are reduced. Percentiles are nearest-rank on the sorted samples. Repeats of a
cell reduce to their median with min..max. A comparison between two servers is made per repeat
(both ran back to back in the same repeat) and then reduced, not taken between the two medians:
the machine drifts between repeats by more than the smallest differences measured.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted samples (`fraction` in 0..1)."""
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def percentiles_ms(samples_s: Sequence[float]) -> dict[str, float]:
    ordered = sorted(samples_s)
    return {name: percentile(ordered, q) * 1000 for name, q in PERCENTILES.items()}


PERCENTILES = {"p50": 0.50, "p90": 0.90, "p99": 0.99}


@dataclass(frozen=True)
class Spread:
    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        present = [v for v in values if not math.isnan(v)]
        if not present:
            return cls(math.nan, math.nan, math.nan)
        return cls(statistics.median(present), min(present), max(present))

    def show(self, digits: int = 2) -> str:
        if math.isnan(self.median):
            return "-"
        if len({self.median, self.low, self.high}) == 1:
            return f"{self.median:.{digits}f}"
        return f"{self.median:.{digits}f} [{self.low:.{digits}f}..{self.high:.{digits}f}]"

    def as_dict(self) -> dict[str, float]:
        return {"median": self.median, "min": self.low, "max": self.high}
