"""The console's Catalog page in a real Chromium over a real gateway: the cards show what
`/v1/models` lists for the signed-in key (its allowlist included) with licence, context window,
price, capabilities and health; a route shows as a route card with its candidates; filters
narrow the cards through htmx and, as a plain GET, without JavaScript; two to four cards compare
side by side and any other number is a 400; what the API refuses the page refuses too."""

from __future__ import annotations

import html
import re
import uuid
from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect
from starlette.datastructures import QueryParams

from modelyard.api.console.catalog_listing import Filters, comparison, listing_of, usd
from modelyard.errors import InvalidParameter
from tests.console.conftest import ConsoleClient, Key, new_key, new_project, shot, sign_in
from tests.support.gateway import GatewayProcess

SMOLLM2 = "smollm2-135m-instruct"
MINILM = "all-minilm-l6-v2"
COUNT = re.compile(r"^(\d+) of (\d+)")


@pytest.fixture(scope="module")
def route(console: GatewayProcess) -> Iterator[str]:
    """A route over the bundled SmolLM2 deployment, created through /admin/routes."""
    route_id = f"catalog-route-{uuid.uuid4().hex[:6]}"
    made = console.admin(
        "PUT",
        f"/admin/routes/{route_id}",
        {
            "strategy": "priority",
            "candidates": [{"deployment": "smollm2-local", "weight": 1}],
            "description": "A fallback list for the catalog tests.",
        },
    )
    assert made.status_code in (200, 201), made.text
    yield route_id
    console.admin("DELETE", f"/admin/routes/{route_id}")


@pytest.fixture(scope="module")
def developer(console: GatewayProcess) -> Key:
    return new_key(console, new_project(console, "catalog"), "developer")


