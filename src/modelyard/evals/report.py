"""Reports of an evaluation run for terminals and files: the summary table, the JSON export (the
run, its summaries, comparisons and results) and the CSV export (one row per result).

Model names, tags, outputs and details are user data: the terminal table replaces control
characters (no escape sequence reaches the terminal), and the CSV neutralises cells a
spreadsheet would read as a formula. The JSON export is the faithful one.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from modelyard.evals.outcome import CaseResult
from modelyard.evals.stats import ALL_TAGS, Comparison, Summary
from modelyard.money import dollars

ALL_TAGS_LABEL = "(all)"
TABLE_COLUMNS = (
    "model",
    "deployment",
    "tag",
    "quality [95% interval]",
    "n",
    "$ per 1k cases",
    "p50 ms",
    "p95 ms",
    "TTFT p50 ms",
    "errors",
)
_TEXT_COLUMNS = 4
CSV_COLUMNS = tuple(field.name for field in dataclasses.fields(CaseResult))
# A spreadsheet evaluates a cell that starts with one of these as a formula.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def render_table(summaries: Sequence[Summary], comparisons: Sequence[Comparison]) -> str:
    """The summaries as an aligned text table (per tag, best quality first), then the pairs of
    models the sample cannot tell apart."""
    rows = [list(TABLE_COLUMNS)] + [_table_row(s) for s in ordered(summaries)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(TABLE_COLUMNS))]
    lines = ["  ".join(_aligned(row, widths)).rstrip() for row in rows]
    similar = [c for c in comparisons if not c.distinguishable]
    if similar:
        lines += ["", "Not distinguishable on this sample (the difference's 95% interval spans 0):"]
        lines += [f"  {_printable(tag_label(c.tag))}: {describe_comparison(c)}" for c in similar]
    return "\n".join(lines)


def ordered(summaries: Iterable[Summary]) -> list[Summary]:
    """Grouped by tag ("*" first), best quality first, then cheapest, then by name."""
    return sorted(
        summaries,
        key=lambda s: (s.tag != ALL_TAGS, s.tag, -_or_zero(s.quality.mean), _cost_key(s), s.model),
    )


def tag_label(tag: str) -> str:
    return ALL_TAGS_LABEL if tag == ALL_TAGS else tag


def cost_per_1k_cases(summary: Summary) -> str:
    """Dollars per thousand cases, exact to the micro-dollar."""
    if not math.isfinite(summary.cost_micros_per_case):
        return "-"
    return dollars(round(summary.cost_micros_per_case * 1000))


def quality_text(summary: Summary) -> str:
    q = summary.quality
    if not all(math.isfinite(v) for v in (q.mean, q.low, q.high)):
        return "-"
    return f"{q.mean:.3f} [{q.low:.3f}, {q.high:.3f}]"


def describe_comparison(comparison: Comparison) -> str:
    return (
        f"{_printable(comparison.a)} vs {_printable(comparison.b)}: difference "
        f"{comparison.difference:+.3f} [{comparison.low:+.3f}, {comparison.high:+.3f}]"
    )


def milliseconds(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.0f}"


def render_json(
    run: dict[str, Any],
    summaries: Sequence[Summary],
    comparisons: Sequence[Comparison],
    results: Sequence[CaseResult],
) -> str:
    """The whole run as one JSON document: `run`, `summaries`, `comparisons`, `results`."""
    document = {
        "run": run,
        "summaries": [summary_to_json(s) for s in summaries],
        "comparisons": [dataclasses.asdict(c) for c in comparisons],
        "results": [result_to_json(r) for r in results],
    }
    return orjson.dumps(document, option=orjson.OPT_INDENT_2).decode()


def summary_to_json(summary: Summary) -> dict[str, Any]:
    document = dataclasses.asdict(summary)
    document["cost_per_1k_cases"] = cost_per_1k_cases(summary)
    return document


def result_to_json(result: CaseResult) -> dict[str, Any]:
    """A result with the field names of `CaseResult` (the admin API's wire form)."""
    document = dataclasses.asdict(result)
    document["tags"] = list(result.tags)
    return document


def render_csv(results: Sequence[CaseResult]) -> str:
    """One row per result, the columns of `CaseResult`; tags joined by ";", `extra` as JSON."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for result in results:
        writer.writerow([_csv_cell(name, getattr(result, name)) for name in CSV_COLUMNS])
    return buffer.getvalue()


def _csv_cell(name: str, value: Any) -> str:
    if value is None:
        return ""
    if name == "tags":
        value = ";".join(value)
    elif name == "extra":
        value = orjson.dumps(value).decode()
    elif isinstance(value, bool | int | float):
        return str(value)
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def _table_row(summary: Summary) -> list[str]:
    return [
        _printable(summary.model),
        _printable(summary.deployment or "-"),
        _printable(tag_label(summary.tag)),
        quality_text(summary),
        str(summary.quality.n),
        cost_per_1k_cases(summary),
        milliseconds(summary.p50_latency_ms),
        milliseconds(summary.p95_latency_ms),
        milliseconds(summary.ttft_p50_ms),
        str(summary.errors),
    ]


def _aligned(row: list[str], widths: list[int]) -> list[str]:
    # Text columns to the left, numbers to the right.
    return [
        value.ljust(width) if column < _TEXT_COLUMNS else value.rjust(width)
        for column, (value, width) in enumerate(zip(row, widths, strict=True))
    ]


def _printable(text: str) -> str:
    """The text with every non-printable character (escape sequences, newlines) shown as "?"."""
    return "".join(ch if ch.isprintable() else "?" for ch in text)


def _or_zero(value: float) -> float:
    return value if math.isfinite(value) else 0.0


def _cost_key(summary: Summary) -> float:
    cost = summary.cost_micros_per_case
    return cost if math.isfinite(cost) else math.inf
