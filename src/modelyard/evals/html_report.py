"""The HTML report of an evaluation run: one self-contained file (inline CSS and SVG plots; no
script, no font, nothing fetched) that opens from disk.

Everything shown from the run (model names, tags, outputs, details) is user data: the template
escapes every value, and the page's content security policy forbids scripts and any fetch, so a
value that escaped escaping still could not run or call out. Only the SVG of `plots.py` is
inserted as markup.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jinja2
import orjson
from markupsafe import Markup

from modelyard.evals import report
from modelyard.evals.outcome import CaseResult
from modelyard.evals.plots import AXIS_LABELS, Axis, pareto_front, plot_svg, points_of
from modelyard.evals.stats import ALL_TAGS, Comparison, Summary

# Failed results listed at the end of the report, at most (the JSON export has them all).
MAX_FAILED_SHOWN = 300
OUTPUT_SHOWN_CHARS = 400


@dataclass(frozen=True)
class _Plot:
    caption: str
    svg: Markup


@dataclass(frozen=True)
class _TagSection:
    tag: str
    label: str
    plots: list[_Plot]
    rows: list[dict[str, str]]
    similar: list[str]


def render_html(
    run: dict[str, Any],
    summaries: Sequence[Summary],
    comparisons: Sequence[Comparison],
    results: Sequence[CaseResult],
) -> str:
    """The report as one HTML document: what the run was, then per tag ("all" first) the plots
    of quality against cost and p95 latency and the table, then the failed results."""
    by_tag: dict[str, list[Summary]] = {}
    for summary in report.ordered(summaries):
        by_tag.setdefault(summary.tag, []).append(summary)
    sections = [
        _section(index, tag, group, comparisons)
        for index, (tag, group) in enumerate(by_tag.items())
    ]
    failed = [r for r in results if r.error is not None or not r.passed]
    environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return environment.from_string(_TEMPLATE).render(
        run_id=str(run.get("id", "")),
        facts=_run_facts(run, results),
        sections=sections,
        failed=[_failed_row(r) for r in failed[:MAX_FAILED_SHOWN]],
        failed_total=len(failed),
    )


def _section(
    index: int, tag: str, summaries: list[Summary], comparisons: Sequence[Comparison]
) -> _TagSection:
    label = "all cases" if tag == ALL_TAGS else f"tag {tag}"
    plots, fronts = [], {}
    axes: tuple[Axis, ...] = ("cost", "latency")
    for axis in axes:
        points = points_of(summaries, axis)
        title = f"quality vs {AXIS_LABELS[axis]}, {label}"
        plots.append(_Plot(title, Markup(plot_svg(points, axis, title, f"plot-{index}-{axis}"))))
        front = pareto_front([(p.x, p.quality) for p in points])
        fronts[axis] = {points[i].label for i in front}
    rows = [_summary_row(s, fronts["cost"], fronts["latency"]) for s in summaries]
    similar = [
        report.describe_comparison(c) for c in comparisons if c.tag == tag and not c.distinguishable
    ]
    return _TagSection(tag, label, plots, rows, similar)


def _summary_row(summary: Summary, cost_front: set[str], latency_front: set[str]) -> dict[str, str]:
    return {
        "model": summary.model,
        "deployment": summary.deployment or "-",
        "route": summary.route or "",
        "quality": report.quality_text(summary),
        "method": summary.quality.method,
        "n": str(summary.quality.n),
        "cases": str(summary.cases),
        "errors": str(summary.errors),
        "cost": report.cost_per_1k_cases(summary),
        "p50": report.milliseconds(summary.p50_latency_ms),
        "p95": report.milliseconds(summary.p95_latency_ms),
        "ttft": report.milliseconds(summary.ttft_p50_ms),
        "front": ", ".join(
            name
            for name, front in (("cost", cost_front), ("latency", latency_front))
            if summary.model in front
        ),
    }


def _run_facts(run: dict[str, Any], results: Sequence[CaseResult]) -> list[tuple[str, str]]:
    def listed(key: str) -> str:
        value = run.get(key)
        return ", ".join(map(str, value)) if isinstance(value, list) else str(value or "-")

    facts = [
        ("run", str(run.get("id", "-"))),
        ("date", str(run.get("created_at", "-"))),
        ("suites", listed("suites")),
        ("models", listed("models")),
        ("repeats", str(run.get("repeats", "-"))),
        ("status", str(run.get("status", "-"))),
        ("project", str(run.get("project_id", "-"))),
        ("started by", str(run.get("created_by", "-"))),
        ("results", str(len(results))),
    ]
    if run.get("params"):
        facts.append(("parameters", orjson.dumps(run["params"], default=str).decode()))
    return facts


def _failed_row(result: CaseResult) -> dict[str, str]:
    output = result.output if result.output is not None else f"sha256 {result.output_sha256}"
    if len(output) > OUTPUT_SHOWN_CHARS:
        output = output[:OUTPUT_SHOWN_CHARS] + "…"
    return {
        "model": result.model,
        "case": result.case_id,
        "repeat": str(result.repeat),
        "tags": ", ".join(result.tags),
        "score": f"{result.score:.3f}" if math.isfinite(result.score) else "-",
        "why": result.error or result.detail,
        "output": output,
    }


_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy"
      content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Modelyard evaluation {{ run_id }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; max-width: 1400px; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.2rem; margin-top: 2.5rem; }
dl.facts { display: grid; grid-template-columns: max-content auto; gap: .2rem 1rem; }
dl.facts dt { font-weight: 600; } dl.facts dd { margin: 0; overflow-wrap: anywhere; }
.plots { display: flex; flex-wrap: wrap; gap: 1rem; }
figure { margin: 0; flex: 1 1 560px; max-width: 700px; }
figure svg { width: 100%; height: auto; display: block; }
table { border-collapse: collapse; margin-top: 1rem; font-size: .9rem; }
th, td { border-bottom: 1px solid #ddd; padding: .3rem .6rem; text-align: left;
         vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.output { font-family: ui-monospace, monospace; white-space: pre-wrap;
            overflow-wrap: anywhere; max-width: 40rem; }
.note { color: #555; font-size: .9rem; }
</style>
</head>
<body>
<h1>Evaluation run {{ run_id }}</h1>
<dl class="facts">
{% for name, value in facts %}<dt>{{ name }}</dt><dd>{{ value }}</dd>
{% endfor %}</dl>
<p class="note">Quality is the mean score with its 95% interval (Wilson for pass rates, bootstrap
otherwise). A model is on the Pareto front when no other model is both at least as cheap (or as
fast) and at least as good, and better on one of the two.</p>
{% for section in sections %}
<section class="tag" id="tag-{{ loop.index }}">
<h2>{{ section.label }}</h2>
<div class="plots">
{% for plot in section.plots -%}
<figure role="img" aria-label="{{ plot.caption }}">{{ plot.svg }}</figure>
{% endfor %}</div>
<table>
<thead><tr><th>model</th><th>deployment</th><th>quality [95% interval]</th><th>method</th>
<th>n</th><th>cases</th><th>errors</th><th>$ per 1k cases</th><th>p50 ms</th><th>p95 ms</th>
<th>TTFT p50 ms</th><th>Pareto front</th></tr></thead>
<tbody>
{% for row in section.rows %}<tr><td>{{ row.model }}</td>
<td>{{ row.deployment }}{% if row.route %} (route {{ row.route }}){% endif %}</td>
<td class="num">{{ row.quality }}</td><td>{{ row.method }}</td><td class="num">{{ row.n }}</td>
<td class="num">{{ row.cases }}</td><td class="num">{{ row.errors }}</td>
<td class="num">{{ row.cost }}</td><td class="num">{{ row.p50 }}</td>
<td class="num">{{ row.p95 }}</td><td class="num">{{ row.ttft }}</td><td>{{ row.front }}</td></tr>
{% endfor %}</tbody>
</table>
{% if section.similar %}<p>Not distinguishable on this sample (the difference's 95% interval
spans 0):</p>
<ul>{% for line in section.similar %}<li>{{ line }}</li>{% endfor %}</ul>
{% endif %}</section>
{% endfor %}
<h2>Failed results</h2>
{% if failed %}<details>
<summary>{{ failed_total }} failed or errored result{{ "s" if failed_total != 1 }}
{%- if failed_total > failed|length %} (the first {{ failed|length }} shown){% endif %}</summary>
<table>
<thead><tr><th>model</th><th>case</th><th>repeat</th><th>tags</th><th>score</th><th>why</th>
<th>output</th></tr></thead>
<tbody>
{% for row in failed %}<tr><td>{{ row.model }}</td><td>{{ row.case }}</td>
<td class="num">{{ row.repeat }}</td><td>{{ row.tags }}</td><td class="num">{{ row.score }}</td>
<td>{{ row.why }}</td><td class="output">{{ row.output }}</td></tr>
{% endfor %}</tbody>
</table>
</details>{% else %}<p>None.</p>{% endif %}
</body>
</html>
"""
