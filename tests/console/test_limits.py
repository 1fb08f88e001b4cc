"""The console's Limits page in a real Chromium, on a gateway of its own whose deployments have
a price (a fake OpenAI-compatible upstream on loopback: $0.40 in, $1.60 out per 1M tokens), so
spend is not zero: a budget set in the browser is the API's; after a call through the `openai`
SDK the page shows the ledger's cost against it; a key's limits are set on the key's page; a
project admin is not offered the owners' project limits, and a refusal shows its status."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest
from playwright.sync_api import Page, expect

from modelyard.testing.fake_upstream import FakeUpstream, completion_body
from modelyard.testing.scripted_server import JsonReply
from tests.console.conftest import new_key, new_project, shot, sign_in
from tests.remote.fixtures import remote_gateway_at
from tests.support.gateway import GatewayProcess
from tests.support.ledger_rows import wait_rows


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream().running() as fake:
        yield fake


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, upstream: FakeUpstream
) -> Iterator[GatewayProcess]:
    started = remote_gateway_at(tmp_path_factory.mktemp("priced"), upstream.base_url)
    yield started
    started.stop()


def test_a_monthly_budget_set_in_the_browser_shows_the_ledgers_spend_against_it(
    gateway: GatewayProcess, upstream: FakeUpstream, page: Page
) -> None:
    project = new_project(gateway, "limits")
    developer = new_key(gateway, project, "developer")
    sign_in(page, gateway, gateway.admin_key or "", then=f"/console/limits?project={project}")
    expect(page.get_by_text("No budget: spending is not capped.")).to_be_visible()

    page.get_by_label("Month budget (USD)").fill("0.05")
    page.get_by_label("Requests per minute").fill("120")
    page.get_by_role("button", name="Save limits").click()

    expect(page.get_by_role("status")).to_have_text("Limits saved.")
    limits = gateway.admin("GET", f"/admin/projects/{project}/limits").json()
    assert limits["budgets_usd"] == {"month": "0.050000"}
    assert limits["requests_per_minute"] == 120 and limits["tokens_per_minute"] is None

    # 20,000 tokens in and 1,000 out at $0.40 and $1.60 per 1M: $0.0096.
    usage = {"prompt_tokens": 20_000, "completion_tokens": 1_000, "total_tokens": 21_000}
    upstream.enqueue(JsonReply(completion_body(usage=usage)))
    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=developer.key, max_retries=0)
    client.chat.completions.create(
        model="acme-large", messages=[{"role": "user", "content": "Hi"}], max_tokens=1000
    )
    (record,) = wait_rows(gateway, project, 1)
    assert record["cost_micros"] == 9_600

    page.reload()
    month = page.locator("tr[data-period='month']")
    expect(month.locator("[data-spent-micros]")).to_have_attribute("data-spent-micros", "9600")
    expect(month).to_contain_text("$0.009600")
    expect(month).to_contain_text("$0.050000")
    expect(month).to_contain_text("19.2%")
    expect(month.locator("meter")).to_have_attribute("value", "9600")
    expect(month.locator("meter")).to_have_attribute("max", "50000")
    expect(month).to_contain_text("$0.040400")  # remaining
    shot(page, "limits")
    page.set_viewport_size({"width": 390, "height": 844})
    expect(month.locator("meter")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    shot(page, "limits-phone")


def test_a_keys_limits_are_set_on_its_page_by_a_project_admin(
    gateway: GatewayProcess, page: Page
) -> None:
    project = new_project(gateway, "limits")
    admin = new_key(gateway, project, "admin")
    developer = new_key(gateway, project, "developer")
    sign_in(page, gateway, admin.key, then=f"/console/limits?project={project}")

    # Project limits are the owners': a project admin sees them but is offered no form.
    expect(page.get_by_text("Only an owner sets a project's limits.")).to_be_visible()
    expect(page.get_by_label("Month budget (USD)")).to_have_count(0)
    page.locator(f"tr[data-key='{developer.id}']").get_by_role("link", name="Edit").click()

    expect(page.get_by_role("heading", level=1)).to_contain_text("Limits of the key")
    page.get_by_label("Day budget (USD)").fill("2.5")
    page.get_by_label("Requests at once").fill("3")
    page.get_by_role("button", name="Save limits").click()

    expect(page.get_by_role("status")).to_have_text("Limits saved.")
    expect(page.locator("tr[data-period='day']")).to_contain_text("$2.50")
    expect(page.locator("[data-limit='max_concurrent']")).to_have_text("3")
    key_limits = gateway.admin(
        "GET", f"/admin/projects/{project}/keys/{developer.id}/limits"
    ).json()
    assert key_limits["budgets_usd"] == {"day": "2.500000"}
    assert key_limits["max_concurrent"] == 3

    page.get_by_label("Day budget (USD)").fill("two dollars")
    page.get_by_role("button", name="Save limits").click()

    alert = page.get_by_role("alert")
    expect(alert).to_have_attribute("data-status", "400")
    expect(alert).to_contain_text("budgets_usd.day")
    expect(page.get_by_label("Day budget (USD)")).to_have_value("two dollars")
    unchanged = gateway.admin("GET", f"/admin/projects/{project}/keys/{developer.id}/limits")
    assert unchanged.json()["budgets_usd"] == {"day": "2.500000"}


def test_an_admin_cannot_change_its_own_keys_limits_nor_is_offered_to(
    gateway: GatewayProcess, page: Page
) -> None:
    project = new_project(gateway, "limits")
    admin = new_key(gateway, project, "admin")
    sign_in(page, gateway, admin.key, then=f"/console/limits/{project}/keys/{admin.id}")

    expect(page.get_by_text("does not let you change this key's limits")).to_be_visible()
    expect(page.locator("main form[method='post']")).to_have_count(0)
