"""The targets of issues 7 and 19, each with its measured value and a verdict.

Owns what each target is measured as. Verdicts are `MET`, `NOT MET`, or `NOT MEASURED` (with
why: a server that was not run, a cell with errors is still judged but says so). Comparisons
use per-repeat differences and ratios (see `aggregate`), reduced to their median. Where issue 19
tightened an issue-7 target (LiteLLM ratio, added TTFT), the tighter number is the one judged.
CPU targets read Modelyard's process tree: per request at plain c=16, and per streamed content
chunk at stream c=16 (CPU per stream over the run's chunks per stream).
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
    results: Results,
    idle_rss_mib: float | None,
    peers: dict[str, str],
    ran: set[str],
    chunks: int,
) -> list[Verdict]:
    """`peers`: what became of each peer (why it is not measured, when it was not)."""
    added_p50 = results.difference("modelyard", "direct", "plain c=1", latency("p50"))
    added_p99 = results.difference("modelyard", "direct", "plain c=1", latency("p99"))
    vs_bare = results.ratio("modelyard", "bare", "plain c=16", throughput)
    added_ttft = results.difference("modelyard", "direct", "stream c=1", ttft("p50"))
    rss = Spread.of([idle_rss_mib]) if idle_rss_mib is not None else None
    request_us = cpu_us(results, "plain c=16", per=1)
    chunk_us = cpu_us(results, "stream c=16", per=chunks)
    return [
        judge("added latency, c=1, p50 <= 1 ms", added_p50, at_most(added_p50, 1.0), " ms"),
        judge("added latency, c=1, p99 <= 3 ms", added_p99, at_most(added_p99, 3.0), " ms"),
        judge(
            "gateway CPU per request, plain c=16 <= 150 µs",
            request_us,
            at_most(request_us, 150.0),
            " µs",
        ),
        judge(
            "gateway CPU per streamed chunk, c=16 <= 7 µs", chunk_us, at_most(chunk_us, 7.0), " µs"
        ),
        versus_peer(results, "litellm", "LiteLLM", 50.0, peers, ran),
        versus_peer(results, "portkey", "Portkey", 5.0, peers, ran),
        judge(
            "requests/s at c=16 >= 40% of a bare uvicorn app",
            Spread(vs_bare.median * 100, vs_bare.low * 100, vs_bare.high * 100)
            if vs_bare
            else None,
            at_least(vs_bare, 0.40),
            "%",
        ),
        judge(
            "streaming added TTFT, c=1, p50 <= 0.5 ms",
            added_ttft,
            at_most(added_ttft, 0.5),
            " ms",
        ),
        judge("idle RSS of Modelyard <= 120 MiB", rss, at_most(rss, 120.0), " MiB"),
    ]


def versus_peer(
    results: Results, peer: str, label: str, times: float, peers: dict[str, str], ran: set[str]
) -> Verdict:
    ratio = results.ratio("modelyard", peer, "plain c=16", throughput)
    return judge(
        f"requests/s at plain c=16 >= {times:g}x {label}'s",
        ratio if peer in ran else None,
        at_least(ratio, times),
        "x",
        why=f"{label} {peers.get(peer, 'not run')}",
    )


def cpu_us(results: Results, cell: str, per: int) -> Spread | None:
    """Modelyard's CPU in µs per request of `cell`, divided by `per` (chunks per stream)."""
    runs = results.of("modelyard", cell)
    if not runs:
        return None
    return Spread.of([m.server_cpu_ms * 1000 / max(per, 1) for m in runs])


def soak_verdict(growth_percent: float | None) -> Verdict:
    value = Spread.of([growth_percent]) if growth_percent is not None else None
    return judge("soak RSS growth <= 5%", value, at_most(value, 5.0), "%")


def show(verdicts: list[Verdict]) -> str:
    width = max(len(v.target) for v in verdicts)
    measured = max(len(v.measured) for v in verdicts)
    return "\n".join(
        f"  {v.target:<{width}}  {v.measured:<{measured}}  {v.verdict}" for v in verdicts
    )