def listed_by_api(console: GatewayProcess, key: str, project: str | None = None) -> set[str]:
    """What `/v1/models` lists for `key` (acting in `project`, if named)."""
    headers = {"authorization": f"Bearer {key}"}
    if project is not None:
        headers["x-modelyard-project"] = project
    answer = httpx.get(f"{console.base_url}/v1/models", headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    return {entry["id"] for entry in answer.json()["data"]}


def cards_shown(page: Page) -> set[str]:
    return set(page.locator("li.listing").evaluate_all("els => els.map(e => e.dataset.model)"))


def counted(page: Page) -> tuple[int, int]:
    found = COUNT.match(page.locator("#cards .count").inner_text().strip())
    assert found is not None
    return int(found.group(1)), int(found.group(2))


def test_the_admin_picks_a_project_and_sees_smollm2_and_a_route_with_its_candidates(
    console: GatewayProcess, page: Page, route: str, developer: Key
) -> None:
    sign_in(page, console, console.admin_key or "", then="/console/catalog")
    # The owner has every project: the picker offers them, the catalog shows the chosen one's.
    page.get_by_label("Project").select_option(developer.project)
    page.get_by_role("button", name="Show").click()
    expect(page).to_have_url(re.compile(rf"project={developer.project}"))

    smollm2 = page.locator(f"li.listing[data-model='{SMOLLM2}']")
    expect(smollm2.get_by_role("heading", level=2)).to_have_text("SmolLM2 135M Instruct")
    expect(smollm2).to_contain_text("HuggingFaceTB")
    expect(smollm2).to_contain_text("apache-2.0")
    expect(smollm2).to_contain_text("8,192 tokens")
    expect(smollm2).to_contain_text("2,048 tokens")
    expect(smollm2.locator(".price").first).to_have_text("$0.00 in · $0.00 out")
    expect(smollm2).to_contain_text("Runs in the gateway process")
    expect(smollm2.locator(".deployments")).to_contain_text("smollm2-local")
    expect(smollm2.locator(".deployments .badge")).to_have_text("ready")
    expect(smollm2.locator(".badge.native", has_text="Chat")).to_have_text("Chat · native")
    expect(smollm2.locator(".badge.enforced", has_text="Tools")).to_have_text(
        "Tools · gateway-enforced"
    )

    routed = page.locator(f"li.listing[data-model='{route}']")
    expect(routed.locator(".listing-head .badge")).to_have_text("route")
    expect(routed).to_contain_text("priority, up to 1 attempt")
    expect(routed.locator(".candidates li")).to_have_text(["smollm2-local (weight 1)"])
    expect(routed.locator(".badge.route", has_text="Tools")).to_have_text("Tools · every candidate")

    shown, total = counted(page)
    assert shown == total == len(cards_shown(page))
    assert cards_shown(page) == listed_by_api(console, console.admin_key or "", developer.project)
    assert route in cards_shown(page)
    shot(page, "catalog")


def test_a_project_key_sees_exactly_what_v1_models_lists_for_it(
    console: GatewayProcess, page: Page, route: str, developer: Key
) -> None:
    sign_in(page, console, developer.key, then="/console/catalog")

    expect(page.get_by_text(f"Project {developer.project}")).to_be_visible()
    expect(page.get_by_label("Project")).to_have_count(0)  # one project: nothing to pick
    smollm2 = page.locator(f"li.listing[data-model='{SMOLLM2}']")
    expect(smollm2).to_contain_text("apache-2.0")
    expect(smollm2).to_contain_text("8,192 tokens")
    expect(page.locator(f"li.listing[data-model='{route}']")).to_be_visible()
    assert cards_shown(page) == listed_by_api(console, developer.key)


def test_a_key_limited_to_one_model_does_not_see_the_others(
    console: GatewayProcess, page: Page, route: str, developer: Key
) -> None:
    limited = new_key(console, developer.project, "developer", models=[SMOLLM2])
    sign_in(page, console, limited.key, then="/console/catalog")

    expect(page.locator("li.listing")).to_have_count(1)
    assert cards_shown(page) == listed_by_api(console, limited.key) == {SMOLLM2}
    assert counted(page) == (1, 1)
    # Comparing it with a model the key may not see is refused as the API refuses it.
    client = ConsoleClient(console, limited.key)
    refused = client.http.get(
        "/console/catalog/compare", params=[("model", SMOLLM2), ("model", MINILM)]
    )
    assert refused.status_code == 404, refused.text
    assert f"The model '{MINILM}' does not exist" in html.unescape(refused.text)


def test_filters_narrow_the_cards_in_place_and_the_url_follows(
    console: GatewayProcess, page: Page, route: str, developer: Key
) -> None:
    sign_in(page, console, developer.key, then="/console/catalog")
    expect(page.locator(f"li.listing[data-model='{MINILM}']")).to_be_visible()
    _, total = counted(page)
    page.evaluate("window.catalogMarker = 'same page'")
    page.get_by_label("Compare all-MiniLM-L6-v2").check()

    page.get_by_label("Embeddings").check()

    expect(page.locator("li.listing")).to_have_count(1)
    expect(page.locator(f"li.listing[data-model='{MINILM}']")).to_be_visible()
    expect(page.locator("#cards .count")).to_contain_text(f"1 of {total}")
    expect(page).to_have_url(re.compile(r"capability=embeddings"))
    # htmx swapped the cards: the page itself was never reloaded, and the tick to compare stayed.
    assert page.evaluate("window.catalogMarker") == "same page"
    expect(page.get_by_label("Compare all-MiniLM-L6-v2")).to_be_checked()
    # Back goes to the unfiltered page, whole (htmx asks the server for it again).
    page.go_back()
    expect(page.locator("li.listing")).to_have_count(total)
    expect(page.locator("form#filters")).to_have_count(1)
    expect(page.get_by_label("Embeddings")).not_to_be_checked()
    page.go_forward()
    expect(page.locator("li.listing")).to_have_count(1)

    page.get_by_label("Embeddings").uncheck()
    expect(page.locator("li.listing")).to_have_count(total)
    page.get_by_label("Search").fill("smol")
    expect(page.locator(f"li.listing[data-model='{MINILM}']")).to_have_count(0)
    expect(page.locator(f"li.listing[data-model='{SMOLLM2}']")).to_be_visible()
    expect(page).to_have_url(re.compile(r"q=smol"))
    shown, total_after = counted(page)
    assert total_after == total and shown == len(cards_shown(page)) < total

    page.get_by_label("Provider").select_option("llamacpp")
    page.get_by_label("Max input price (USD per 1M tokens)").fill("0")
    page.get_by_label("Max input price (USD per 1M tokens)").press("Enter")
    expect(page).to_have_url(re.compile(r"max_price=0"))
    expect(page.locator(f"li.listing[data-model='{SMOLLM2}']")).to_be_visible()
    shot(page, "catalog-filtered")


def test_filters_work_as_a_plain_get_without_javascript(
    console: GatewayProcess, browser: Browser, developer: Key
) -> None:
    context = browser.new_context(
        java_script_enabled=False, viewport={"width": 1280, "height": 900}
    )
    try:
        page = context.new_page()
        sign_in(page, console, developer.key, then="/console/catalog")
        page.get_by_label("Embeddings").check()
        page.get_by_role("button", name="Apply").click()

        expect(page).to_have_url(re.compile(r"/console/catalog\?.*capability=embeddings"))
        expect(page.locator("li.listing")).to_have_count(1)
        expect(page.locator(f"li.listing[data-model='{MINILM}']")).to_be_visible()
        expect(page.get_by_label("Embeddings")).to_be_checked()
    finally:
        context.close()


def test_a_filtered_url_answers_only_the_matching_cards(
    console: GatewayProcess, route: str, developer: Key
) -> None:
    client = ConsoleClient(console, developer.key)
    query = {"project": developer.project, "provider": "sentence_transformers"}

    whole = client.http.get("/console/catalog", params=query)
    fragment = client.http.get("/console/catalog", params=query, headers={"hx-request": "true"})

    for answer in (whole, fragment):
        assert answer.status_code == 200, answer.text
        assert set(re.findall(r'data-model="([^"]+)"', answer.text)) == {MINILM}
    assert whole.text.lstrip().startswith("<!doctype html>")
    assert 'id="filters"' in whole.text
    # Nothing inline for the CSP to block: no script body, no style attribute, no handler.
    assert not re.search(r"<script(?![^>]*\bsrc=)|\sstyle=|\son\w+=", whole.text)
    assert "<html" not in fragment.text and 'id="filters"' not in fragment.text
    assert re.search(r"<strong>1 of \d+</strong>", fragment.text)

    tools = client.http.get(
        "/console/catalog", params={"capability": "tools"}, headers={"hx-request": "true"}
    )
    models = set(re.findall(r'data-model="([^"]+)"', tools.text))
    assert SMOLLM2 in models and route in models and MINILM not in models

    nowhere = client.http.get("/console/catalog", params={"region": "mars-1"})
    assert "<strong>0 of" in nowhere.text and "Nothing matches these filters" in nowhere.text


def test_a_bad_filter_is_a_400_naming_it(console: GatewayProcess, developer: Key) -> None:
    client = ConsoleClient(console, developer.key)

    price = client.http.get("/console/catalog", params={"max_price": "cheap"})
    capability = client.http.get(
        "/console/catalog", params={"capability": "telepathy"}, headers={"hx-request": "true"}
    )

    assert price.status_code == 400
    assert "The maximum price &#39;cheap&#39; is not an amount" in price.text
    assert capability.status_code == 400
    assert 'data-status="400"' in capability.text and "telepathy" in capability.text


def test_a_project_that_is_not_the_keys_is_refused_not_shown(
    console: GatewayProcess, developer: Key
) -> None:
    other = new_project(console, "catalog")
    client = ConsoleClient(console, developer.key)

    refused = client.http.get("/console/catalog", params={"project": other})

    assert refused.status_code == 403, refused.text
    assert "data-model=" not in refused.text


def test_two_cards_compare_side_by_side_with_differences_marked(
    console: GatewayProcess, page: Page, route: str, developer: Key
) -> None:
    sign_in(page, console, developer.key, then="/console/catalog")
    page.get_by_label("Compare SmolLM2 135M Instruct").check()
    page.get_by_label("Compare all-MiniLM-L6-v2").check()
    page.get_by_label(f"Compare {route}").check()
    page.get_by_role("button", name="Compare ticked").click()

    expect(page).to_have_url(re.compile(r"/console/catalog/compare\?"))
    table = page.locator("table.compare")
    expect(table.locator("thead th")).to_have_count(4)
    expect(table.locator("thead th").nth(1)).to_contain_text("SmolLM2 135M Instruct")
    expect(table.locator("thead th").nth(3)).to_contain_text(route)
    kind = table.locator("tbody tr", has=page.get_by_role("rowheader", name="Kind"))
    expect(kind).to_have_class(re.compile("differs"))
    expect(kind.locator("td")).to_have_text(["model", "model", "route"])
    embeddings = table.locator("tbody tr", has=page.get_by_role("rowheader", name="Embeddings"))
    expect(embeddings.locator("td")).to_have_text(["no", "native", "no"])
    regions = table.locator("tbody tr", has=page.get_by_role("rowheader", name="Regions"))
    expect(regions).not_to_have_class(re.compile("differs"))
    expect(regions.locator("td")).to_have_text(["local", "local", "local"])
    candidates = table.locator(
        "tbody tr", has=page.get_by_role("rowheader", name="Route candidates")
    )
    expect(candidates.locator("td").nth(2)).to_have_text("smollm2-local (weight 1)")
    shot(page, "catalog-compare")


def test_comparing_fewer_than_two_or_more_than_four_is_a_400(
    console: GatewayProcess, page: Page, developer: Key
) -> None:
    sign_in(page, console, developer.key, then="/console/catalog")
    page.get_by_label("Compare SmolLM2 135M Instruct").check()
    page.get_by_role("button", name="Compare ticked").click()

    expect(page.get_by_role("alert")).to_contain_text("Tick 2 to 4 models or routes to compare")
    expect(page.get_by_role("heading", level=1)).to_have_text("400")

    client = ConsoleClient(console, developer.key)
    five = [("model", name) for name in ("a", "b", "c", "d", "e")]
    assert client.http.get("/console/catalog/compare", params=five).status_code == 400
    assert client.http.get("/console/catalog/compare").status_code == 400


def test_the_catalog_reads_at_phone_width(
    console: GatewayProcess, browser: Browser, route: str, developer: Key
) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844})
    try:
        page = context.new_page()
        sign_in(page, console, developer.key, then="/console/catalog")
        expect(page.locator(f"li.listing[data-model='{SMOLLM2}']")).to_be_visible()
        overflow = page.evaluate("document.documentElement.scrollWidth")
        assert overflow <= 390, overflow
        first, second = page.locator("li.listing").all()[:2]
        # One card per row: the second card sits below the first, not beside it.
        assert second.bounding_box()["y"] > first.bounding_box()["y"]  # type: ignore[index]
        shot(page, "catalog-phone")
    finally:
        context.close()


