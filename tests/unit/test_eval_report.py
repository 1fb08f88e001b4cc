"""The reports of an evaluation run, from hand-built results: the terminal table, the JSON and
CSV exports, the HTML report (escaping, self-containment, plots per tag) and the Pareto front."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from html.parser import HTMLParser

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelyard.evals.html_report import render_html
from modelyard.evals.outcome import CaseResult
from modelyard.evals.plots import pareto_front
from modelyard.evals.report import render_csv, render_json, render_table
from modelyard.evals.stats import Comparison, compare, summarize
from tests.support.eval_results import case_result

HOSTILE = "<script>alert(1)</script>"
HOSTILE_OUTPUT = '<img src=x onerror="alert(2)"> & </td></tr></table>'
RUN = {
    "id": "run-7",
    "project_id": "proj-a",
    "created_at": "2026-12-05T10:00:00Z",
    "created_by": "key-1",
    "suites": ["extraction", "classification"],
    "models": ["cheap", "dear", HOSTILE],
    "repeats": 1,
    "status": "finished",
    "params": {"temperature": 0},
}


def result(
    model: str,
    case_id: str,
    passed: bool,
    *,
    tags: tuple[str, ...] = ("extraction",),
    cost_micros: int = 0,
    latency_ms: float = 100.0,
    ttft_ms: float | None = None,
    error: str | None = None,
    output: str | None = "answer",
) -> CaseResult:
    return case_result(
        model,
        case_id,
        1.0 if passed else 0.0,
        run_id="run-7",
        tags=tags,
        latency_ms=latency_ms,
        ttft_ms=ttft_ms,
        prompt_tokens=12,
        completion_tokens=3,
        cost_micros=cost_micros,
        request_id=f"req-{model}-{case_id}",
        output=output,
        error=error,
    )


def cheap_results() -> list[CaseResult]:
    # 3 of 4 pass; latencies 100..400 ms; 20 micro-dollars a case.
    return [
        result("cheap", f"c{i}", i != 2, cost_micros=20, latency_ms=100.0 * (i + 1), ttft_ms=50.0)
        for i in range(4)
    ]


def table_line(table: str, model: str, tag: str) -> str:
    matching = [
        line for line in table.splitlines() if line.startswith(model) and f" {tag} " in line
    ]
    assert len(matching) == 1, table
    return matching[0]


def test_table_gives_quality_interval_cost_per_1k_cases_latency_and_errors() -> None:
    results = [*cheap_results(), result("dear", "c0", True, error="upstream_timeout")]
    table = render_table(summarize(results), [])

    cells = table_line(table, "cheap", "extraction").split()
    # Wilson interval of 3/4 at 95%: [0.3006, 0.9544]; $ per 1k cases: 1000 x 20 micro-dollars.
    assert cells[1:3] == ["cheap-dep", "extraction"]
    assert cells[3:] == ["0.750", "[0.301,", "0.954]", "4", "0.020000", "200", "400", "50", "0"]
    dear = table_line(table, "dear", "extraction").split()
    # The errored result scores 0, counts as an error, and has no TTFT.
    assert dear[3:6] == ["0.000", "[0.000,", "0.793]"]
    assert dear[-2:] == ["-", "1"]
    assert table_line(table, "cheap", "(all)")


def test_table_lists_the_tags_in_order_and_the_best_model_first() -> None:
    results = [
        *cheap_results(),
        *(result("dear", f"c{i}", True, cost_micros=900) for i in range(4)),
        result("cheap", "k0", True, tags=("classification",)),
    ]
    lines = render_table(summarize(results), []).splitlines()
    firsts = [line.split()[0:3:2] for line in lines[1:]]
    assert firsts == [
        ["dear", "(all)"],
        ["cheap", "(all)"],
        ["cheap", "classification"],
        ["dear", "extraction"],
        ["cheap", "extraction"],
    ]


def test_table_names_only_the_pairs_the_sample_cannot_tell_apart() -> None:
    close = [result("close", f"c{i}", i % 2 == 0) for i in range(4)]
    far = [result("far", f"c{i}", False) for i in range(40)]
    results = [*cheap_results(), *close, *far]
    comparisons = compare(results, "extraction")
    table = render_table(summarize(results), comparisons)

    assert "Not distinguishable" in table
    similar = table.split("Not distinguishable")[1]
    assert "cheap vs close: difference +0.250" in similar
    assert "far" not in similar


def test_table_shows_no_control_character_of_a_model_name() -> None:
    name = "evil\x1b[2J\x1b]0;owned\x07\nname"
    table = render_table(summarize([result(name, "c0", True)]), [])
    assert "\x1b" not in table and "\x07" not in table
    assert "evil?[2J?]0;owned??name" in table


def test_json_export_holds_the_run_summaries_comparisons_and_results() -> None:
    results = [*cheap_results(), result(HOSTILE, "c0", False, output=HOSTILE_OUTPUT)]
    summaries, comparisons = summarize(results), compare(results, "*")
    document = json.loads(render_json(RUN, summaries, comparisons, results))

    assert document["run"] == RUN
    assert [(s["model"], s["tag"]) for s in document["summaries"]] == [
        (s.model, s.tag) for s in summaries
    ]
    cheap_all = next(s for s in document["summaries"] if s["model"] == "cheap" and s["tag"] == "*")
    assert cheap_all["quality"]["method"] == "wilson"
    assert cheap_all["cost_per_1k_cases"] == "0.020000"
    assert document["comparisons"] == [dataclasses.asdict(c) for c in comparisons]
    # The results round-trip into the same values (tags as a list, as the admin API takes them).
    assert document["results"][0]["tags"] == ["extraction"]
    restored = [CaseResult(**{**r, "tags": tuple(r["tags"])}) for r in document["results"]]
    assert restored == results


def test_csv_export_has_one_row_per_result_and_defuses_formulas() -> None:
    results = [
        *cheap_results(),
        result("cheap", "f1", False, tags=("a", "b"), output='=HYPERLINK("http://x")'),
        result("cheap", "f2", False, output=None, error="-1 + 1"),
    ]
    rows = list(csv.DictReader(io.StringIO(render_csv(results))))

    assert len(rows) == len(results)
    assert rows[0]["model"] == "cheap" and rows[0]["latency_ms"] == "100.0"
    assert rows[0]["passed"] == "True" and rows[2]["passed"] == "False"
    assert rows[4]["tags"] == "a;b"
    assert rows[4]["output"] == '\'=HYPERLINK("http://x")'
    assert rows[5]["output"] == "" and rows[5]["error"] == "'-1 + 1"
    assert rows[0]["extra"] == "{}"


class _Elements(HTMLParser):
    """The elements of a document, their attributes, and the text of its table cells."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str | None]] = []
        self.cells: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes += attrs
        if tag == "td":
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None:
            self.cells.append("".join(self._cell))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


