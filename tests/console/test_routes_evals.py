"""The console's Routes and Evaluations pages in a real Chromium, on the console gateway.

Routes: a route made through the admin API is shown with its strategy, weights and each
candidate's health; an owner changes a weight in the page and `/admin/routes` has it; a viewer
is offered no weight form and a forged change from its session is refused with 403.
Evaluations: a run stored through the API is listed, its page ranks the models as
`modelyard.evals.report` does with the numbers `stats` computes, and the plot is drawn."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from modelyard.evals.report import cost_per_1k_cases, ordered, quality_text, result_to_json
from modelyard.evals.stats import ALL_TAGS, summarize
from tests.console.conftest import ConsoleClient, new_key, new_project, shot, sign_in
from tests.support.eval_results import case_result
from tests.support.gateway import GatewayProcess

DEPLOYMENT = "smollm2-local"


@pytest.fixture()
def route_id(console: GatewayProcess) -> Iterator[str]:
    """A weighted route over the bundled model, removed afterwards (the gateway is shared)."""
    route = f"console-route-{uuid.uuid4().hex[:8]}"
    made = console.admin(
        "PUT",
        f"/admin/routes/{route}",
        {
            "strategy": "weighted",
            "candidates": [{"deployment": DEPLOYMENT, "weight": 3}],
            "languages": ["en"],
            "description": "SmolLM2 behind a route, for the console tests",
        },
    )
    assert made.status_code == 200, made.text
    yield route
    console.admin("DELETE", f"/admin/routes/{route}")


def weights_of(console: GatewayProcess, route: str) -> dict[str, int]:
    routes = console.admin("GET", "/admin/routes").json()["data"]
    (entry,) = [r for r in routes if r["id"] == route]
    return {c["deployment"]: c["weight"] for c in entry["candidates"]}


def test_an_owner_sees_weights_and_health_and_changes_a_weight(
    console: GatewayProcess, page: Page, route_id: str
) -> None:
    sign_in(page, console, console.admin_key or "", then="/console/routes")

    card = page.get_by_role("article", name=route_id)
    expect(card.get_by_text("SmolLM2 behind a route")).to_be_visible()
    expect(card.get_by_text("weighted", exact=True)).to_be_visible()
    row = card.get_by_role("row").filter(has=page.get_by_role("rowheader", name=DEPLOYMENT))
    expect(row.get_by_label(f"Weight of {DEPLOYMENT}")).to_have_value("3")
    expect(row.get_by_role("cell", name="100.0%")).to_be_visible()
    # An owner sees the router's view: health, the breaker and the region.
    expect(row.get_by_role("cell", name="ready", exact=True)).to_be_visible()
    expect(row.get_by_role("cell", name="closed", exact=True)).to_be_visible()
    expect(row.get_by_role("cell", name="local", exact=True)).to_be_visible()
    shot(page, "routes")

    card.get_by_label(f"Weight of {DEPLOYMENT}").fill("7")
    card.get_by_role("button", name=f"Save weights of {route_id}").click()

    expect(card.get_by_role("status")).to_have_text(f"Saved the weights of '{route_id}'.")
    assert weights_of(console, route_id) == {DEPLOYMENT: 7}
    expect(card.get_by_label(f"Weight of {DEPLOYMENT}")).to_have_value("7")
    # The rest of the definition was kept.
    routes = console.admin("GET", "/admin/routes").json()["data"]
    (entry,) = [r for r in routes if r["id"] == route_id]
    assert entry["strategy"] == "weighted" and entry["languages"] == ["en"]
    assert entry["description"] == "SmolLM2 behind a route, for the console tests"

    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    expect(page.get_by_role("article", name=route_id)).to_be_visible()
    shot(page, "routes-phone")


def test_a_bad_weight_is_refused_in_the_card_and_nothing_changes(
    console: GatewayProcess, page: Page, route_id: str
) -> None:
    sign_in(page, console, console.admin_key or "", then="/console/routes")
    card = page.get_by_role("article", name=route_id)
    weight = card.get_by_label(f"Weight of {DEPLOYMENT}")
    # The browser's own checks would stop these: the server must refuse them anyway.
    weight.evaluate("input => { input.removeAttribute('max'); input.removeAttribute('min'); }")
    weight.fill("2000000")

    with page.expect_response(lambda r: r.url.endswith(f"/{route_id}/weights")) as answered:
        card.get_by_role("button", name=f"Save weights of {route_id}").click()

    assert answered.value.status == 400
    expect(card.get_by_role("alert")).to_contain_text(f"The weight of '{DEPLOYMENT}' must be")
    assert weights_of(console, route_id) == {DEPLOYMENT: 3}


def test_a_viewer_is_offered_no_weight_form_and_a_forged_change_is_refused(
    console: GatewayProcess, page: Page, route_id: str
) -> None:
    viewer = new_key(console, new_project(console), "viewer")
    sign_in(page, console, viewer.key, then="/console/routes")

    card = page.get_by_role("article", name=route_id)
    row = card.get_by_role("row").filter(has=page.get_by_role("rowheader", name=DEPLOYMENT))
    expect(row.get_by_role("cell", name="3", exact=True)).to_be_visible()
    expect(row.get_by_role("cell", name="ready", exact=True)).to_be_visible()
    expect(page.get_by_role("spinbutton")).to_have_count(0)
    expect(page.get_by_role("button", name=f"Save weights of {route_id}")).to_have_count(0)
    # Breakers and load are the owners' (/admin/deployments): not shown, not asked for.
    expect(card.get_by_role("columnheader", name="Breaker")).to_have_count(0)

    client = ConsoleClient(console, viewer.key)
    forged = {"deployment": DEPLOYMENT, "weight": "9"}
    plain = client.post(f"/console/routes/{route_id}/weights", forged)
    swapped = client.http.post(
        f"/console/routes/{route_id}/weights",
        data={**forged, "csrf_token": client.csrf_token},
        headers={"hx-request": "true"},
    )
    client.close()

    assert plain.status_code == 403, plain.text
    assert swapped.status_code == 403, swapped.text
    assert "only an owner may do this" in swapped.text
    assert weights_of(console, route_id) == {DEPLOYMENT: 3}


# Evaluations


def stored_run(console: GatewayProcess, key: str, project: str) -> tuple[str, list[Any]]:
    """A run with two models on eight cases: `careful` scores better and costs more."""
    run_id = f"console-run-{uuid.uuid4().hex[:8]}"
    headers = {"authorization": f"Bearer {key}"}
    made = httpx.post(
        f"{console.base_url}/admin/evals",
        json={
            "id": run_id,
            "project": project,
            "suites": ["arithmetic"],
            "models": ["careful", "quick"],
        },
        headers=headers,
        timeout=30,
    )
    assert made.status_code == 201, made.text
    results = []
    for index in range(8):
        case = f"case-{index}"
        tags = ("sums",) if index % 2 else ("products",)
        results.append(
            case_result(
                "careful",
                case,
                score=1.0 if index != 3 else 0.0,
                run_id=run_id,
                tags=tags,
                cost_micros=900 + 10 * index,
                latency_ms=800.0 + index,
            )
        )
        results.append(
            case_result(
                "quick",
                case,
                score=1.0 if index % 3 == 0 else 0.0,
                run_id=run_id,
                tags=tags,
                cost_micros=120,
                latency_ms=200.0 + index,
            )
        )
    posted = httpx.post(
        f"{console.base_url}/admin/evals/{run_id}/results",
        json={"results": [result_to_json(r) for r in results]},
        headers=headers,
        timeout=30,
    )
    assert posted.status_code == 200, posted.text
    return run_id, results


def test_a_runs_page_ranks_models_as_the_report_does_and_plots_quality_against_cost(
    console: GatewayProcess, page: Page
) -> None:
    project = new_project(console)
    developer = new_key(console, project, "developer")
    run_id, results = stored_run(console, developer.key, project)
    expected = [s for s in ordered(summarize(results)) if s.tag == ALL_TAGS]
    assert [s.model for s in expected] == ["careful", "quick"]

    sign_in(page, console, developer.key, then="/console/evals")
    runs = page.get_by_role("table", name="1 run")
    expect(runs.get_by_role("link", name=run_id)).to_be_visible()
    expect(runs.get_by_role("cell", name="careful, quick")).to_be_visible()
    shot(page, "evals")

    runs.get_by_role("link", name=run_id).click()

    expect(page.get_by_role("heading", level=1)).to_have_text(f"Run {run_id}")
    board = page.get_by_role("table", name="All cases")
    rows = board.locator("tbody tr")
    expect(rows).to_have_count(2)
    for position, summary in enumerate(expected):
        row = rows.nth(position)
        expect(row.get_by_role("rowheader")).to_contain_text(summary.model)
        cells = row.get_by_role("cell")
        expect(cells.nth(0)).to_have_text(str(position + 1))
        expect(cells.nth(2)).to_contain_text(quality_text(summary))
        expect(cells.nth(3)).to_have_text(str(summary.quality.n))
        expect(cells.nth(4)).to_have_text(cost_per_1k_cases(summary))
    # Both models are on the Pareto front: the better one costs more.
    expect(board.get_by_text("Pareto front")).to_have_count(2)
    # The plot is drawn by uPlot on a canvas, with one legend entry per model.
    canvas = page.locator("#eval-plot canvas")
    expect(canvas).to_be_visible()
    assert canvas.evaluate("c => c.width") > 300
    drawn = canvas.evaluate(
        "c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        " let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n; }"
    )
    assert drawn > 1000
    legend = page.locator("#eval-plot .u-legend")
    expect(legend).to_contain_text("careful (Pareto front)")
    expect(legend).to_contain_text("quick (Pareto front)")
    expect(page.get_by_role("group").filter(has_text="sums")).to_have_count(1)
    shot(page, "eval-run")

    # On a phone the plot follows the page's width.
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_function(
        "() => document.querySelector('#eval-plot canvas').getBoundingClientRect().width < 390"
    )
    shot(page, "eval-run-phone")


def test_another_projects_run_is_not_found(console: GatewayProcess, page: Page) -> None:
    owner_project = new_project(console)
    developer = new_key(console, owner_project, "developer")
    run_id, _ = stored_run(console, developer.key, owner_project)
    stranger = new_key(console, new_project(console), "developer")

    sign_in(page, console, stranger.key, then="/console/evals")
    expect(page.get_by_role("link", name=run_id)).to_have_count(0)
    answer = page.goto(f"{console.base_url}/console/evals/{run_id}")

    assert answer is not None and answer.status == 404
    expect(page.get_by_role("alert")).to_contain_text(f"The eval run '{run_id}' does not exist")