# Pure shaping and filtering, without a gateway.

ENTRY = {
    "id": "m-1",
    "name": "Model One",
    "type": "base",
    "owned_by": "Acme",
    "license": "mit",
    "description": "Good at French poetry",
    "aliases": ["one"],
    "context_window": 1000,
    "max_output_tokens": 100,
    "languages": ["en", "fr"],
    "capability_sources": {"chat": "model", "tools": "gateway"},
    "deployments": [
        {
            "id": "d-eu",
            "provider": "openai",
            "region": "eu",
            "price_per_1m_tokens_usd": {"input": "0.4", "output": "1.6"},
            "data_policy": {"retention_days": 30, "used_for_training": False, "summary": ""},
            "health": "ready",
        },
        {
            "id": "d-us",
            "provider": "azure",
            "region": "us",
            "price_per_1m_tokens_usd": {"input": "0.35", "output": "1.6"},
            "data_policy": {"retention_days": 30, "used_for_training": False, "summary": ""},
            "health": "unavailable",
        },
    ],
}


def test_prices_show_every_digit_and_at_least_cents() -> None:
    assert usd(Decimal("0")) == "$0.00"
    assert usd(Decimal("0.4")) == "$0.40"
    assert usd(Decimal("0.075")) == "$0.075"
    assert usd(Decimal("15")) == "$15.00"