@pytest.fixture(scope="module")
def hostile_report() -> str:
    both = ("extraction", "fr")
    results = [
        *cheap_results(),
        *(
            result(HOSTILE, f"c{i}", i == 0, output=HOSTILE_OUTPUT, cost_micros=5, latency_ms=50)
            for i in range(4)
        ),
        *(
            result("dear", f"c{i}", True, cost_micros=900, latency_ms=900, tags=both)
            for i in range(4)
        ),
    ]
    comparisons = [c for tag in ("*", "extraction", "fr") for c in compare(results, tag)]
    return render_html(RUN, summarize(results), comparisons, results)


def test_html_report_escapes_model_names_and_outputs(hostile_report: str) -> None:
    elements = _Elements()
    elements.feed(hostile_report)

    assert "<script" not in hostile_report and "<img" not in hostile_report
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in hostile_report
    # The names and outputs are shown as the text they are.
    assert HOSTILE in elements.cells
    assert HOSTILE_OUTPUT in elements.cells
    assert "script" not in elements.tags and "img" not in elements.tags


def test_html_report_is_self_contained(hostile_report: str) -> None:
    elements = _Elements()
    elements.feed(hostile_report)

    assert not {"script", "link", "iframe", "object", "embed", "img"} & set(elements.tags)
    references = [value or "" for name, value in elements.attributes if name.endswith("href")]
    assert references and all(reference.startswith("#") for reference in references)
    assert not [name for name, _ in elements.attributes if name == "src"]
    assert "@import" not in hostile_report and "url(http" not in hostile_report
    assert "default-src 'none'" in hostile_report


