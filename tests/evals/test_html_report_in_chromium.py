"""The HTML report opened from a file in headless Chromium: its plots render (every SVG laid out
with a real size, glyphs and markers resolved, pixels painted), it fetches nothing but itself,
and a hostile model name stays text. The screenshot is kept in the test's tmp dir.

Chromium is Debian's `chromium` (.ci/run installs it). Under CI=true a missing browser fails
the test; elsewhere it is skipped.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from modelyard.evals.html_report import render_html
from modelyard.evals.outcome import CaseResult
from modelyard.evals.stats import compare, summarize
from tests.support.eval_results import case_result
from tests.support.headless_chromium import chromium_executable, headless_page

HOSTILE = "<script>window.__pwned = 1</script><img src=x onerror='window.__pwned = 2'>"
WIDTH, HEIGHT = 1280, 2000

# For each <svg>: its laid-out size, how many of its shapes and glyphs have a non-zero box, and
# the references (`<use href="#...">`) that point to no element of the document.
MEASURE_PLOTS = """
Array.from(document.querySelectorAll("svg")).map(svg => {
  const box = svg.getBoundingClientRect();
  const drawn = Array.from(svg.querySelectorAll("path, use")).filter(shape => {
    const r = shape.getBoundingClientRect();
    return r.width > 0 || r.height > 0;
  }).length;
  const dangling = Array.from(svg.querySelectorAll("use")).filter(use => {
    const target = use.getAttribute("xlink:href") || use.getAttribute("href") || "";
    return !document.getElementById(target.slice(1));
  }).length;
  return {x: box.x + window.scrollX, y: box.y + window.scrollY,
          width: box.width, height: box.height, drawn, dangling};
})
"""
HOSTILE_CHECK = """
({
  pwned: window.__pwned === undefined ? null : window.__pwned,
  scripts: document.querySelectorAll("script").length,
  images: document.querySelectorAll("img").length,
  firstCells: Array.from(document.querySelectorAll("table"))[0].innerText,
})
"""


def results() -> list[CaseResult]:
    """Three models on two tags: a free one, a cheap one and a dear one (a spread wide enough
    for a log cost axis), graded scores on "qa" (bootstrap) and pass/fail on "extraction"."""
    models = {HOSTILE: (0, 40.0), "cheap": (15, 120.0), "dear": (4000, 700.0)}
    made = []
    for rank, (model, (cost, latency)) in enumerate(models.items()):
        for i in range(10):
            passed = (i + rank) % 4 != 0
            made.append(tagged_result(model, f"e{i}", "extraction", float(passed), cost, latency))
            graded = min(1.0, 0.3 + 0.25 * rank + 0.04 * i)
            made.append(tagged_result(model, f"q{i}", "qa", graded, cost, latency, binary=False))
    return made


def tagged_result(
    model: str, case_id: str, tag: str, score: float, cost: int, ms: float, binary: bool = True
) -> CaseResult:
    return case_result(
        model,
        case_id,
        score,
        run_id="run-ui",
        tags=(tag,),
        passed=score >= 0.5,
        binary=binary,
        latency_ms=ms + len(case_id),
        ttft_ms=ms / 4,
        prompt_tokens=20,
        completion_tokens=8,
        cost_micros=cost,
        request_id=None,
        output=f"<b>answer</b> to {case_id}",
    )


@pytest.fixture()
def chromium() -> str:
    executable = chromium_executable()
    if executable is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed (.ci/run installs it)")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    return executable


def test_report_opens_from_a_file_with_its_plots_rendered(chromium: str, tmp_path: Path) -> None:
    made = results()
    comparisons = [c for tag in ("*", "extraction", "qa") for c in compare(made, tag)]
    run = {
        "id": "run-ui",
        "created_at": "2026-12-05T12:00:00Z",
        "suites": ["extraction", "qa"],
        "models": [HOSTILE, "cheap", "dear"],
        "repeats": 1,
        "status": "finished",
    }
    report = tmp_path / "report.html"
    report.write_text(render_html(run, summarize(made), comparisons, made), encoding="utf-8")

    with headless_page(chromium, tmp_path / "profile") as page:
        page.open(report.as_uri(), WIDTH, HEIGHT)
        plots = page.evaluate(MEASURE_PLOTS)
        hostile = page.evaluate(HOSTILE_CHECK)
        requested = page.requested_urls()
        screenshot = page.screenshot(tmp_path / "report.png")
    print(f"screenshot of the report: {screenshot}")

    # Nothing but the file itself was fetched: no CDN, no font, no image.
    assert requested == [report.as_uri()]
    # Two plots (cost, latency) for each of "all cases", extraction and qa, each laid out at a
    # real size, its shapes and glyphs drawn, every glyph reference resolved.
    assert len(plots) == 6
    for plot in plots:
        assert plot["width"] > 300 and plot["height"] > 200, plot
        assert plot["drawn"] > 50, plot
        assert plot["dangling"] == 0, plot
    # The hostile model name is text in the table, not markup.
    assert hostile["pwned"] is None
    assert hostile["scripts"] == 0 and hostile["images"] == 0
    assert HOSTILE in hostile["firstCells"]

    image = Image.open(screenshot).convert("L")
    # The page's width less a scroll bar; taller than the window.
    assert WIDTH - 40 < image.width <= WIDTH and image.height > HEIGHT
    for plot in plots:
        box = (plot["x"], plot["y"], plot["x"] + plot["width"], plot["y"] + plot["height"])
        area = image.crop(tuple(round(v) for v in box))
        histogram = area.histogram()
        dark = sum(histogram[:160]) / (area.width * area.height)
        # Axes, ticks, labels, points and error bars: painted, not a blank box.
        assert dark > 0.01, (plot, dark)