def test_a_listing_with_differing_prices_says_so_and_filters_by_its_cheapest() -> None:
    listing = listing_of(ENTRY)
    assert listing.prices_differ and listing.price_text.startswith("differs")
    assert listing.data_policy_text == "Kept 30 days; never trained on."
    assert listing.regions == ("eu", "us") and listing.providers == ("azure", "openai")

    def shown(**query: str | list[str]) -> bool:
        pairs = [(k, v) for k, vs in query.items() for v in ([vs] if isinstance(vs, str) else vs)]
        return Filters.from_query(QueryParams(pairs)).matches(listing)

    assert shown(max_price="0.35") and not shown(max_price="0.3")
    assert shown(q="french POETRY") and not shown(q="french prose")
    assert shown(q="one") and shown(q="acme")
    assert shown(capability=["chat", "tools"]) and not shown(capability=["chat", "vision"])
    assert shown(language="fr") and not shown(language="de")
    assert shown(region="us", provider="azure") and not shown(provider="bedrock")


@pytest.mark.parametrize(
    ("query", "param"),
    [({"max_price": "-1"}, "max_price"), ({"max_price": "NaN"}, "max_price"),
     ({"capability": "x"}, "capability"), ({"q": "x" * 201}, "q")],
)  # fmt: skip
def test_a_bad_filter_names_its_parameter(query: dict[str, str], param: str) -> None:
    with pytest.raises(InvalidParameter) as refused:
        Filters.from_query(QueryParams(query))
    assert refused.value.param == param


def test_a_comparison_marks_only_the_rows_that_differ() -> None:
    one = listing_of(ENTRY)
    two = listing_of({**ENTRY, "id": "m-2", "license": "apache-2.0"})
    rows = {row.label: row for row in comparison([one, two])}
    assert rows["Licence"].differs and rows["Licence"].values == ("mit", "apache-2.0")
    assert not rows["Context window (tokens)"].differs
    assert rows["Tools"].values == ("gateway-enforced", "gateway-enforced")
    assert rows["Vision"].values == ("no", "no")
