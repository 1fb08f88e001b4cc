"""The report of a run: Markdown tables (printed and saved as results.md) and results.json.

Owns presentation only; every number comes from `aggregate` and `targets`. Each cell shows the
median over repeats, with [min..max] when there was more than one. Latencies are in ms, CPU in
ms of CPU time per request (per stream for stream cells), RSS in MiB; the side-by-side table
gives every server's CPU in µs per request and per streamed chunk.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.overhead.aggregate import CellSummary, Results, throughput
from bench.overhead.cells import CELLS
from bench.overhead.servers import LABELS
from bench.overhead.summary import Spread
from bench.overhead.targets import Verdict, show


@dataclass
class ServerInfo:
    name: str
    rss_idle_mib: float
    rss_after_mib: float | None = None
    note: str = ""


@dataclass
class RunRecord:
    settings: dict[str, Any]
    generator: dict[str, Any]
    servers: dict[str, ServerInfo]
    peers: dict[str, str]  # name: "ran (version x)", "unavailable (why)" or "skipped (--no-x)"
    results: Results
    verdicts: list[Verdict] = field(default_factory=list)
    soak: dict[str, Any] | None = None

    def summaries(self) -> list[CellSummary]:
        found = []
        for cell in CELLS:
            for server in LABELS:
                summary = self.results.summary(server, cell.key)
                if summary is not None:
                    found.append(summary)
        return found


def cell(value: Spread | None, digits: int = 2) -> str:
    return "-" if value is None else value.show(digits)


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def plain_table(summaries: list[CellSummary]) -> str:
    header = ["server", "c", "req/s", "p50", "p90", "p99", "added p50", "added p99"]
    header += ["server CPU ms/req", "upstream CPU ms/req", "errors"]
    rows = [
        [
            LABELS[s.server],
            s.cell.split("=")[1],
            cell(s.rps, 0),
            cell(s.p50),
            cell(s.p90),
            cell(s.p99),
            cell(s.added_p50),
            cell(s.added_p99),
            cell(s.server_cpu_ms, 3),
            cell(s.upstream_cpu_ms, 3),
            str(s.errors),
        ]
        for s in summaries
        if s.cell.startswith("plain")
    ]
    return table(header, rows)


def stream_table(summaries: list[CellSummary]) -> str:
    header = ["server", "c", "streams/s", "TTFT p50", "TTFT p99", "total p50", "total p99"]
    header += ["added TTFT p50", "added TTFT p99", "added total p50", "server CPU ms/stream"]
    header += ["errors"]
    rows = [
        [
            LABELS[s.server],
            s.cell.split("=")[1],
            cell(s.rps, 0),
            cell(s.ttft_p50),
            cell(s.ttft_p99),
            cell(s.p50),
            cell(s.p99),
            cell(s.added_ttft_p50),
            cell(s.added_ttft_p99),
            cell(s.added_p50),
            cell(s.server_cpu_ms, 3),
            str(s.errors),
        ]
        for s in summaries
        if s.cell.startswith("stream")
    ]
    return table(header, rows)


def side_by_side_table(record: RunRecord) -> str:
    """Every server at plain c=16 and stream c=16: throughput, Modelyard's throughput over it
    (per-repeat ratio), and gateway CPU per request and per streamed chunk."""
    chunks = record.settings["chunks"]
    rows = []
    for server in LABELS:
        plain = record.results.summary(server, "plain c=16")
        stream = record.results.summary(server, "stream c=16")
        if plain is None and stream is None:
            continue
        ratio = record.results.ratio("modelyard", server, "plain c=16", throughput)
        per_chunk = None if stream is None else _scaled(stream.server_cpu_ms, 1000 / max(chunks, 1))
        rows.append(
            [
                LABELS[server],
                cell(plain.rps, 0) if plain else "-",
                cell(ratio) if server != "modelyard" else "1",
                cell(_scaled(plain.server_cpu_ms, 1000), 0) if plain else "-",
                cell(per_chunk, 1),
            ]
        )
    header = ["server", "req/s plain c=16", "Modelyard req/s over it"]
    header += ["CPU µs/request (plain c=16)", "CPU µs/chunk (stream c=16)"]
    return table(header, rows)


def _scaled(value: Spread, factor: float) -> Spread:
    return Spread(value.median * factor, value.low * factor, value.high * factor)


def rss_table(servers: dict[str, ServerInfo]) -> str:
    rows = [
        [
            LABELS[info.name],
            f"{info.rss_idle_mib:.1f}",
            "-" if info.rss_after_mib is None else f"{info.rss_after_mib:.1f}",
            info.note,
        ]
        for info in servers.values()
    ]
    return table(["server", "RSS before (idle) MiB", "RSS after MiB", "note"], rows)


def generator_lines(record: RunRecord, summaries: list[CellSummary]) -> list[str]:
    gen = record.generator
    rates = ", ".join(f"{name} {rate:,.0f} req/s" for name, rate in gen["calibration"].items())
    direct = [s for s in summaries if s.server == "direct" and s.cell.startswith("plain")]
    top = max((s.rps.high for s in direct), default=0.0)
    busiest = max((s.generator_cores_max for s in summaries), default=0.0)
    bound = [f"{LABELS[s.server]} {s.cell}" for s in summaries if s.generator_cores_max >= 0.9]
    limited = f" Cells where it used >= 0.9 core (so it may have been the limit): {bound}."
    return [
        f"- Load generator: `{gen['client']}` client on {gen['loop']} (calibration against the "
        f"bare upstream, plain c=16: {rates}).",
        f"- Its highest rate against the bare upstream: {top:,.0f} req/s; at most "
        f"{busiest:.2f} core used by it in any cell." + (limited if bound else ""),
    ]


def upstream_lines(summaries: list[CellSummary]) -> list[str]:
    lines = []
    for s in summaries:
        if s.server == "direct" and s.cell.startswith("plain"):
            lines.append(
                f"- Fake upstream hit directly, {s.cell}: {cell(s.rps, 0)} req/s, "
                f"{cell(s.server_cpu_ms, 3)} ms CPU per request."
            )
    return lines


def disturbance_lines(summaries: list[CellSummary]) -> list[str]:
    noisy = [s for s in summaries if s.others_cores_max > 0.1]
    worst = max((s.others_cores_max for s in summaries), default=0.0)
    line = f"- Other processes used at most {worst:.2f} core during a cell"
    if noisy:
        line += f" (over 0.1 core in {len(noisy)} of {len(summaries)} cells: a shared machine)"
    return [line + "."]


def markdown(record: RunRecord) -> str:
    summaries = record.summaries()
    settings = record.settings
    parts = [
        "# Gateway overhead (`python -m bench.overhead`)",
        "",
        f"{settings['repeats']} repeat(s) x {settings['seconds']:g} s per cell, "
        f"{settings['chunks']} chunks per stream, {settings['cores']} cores, "
        f"started {settings['started']}. LiteLLM: {record.peers.get('litellm', '-')}. "
        f"Portkey: {record.peers.get('portkey', '-')}.",
        "",
        *generator_lines(record, summaries),
        *upstream_lines(summaries),
        *disturbance_lines(summaries),
        "",
        "## Side by side (CPU of each server's process tree; streams of "
        f"{settings['chunks']} chunks)",
        "",
        side_by_side_table(record),
        "",
        "## Non-streamed chat completions (latency in ms; added = server minus direct)",
        "",
        plain_table(summaries),
        "",
        f"## Streams of {settings['chunks']} chunks (times in ms)",
        "",
        stream_table(summaries),
        "",
        "## Memory",
        "",
        rss_table(record.servers),
    ]
    errors = [s for s in summaries if s.errors]
    if errors:
        parts += ["", "## Errors", ""]
        parts += [f"- {LABELS[s.server]} {s.cell}: {s.errors}: {s.error_samples}" for s in errors]
    if record.soak is not None:
        parts += ["", "## Soak", "", soak_markdown(record.soak)]
    parts += ["", "## Targets", "", "```", show(record.verdicts), "```", ""]
    return "\n".join(parts)


def soak_markdown(soak: dict[str, Any]) -> str:
    rows = [
        [f"{point['percent']}%", str(point["done"]), f"{point['rss_mib']:.1f}"]
        for point in soak["rss"]
    ]
    head = (
        f"{soak['done']:,} of {soak['requested']:,} requests in {soak['elapsed_s']:.0f} s "
        f"({soak['kinds']}), {soak['errors']} errors; RSS {soak['baseline_mib']:.1f} MiB after "
        f"warm-up, growth {soak['growth_percent']:.1f}%."
    )
    return head + "\n\n" + table(["progress", "requests", "RSS MiB"], rows)


def write(out: Path, record: RunRecord) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    document = {
        "settings": record.settings,
        "generator": record.generator,
        "peers": record.peers,
        "servers": {name: vars(info) for name, info in record.servers.items()},
        "cells": [s.as_dict() for s in record.summaries()],
        "measurements": [m.as_dict() for m in record.results.measurements],
        "targets": [v.as_dict() for v in record.verdicts],
        "soak": record.soak,
    }
    json_path, md_path = out / "results.json", out / "results.md"
    json_path.write_text(json.dumps(_without_nan(document), indent=2, allow_nan=False))
    md_path.write_text(markdown(record))
    return json_path, md_path


def _without_nan(value: Any) -> Any:
    """NaN (a percentile of no samples) becomes null, which JSON has."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: _without_nan(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_without_nan(item) for item in value]
    return value