def test_html_report_has_two_plots_per_tag_and_says_what_the_run_was(
    hostile_report: str,
) -> None:
    elements = _Elements()
    elements.feed(hostile_report)

    # All cases, extraction, fr: a cost plot and a latency plot each.
    assert elements.tags.count("svg") == 6
    assert hostile_report.count("<h2>") == 4  # three tags and the failed results
    for fact in ("run-7", "2026-12-05T10:00:00Z", "extraction, classification", "finished"):
        assert fact in hostile_report
    assert "cheap, dear, &lt;script&gt;" in hostile_report


def test_html_report_marks_the_pareto_front_in_its_tables(hostile_report: str) -> None:
    elements = _Elements()
    elements.feed(hostile_report)
    # The first table is "all cases": cheap (0.75, $0.02), hostile (0.25, $0.005), dear (1.0,
    # $0.9); each is the cheapest (and fastest) for its quality. On "fr" dear is alone.
    rows = [elements.cells[i : i + 12] for i in range(0, 36, 12)]
    assert [(row[0], row[-1]) for row in rows] == [
        ("dear", "cost, latency"),
        ("cheap", "cost, latency"),
        (HOSTILE, "cost, latency"),
    ]


def test_html_report_front_leaves_out_a_dominated_model() -> None:
    results = [
        *cheap_results(),
        # Worse and dearer than cheap on both axes.
        *(result("worse", f"c{i}", i == 0, cost_micros=50, latency_ms=900) for i in range(4)),
    ]
    elements = _Elements()
    elements.feed(render_html(RUN, summarize(results), [], results))
    fronts = {elements.cells[i]: elements.cells[i + 11] for i in range(0, 24, 12)}
    assert fronts == {"cheap": "cost, latency", "worse": ""}


def test_html_report_takes_dollar_signs_in_names_as_text_and_is_deterministic() -> None:
    # A "$...$" pair would be read as a (here invalid) formula by matplotlib's mathtext.
    results = [result("$\\notacommand{x}$ model", "c0", True), result("ok", "c0", False)]
    summaries = summarize(results)
    first = render_html(RUN, summaries, [], results)
    assert first == render_html(RUN, summaries, [], results)
    assert "$\\notacommand{x}$ model" in first


def test_html_report_says_which_pairs_are_not_distinguishable() -> None:
    results = [*cheap_results(), *(result("close", f"c{i}", i % 2 == 0) for i in range(4))]
    comparisons = compare(results, "extraction")
    assert not any(c.distinguishable for c in comparisons)
    report = render_html(RUN, summarize(results), comparisons, results)
    assert "cheap vs close: difference +0.250" in report.split("<h2>tag extraction</h2>")[1]
    # Comparisons on another tag are not listed under this one.
    other = Comparison("other", "x", "y", 0.0, -1.0, 1.0, distinguishable=False)
    assert "x vs y" not in render_html(RUN, summarize(results), [other], results)


def test_pareto_front_keeps_the_cheapest_point_for_each_level_of_quality() -> None:
    points = [(1.0, 0.5), (2.0, 0.7), (3.0, 0.6), (0.5, 0.4), (2.0, 0.5), (0.5, 0.4)]
    # (3, 0.6) is beaten by (2, 0.7); (2, 0.5) by (1, 0.5), as good and cheaper. Equal points
    # are both kept.
    assert pareto_front(points) == {0, 1, 3, 5}
    assert pareto_front([(0.0, 0.0)]) == {0}
    assert pareto_front([]) == set()
    assert pareto_front([(1.0, 0.9), (1.0, 0.8)]) == {0}


@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), max_size=12))
def test_pareto_front_members_do_not_beat_each_other_and_beat_every_other_point(
    raw: list[tuple[int, int]],
) -> None:
    points = [(float(x), float(q)) for x, q in raw]

    def beats(a: tuple[float, float], b: tuple[float, float]) -> bool:
        return a[0] <= b[0] and a[1] >= b[1] and a != b

    front = pareto_front(points)
    for i in front:
        assert not any(beats(points[j], points[i]) for j in front)
    for i in set(range(len(points))) - front:
        assert any(beats(points[j], points[i]) for j in front)
