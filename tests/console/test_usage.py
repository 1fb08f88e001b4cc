"""The Usage page in a real Chromium: calls made with the `openai` SDK on the bundled SmolLM2
show up in the uPlot chart and in the tables, every number equal to what `/admin/usage` answers
the admin key for the same range and grouping (by model and by key); a range before the calls
shows nothing, an inverted range says why; the CSV download equals the table (and the API's
CSV); whoever may not read usage finds no Usage section and gets the API's 403."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlencode

import openai
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Locator, Page, expect

from tests.console.conftest import Key, new_key, new_project, shot, sign_in
from tests.support.gateway import GatewayProcess
from tests.support.ledger_rows import wait_rows

MEASURES = (
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
    "errors",
    "error_rate",
    "latency_ms_avg",
)


@dataclass
class UsageWorld:
    project: str
    admin: Key  # the project's admin: reads its usage, one project
    callers: tuple[Key, Key]  # the two keys whose calls are on the page


@pytest.fixture(scope="module")
def world(console: GatewayProcess) -> UsageWorld:
    """Four billed calls on smollm2 from two keys (one of them refused by the engine's limits,
    recorded as an error) and one call on a model that does not exist (refused before
    admission, never billed)."""
    project = new_project(console, "usage")
    first, second = new_key(console, project, "developer"), new_key(console, project, "developer")
    for key, calls in ((first, 2), (second, 1)):
        client = openai.OpenAI(base_url=f"{console.base_url}/v1", api_key=key.key, max_retries=0)
        for _ in range(calls):
            client.chat.completions.create(
                model="smollm2", messages=[{"role": "user", "content": "Say hi."}], max_tokens=8
            )
    client = openai.OpenAI(base_url=f"{console.base_url}/v1", api_key=first.key, max_retries=0)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="smollm2", messages=[{"role": "user", "content": "hi"}], max_tokens=100_000
        )
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(
            model="no-such-model", messages=[{"role": "user", "content": "hi"}], max_tokens=8
        )
    wait_rows(console, project, 4)
    return UsageWorld(project, new_key(console, project, "admin"), (first, second))


@pytest.fixture()
def browser_errors(page: Page) -> Iterator[list[str]]:
    """What the page's console reports as errors (a CSP violation is one), and uncaught ones."""
    errors: list[str] = []

    def noted(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(f"{message.text} {message.location}")

    page.on("console", noted)
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield errors


def api_usage(console: GatewayProcess, **query: str) -> list[dict[str, object]]:
    answer = console.admin("GET", "/admin/usage?" + urlencode(query))
    assert answer.status_code == 200, answer.text
    rows: list[dict[str, object]] = answer.json()["data"]
    return rows


def cells(page: Page, table: str) -> list[list[str]]:
    rows: list[list[str]] = page.locator(f"#{table} tbody tr").evaluate_all(
        "rows => rows.map(r => [...r.children].map(c => c.textContent.trim()))"
    )
    return rows


def number(measure: str, text: str) -> object:
    """A measure as the page shows it, read back as the API writes it."""
    plain = text.replace(",", "").replace("$", "").removesuffix(" ms").removesuffix("%")
    if measure == "cost_usd":
        return Decimal(plain)
    if measure == "error_rate":
        return round(float(plain) / 100, 4)
    if measure == "latency_ms_avg":
        return float(plain)
    return int(plain)


def api_number(measure: str, value: object) -> object:
    return Decimal(str(value)) if measure == "cost_usd" else value


def assert_table_equals_api(
    page: Page, table: str, rows: list[dict[str, object]], columns: list[str]
) -> None:
    shown = cells(page, table)
    assert len(shown) == len(rows), (shown, rows)
    for row, on_page in zip(rows, shown, strict=True):
        assert on_page[: len(columns)] == [str(row[c]) for c in columns]
        for measure, text in zip(MEASURES, on_page[len(columns) :], strict=True):
            assert number(measure, text) == api_number(measure, row[measure]), (measure, row)


def legend_value(page: Page, series: int) -> Locator:
    """The value uPlot's legend shows for a series (0 is the days)."""
    return page.locator("#usage-chart .u-legend .u-series").nth(series).locator(".u-value")


def shown_range(page: Page) -> dict[str, str]:
    return {
        "since": page.locator("#usage-since").input_value(),
        "until": page.locator("#usage-until").input_value(),
    }


def test_the_chart_and_tables_show_the_calls_just_made_equal_to_admin_usage(
    console: GatewayProcess, world: UsageWorld, page: Page, browser_errors: list[str]
) -> None:
    sign_in(page, console, world.admin.key, then="/console/usage")

    expect(page.get_by_role("heading", level=1)).to_have_text("Usage")
    expect(page.locator("#usage-chart canvas").first).to_be_visible()
    expect(page.locator("#usage-chart .u-legend")).to_contain_text("smollm2-135m-instruct")
    expect(page.locator("#usage-scope")).to_contain_text(world.project)
    days = shown_range(page)
    today = datetime.now(UTC).date()
    assert days == {"since": str(today - timedelta(days=6)), "until": str(today)}

    by_model = api_usage(console, group_by="model", project=world.project, **days)
    assert [(r["model"], r["requests"], r["errors"]) for r in by_model] == [
        ("smollm2-135m-instruct", 4, 1)
    ]
    assert_table_equals_api(page, "usage-totals", by_model, ["model"])
    # Pointing at no day, the legend gives the range's totals, as the table does.
    expect(legend_value(page, 0)).to_have_text("whole range")
    expect(legend_value(page, 1)).to_have_text(cells(page, "usage-totals")[0][1])
    by_day = api_usage(console, group_by="day", project=world.project, **days)
    assert_table_equals_api(page, "usage-days", by_day, ["day"])
    shot(page, "usage")
    assert browser_errors == []


def test_grouped_by_key_every_number_equals_admin_usage(
    console: GatewayProcess, world: UsageWorld, page: Page, browser_errors: list[str]
) -> None:
    sign_in(page, console, world.admin.key, then="/console/usage")

    page.get_by_label("Group by", exact=True).select_option("key")
    page.get_by_role("button", name="Show").click()

    expect(page).to_have_url(re.compile(r"group_by=key"))
    legend = page.locator("#usage-chart .u-legend")
    for key in world.callers:
        expect(legend).to_contain_text(key.id)
    by_key = api_usage(console, group_by="key_id", project=world.project, **shown_range(page))
    assert sorted((r["key_id"], r["requests"]) for r in by_key) == sorted(
        [(world.callers[0].id, 3), (world.callers[1].id, 1)]
    )
    assert_table_equals_api(page, "usage-totals", by_key, ["key_id"])
    shot(page, "usage-by-key")
    assert browser_errors == []


def test_the_chart_switches_measure_in_place_and_keeps_it_in_the_address(
    console: GatewayProcess, world: UsageWorld, page: Page, browser_errors: list[str]
) -> None:
    sign_in(page, console, world.admin.key, then="/console/usage")
    expect(page.locator("#usage-chart canvas").first).to_be_visible()

    page.get_by_label("Chart", exact=True).select_option("prompt_tokens")

    expect(page.locator("#usage-chart-title")).to_contain_text("Prompt tokens per day")
    expect(page).to_have_url(re.compile(r"measure=prompt_tokens"))
    prompt_tokens = cells(page, "usage-totals")[0][1 + MEASURES.index("prompt_tokens")]
    expect(legend_value(page, 1)).to_have_text(prompt_tokens)
    page.reload()
    expect(page.get_by_label("Chart", exact=True)).to_have_value("prompt_tokens")
    expect(page.locator("#usage-chart-title")).to_contain_text("Prompt tokens per day")
    assert browser_errors == []


def test_a_range_before_the_calls_shows_nothing_and_an_inverted_one_says_why(
    console: GatewayProcess, world: UsageWorld, page: Page
) -> None:
    sign_in(page, console, world.admin.key, then="/console/usage")
    today = datetime.now(UTC).date()

    page.get_by_label("From", exact=True).fill(str(today - timedelta(days=40)))
    page.get_by_label("To", exact=True).fill(str(today - timedelta(days=30)))
    page.get_by_role("button", name="Show").click()

    expect(page.locator("#usage-empty")).to_have_text("No usage in this range.")
    expect(page.locator("#usage-totals")).to_have_count(0)
    expect(page.locator("#usage-chart")).to_have_count(0)

    page.get_by_label("From", exact=True).fill(str(today))
    page.get_by_label("To", exact=True).fill(str(today - timedelta(days=3)))
    with page.expect_response(lambda r: "/console/usage?" in r.url) as answered:
        page.get_by_role("button", name="Show").click()

    assert answered.value.status == 400
    expect(page.get_by_role("alert")).to_have_text(
        f"The range is empty: From ({today}) is after To ({today - timedelta(days=3)})."
    )
    # The form keeps what was typed, to be corrected.
    expect(page.get_by_label("From", exact=True)).to_have_value(str(today))


def test_the_csv_download_equals_the_table_and_the_api_csv(
    console: GatewayProcess, world: UsageWorld, page: Page, tmp_path: Path
) -> None:
    sign_in(page, console, world.admin.key, then="/console/usage?group_by=key")
    expect(page.locator("#usage-totals tbody tr")).to_have_count(2)

    with page.expect_download() as started:
        page.get_by_role("link", name="Download CSV", exact=True).click()
    download = started.value
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)

    assert download.suggested_filename.endswith(".csv")
    assert world.project in download.suggested_filename
    rows = list(csv.reader(io.StringIO(saved.read_text())))
    assert rows[0] == ["key_id", *MEASURES]
    table = cells(page, "usage-totals")
    assert len(rows) - 1 == len(table)
    for row, on_page in zip(rows[1:], table, strict=True):
        assert row[0] == on_page[0]
        for measure, value, text in zip(MEASURES, row[1:], on_page[1:], strict=True):
            written = Decimal(value) if measure == "cost_usd" else float(value)
            assert number(measure, text) == written, (measure, row)

    with page.expect_download() as started:
        page.get_by_role("link", name="Download CSV by day").click()
    daily = tmp_path / "daily.csv"
    started.value.save_as(daily)
    query = {"group_by": "day,key_id", "project": world.project, **shown_range(page)}
    api_csv = console.admin("GET", "/admin/usage?" + urlencode({**query, "format": "csv"}))
    assert daily.read_text() == api_csv.text


def test_on_a_phone_the_page_fits_the_width(
    console: GatewayProcess, world: UsageWorld, browser: Browser
) -> None:
    phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    try:
        page = phone.new_page()
        sign_in(page, console, world.admin.key, then="/console/usage")
        chart = page.locator("#usage-chart canvas").first
        expect(chart).to_be_visible()
        box = chart.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        shot(page, "usage-phone")
    finally:
        phone.close()


def test_whoever_may_not_read_usage_finds_no_section_and_gets_the_api_refusal(
    console: GatewayProcess, world: UsageWorld, page: Page
) -> None:
    auditor = new_key(console, world.project, "auditor")
    sign_in(page, console, auditor.key)
    expect(page.get_by_role("navigation", name="Sections")).to_be_visible()
    expect(page.get_by_role("link", name="Usage", exact=True)).to_have_count(0)

    answer = page.goto(f"{console.base_url}/console/usage")

    assert answer is not None and answer.status == 403
    expect(page.get_by_role("alert")).to_contain_text("usage.read")
    assert page.request.get(f"{console.base_url}/console/usage.csv").status == 403
