"""Plots of a run's summaries for the HTML report: quality (with its 95% interval) against cost
per 1k cases or against p95 latency, one plot per tag, with the Pareto front marked.

matplotlib draws on a bare `Figure` (no pyplot, so no global figure registry or backend is
touched) and writes SVG with the text as paths: the plots need no font and carry no text that
could be read as markup. Ids inside each SVG are salted per plot, so several plots inline in one
document never share an id, and the output is deterministic.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import matplotlib
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from modelyard.evals.stats import Summary

Axis = Literal["cost", "latency"]
AXIS_LABELS: dict[Axis, str] = {
    "cost": "cost per 1k cases ($)",
    "latency": "p95 latency (ms)",
}
# A spread this wide on the x axis is drawn on a logarithmic scale.
_LOG_SCALE_SPREAD = 100.0
_FRONT_COLOUR, _OTHER_COLOUR = "#1f6fb4", "#9a9a9a"
_SVG_START = re.compile(r"<svg\b")
_XML_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)


@dataclass(frozen=True)
class Point:
    label: str
    x: float
    quality: float
    low: float
    high: float


def pareto_front(points: Sequence[tuple[float, float]]) -> set[int]:
    """The indexes of the (x, quality) points no other point dominates, where lower x (cost,
    latency) and higher quality are better: a point is dominated when another is no worse on
    both and better on one. Equal points are all on the front."""
    return {
        i
        for i, (x, quality) in enumerate(points)
        if not any(
            other_x <= x and other_q >= quality and (other_x < x or other_q > quality)
            for other_x, other_q in points
        )
    }


def points_of(summaries: Sequence[Summary], axis: Axis) -> list[Point]:
    """The plottable points of these summaries (those with finite numbers)."""
    points = []
    for summary in summaries:
        x = (
            summary.cost_micros_per_case / 1000  # micro-dollars per case = dollars per 1k cases
            if axis == "cost"
            else summary.p95_latency_ms
        )
        q = summary.quality
        if all(math.isfinite(v) for v in (x, q.mean, q.low, q.high)):
            points.append(Point(summary.model, x, q.mean, q.low, q.high))
    return points


def plot_svg(points: Sequence[Point], axis: Axis, title: str, salt: str) -> str:
    """One plot as an `<svg>` element ready to inline in HTML (no XML prologue, no comments)."""
    figure = Figure(figsize=(6.4, 4.4), layout="constrained")
    ax = figure.add_subplot()
    front = pareto_front([(p.x, p.quality) for p in points])
    styles = ((True, _FRONT_COLOUR, "Pareto front"), (False, _OTHER_COLOUR, "dominated"))
    for on_front, colour, name in styles:
        chosen = [p for i, p in enumerate(points) if (i in front) == on_front]
        if chosen:
            ax.errorbar(
                [p.x for p in chosen],
                [p.quality for p in chosen],
                yerr=[[p.quality - p.low for p in chosen], [p.high - p.quality for p in chosen]],
                fmt="o",
                color=colour,
                capsize=3,
                label=name,
            )
    front_points = sorted((points[i] for i in front), key=lambda p: (p.x, p.quality))
    if len(front_points) > 1:
        ax.step(
            [p.x for p in front_points],
            [p.quality for p in front_points],
            where="post",
            linestyle="--",
            linewidth=1,
            color=_FRONT_COLOUR,
        )
    for point in points:
        # parse_math off: a model name with "$" is a name, not a formula.
        ax.annotate(
            point.label,
            (point.x, point.quality),
            xytext=(5, 5),
            textcoords="offset points",
            fontsize=8,
            parse_math=False,
        )
    _scale_x(ax, [p.x for p in points])
    ax.set_ylim(-0.02, 1.05)
    ax.set_xlabel(AXIS_LABELS[axis])
    ax.set_ylabel("quality (mean, 95% interval)")
    ax.set_title(title, fontsize=10, parse_math=False)
    ax.grid(True, linewidth=0.3)
    if points:
        ax.legend(fontsize=8, loc="lower right")
    return _svg_of(figure, salt)


def _scale_x(ax: Axes, xs: list[float]) -> None:
    positive = [x for x in xs if x > 0]
    if positive and max(positive) / min(positive) >= _LOG_SCALE_SPREAD:
        if len(positive) == len(xs):
            ax.set_xscale("log")
        else:
            # Free (local) models cost 0, which a log scale cannot show.
            ax.set_xscale("symlog", linthresh=min(positive))
        return
    right = max(xs, default=1.0) * 1.15 or 1.0
    # A little room left of 0, so a free model's point and error bar are not cut by the frame.
    ax.set_xlim(left=-0.04 * right, right=right)


def _svg_of(figure: Figure, salt: str) -> str:
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "path", "svg.hashsalt": salt}):
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    start = _SVG_START.search(text)
    if start is None:
        raise ValueError("matplotlib wrote no <svg> element")
    return _XML_COMMENT.sub("", text[start.start() :])
