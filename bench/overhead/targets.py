"""The targets of issue 7, each with its measured value and a verdict.

Owns what each target is measured as. Verdicts are `MET`, `NOT MET`, or `NOT MEASURED` (with
why: a server that was not run, a cell with errors is still judged but says so). Comparisons
use per-repeat differences and ratios (see `aggregate`), reduced to their median.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from bench.overhead.aggregate import Results, latency, throughput, ttft
from bench.overhead.summary import Spread


@dataclass(frozen=True)
class Verdict:
    target: str
    measured: str
    verdict: str  # "MET" | "NOT MET" | "NOT MEASURED"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def judge(target: str, value: Spread | None, ok: bool | None, unit: str, why: str = "") -> Verdict:
    if value is None or ok is None or math.isnan(value.median):
        return Verdict(target, why or "not measured", "NOT MEASURED")
    return Verdict(target, f"{value.show()}{unit}", "MET" if ok else "NOT MET")


def at_most(value: Spread | None, limit: float) -> bool | None:
    return None if value is None else value.median <= limit


def at_least(value: Spread | None, limit: float) -> bool | None:
    return None if value is None else value.median >= limit


def verdicts(
    results: Results, idle_rss_mib: float | None, litellm_note: str, ran: set[str]
) -> list[Verdict]:
    added_p50 = results.difference("modelyard", "direct", "plain c=1", latency("p50"))
    added_p99 = results.difference("modelyard", "direct", "plain c=1", latency("p99"))
    vs_litellm = results.ratio("modelyard", "litellm", "plain c=16", throughput)
    vs_bare = results.ratio("modelyard", "bare", "plain c=16", throughput)
    added_ttft = results.difference("modelyard", "direct", "stream c=1", ttft("p50"))
    rss = Spread.of([idle_rss_mib]) if idle_rss_mib is not None else None
    return [
        judge("added latency, c=1, p50 <= 1 ms", added_p50, at_most(added_p50, 1.0), " ms"),
        judge("added latency, c=1, p99 <= 3 ms", added_p99, at_most(added_p99, 3.0), " ms"),
        judge(
            "requests/s at c=16 >= 25x LiteLLM's",
            vs_litellm if "litellm" in ran else None,
            at_least(vs_litellm, 25.0),
            "x",
            why=f"LiteLLM {litellm_note}",
        ),
        judge(
            "requests/s at c=16 >= 40% of a bare uvicorn app",
            Spread(vs_bare.median * 100, vs_bare.low * 100, vs_bare.high * 100)
            if vs_bare
            else None,
            at_least(vs_bare, 0.40),
            "%",
        ),
        judge(
            "streaming added TTFT, c=1, p50 <= 1 ms", added_ttft, at_most(added_ttft, 1.0), " ms"
        ),
        judge("idle RSS of Modelyard <= 120 MiB", rss, at_most(rss, 120.0), " MiB"),
    ]


def soak_verdict(growth_percent: float | None) -> Verdict:
    value = Spread.of([growth_percent]) if growth_percent is not None else None
    return judge("soak RSS growth <= 5%", value, at_most(value, 5.0), "%")


def show(verdicts: list[Verdict]) -> str:
    width = max(len(v.target) for v in verdicts)
    measured = max(len(v.measured) for v in verdicts)
    return "\n".join(
        f"  {v.target:<{width}}  {v.measured:<{measured}}  {v.verdict}" for v in verdicts
    )
