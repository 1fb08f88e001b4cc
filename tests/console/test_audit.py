"""The Audit log page in a real Chromium: searching by action or actor shows exactly the events
`/admin/audit` answers for the same filters (htmx, the filters in the address), Older, Newer and
Newest walk the project's events by seq as the API pages them, an owner sees that the hash chain
is intact, an auditor reads their own project's events only, a developer finds no Audit log
section and gets the API's 403, and the page fits a phone's width.

`page_of`, which turns one read of the API into a page and its neighbours' bounds, is also
pinned alone on the edges (an exact page, an empty one, the top reached from below).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlencode

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from modelyard.api.console.audit_log import AuditPage, AuditQuery, page_of
from tests.console.conftest import Key, new_key, new_project, shot, sign_in
from tests.support.gateway import GatewayProcess

KEYS_MADE = 60  # keys.create events for three pages of 25
KEYS_MADE_BY_ITS_ADMIN = 3


@dataclass
class AuditWorld:
    project: str
    keys: list[Key]
    admin: Key  # the project's own admin, whose actions are the actor search's


@pytest.fixture(scope="module")
def world(console: GatewayProcess) -> AuditWorld:
    project = new_project(console, "audit")
    keys = [new_key(console, project, "viewer") for _ in range(KEYS_MADE)]
    admin = new_key(console, project, "admin")
    for number in range(KEYS_MADE_BY_ITS_ADMIN):
        made = httpx.post(
            f"{console.base_url}/admin/projects/{project}/keys",
            json={"name": f"by-admin-{number}", "role": "viewer"},
            headers={"authorization": f"Bearer {admin.key}"},
            timeout=30,
        )
        assert made.status_code in (200, 201), made.text
    return AuditWorld(project, keys, admin)


def api_seqs(console: GatewayProcess, **query: str | int) -> list[int]:
    """The seqs `/admin/audit` holds for `query` (read with the admin key), newest first."""
    asked = {"order": "desc", "limit": 1000, **query}
    answer = console.admin("GET", "/admin/audit?" + urlencode(asked))
    assert answer.status_code == 200, answer.text
    return [int(event["seq"]) for event in answer.json()["data"]]


def rows(page: Page) -> Locator:
    return page.locator("#audit-events tbody th[scope=row]")


def expect_seqs(page: Page, seqs: list[int]) -> None:
    """Wait until the table shows exactly `seqs`, top to bottom (htmx swaps it in place)."""
    expect(rows(page)).to_have_text([str(seq) for seq in seqs])


COLUMNS = ("#", "When (UTC)", "Actor", "Action", "Project")


def column(page: Page, name: str) -> list[str]:
    """The cells of the events table's column `name`, top to bottom."""
    cells = page.locator(f"#audit-events tbody tr > :nth-child({COLUMNS.index(name) + 1})")
    return cells.all_inner_texts()


def link(page: Page, name: str) -> Locator:
    return page.get_by_role("link", name=name, exact=True)


def test_searching_by_action_shows_exactly_the_api_events_and_keeps_the_filters_in_the_address(
    console: GatewayProcess, world: AuditWorld, page: Page
) -> None:
    sign_in(page, console, console.admin_key or "", then="/console/audit")
    expect(page.locator("#audit-events")).to_be_visible()
    shot(page, "audit")

    # Every project's keys.create events, a page of the default 50.
    page.get_by_label("Action", exact=True).fill("keys.create")
    page.get_by_role("button", name="Search").click()
    expect(page).to_have_url(re.compile(r"action=keys\.create"))
    expect(page.locator("#audit-summary")).to_contain_text("in every project, action keys.create")
    expect_seqs(page, api_seqs(console, action="keys.create", limit=50))
    assert set(column(page, "Action")) == {"keys.create"}

    # Narrowed to the project, a page of 100 holds them all.
    page.get_by_label("Project", exact=True).select_option(world.project)
    page.get_by_label("Per page").select_option("100")
    page.get_by_role("button", name="Search").click()
    expect(page).to_have_url(re.compile(rf"project={world.project}"))
    created = api_seqs(console, project=world.project, action="keys.create")
    assert len(created) == KEYS_MADE + 1 + KEYS_MADE_BY_ITS_ADMIN
    expect_seqs(page, created)
    assert set(column(page, "Action")) == {"keys.create"}
    assert set(column(page, "Project")) == {world.project}
    # The project's other events (its creation) are not among them.
    expect(page.locator("#audit-events")).not_to_contain_text("projects.create")
    expect(link(page, "Older")).to_have_count(0)
    shot(page, "audit-search")

    # The address is the search: opened afresh, it shows the same events.
    page.reload()
    expect(page.get_by_label("Action", exact=True)).to_have_value("keys.create")
    expect_seqs(page, created)


def test_searching_by_actor_shows_exactly_what_that_actor_did(
    console: GatewayProcess, world: AuditWorld, page: Page
) -> None:
    # The project admin's key made the project's newest events; the API names its actor.
    newest = console.admin(
        "GET", "/admin/audit?" + urlencode({"project": world.project, "order": "desc", "limit": 1})
    ).json()["data"][0]
    actor = str(newest["actor"])
    assert newest["action"] == "keys.create" and world.admin.id in actor
    expected = api_seqs(console, project=world.project, actor=actor)
    sign_in(page, console, console.admin_key or "", then="/console/audit")

    page.get_by_label("Project", exact=True).select_option(world.project)
    page.get_by_label("Actor", exact=True).fill(actor)
    page.get_by_role("button", name="Search").click()

    expect(page.locator("#audit-summary")).to_contain_text(f"actor {actor}")
    expect(page).to_have_url(re.compile(r"actor="))
    assert len(expected) == KEYS_MADE_BY_ITS_ADMIN
    expect_seqs(page, expected)
    assert set(column(page, "Actor")) == {actor}


def test_older_newer_and_newest_walk_the_pages_as_the_api_holds_them(
    console: GatewayProcess, world: AuditWorld, page: Page
) -> None:
    events = api_seqs(console, project=world.project)
    assert 50 < len(events) <= 75  # three pages of 25, the last one short
    pages = [events[:25], events[25:50], events[50:]]
    sign_in(page, console, console.admin_key or "", then="/console/audit")
    page.goto(
        f"{console.base_url}/console/audit?" + urlencode({"project": world.project, "limit": 25})
    )

    def shows(number: int) -> None:
        expect_seqs(page, pages[number])

    shows(0)
    expect(link(page, "Newer")).to_have_count(0)
    expect(link(page, "Newest")).to_have_count(0)

    link(page, "Older").click()
    expect(page).to_have_url(re.compile(rf"before_seq={pages[0][-1]}"))
    shows(1)
    link(page, "Older").click()
    expect(page).to_have_url(re.compile(rf"before_seq={pages[1][-1]}"))
    shows(2)
    expect(link(page, "Older")).to_have_count(0)

    link(page, "Newer").click()
    expect(page).to_have_url(re.compile(rf"after_seq={pages[2][0]}"))
    shows(1)
    expect(link(page, "Older")).to_be_visible()
    expect(link(page, "Newest")).to_be_visible()
    link(page, "Newer").click()
    expect(page).to_have_url(re.compile(rf"after_seq={pages[1][0]}"))
    shows(0)
    expect(link(page, "Newer")).to_have_count(0)

    link(page, "Older").click()
    shows(1)
    link(page, "Newest").click()
    expect(page).not_to_have_url(re.compile(r"_seq="))
    shows(0)
    expect(link(page, "Newest")).to_have_count(0)


def test_an_owner_sees_that_the_chain_is_intact(
    console: GatewayProcess, world: AuditWorld, page: Page
) -> None:
    sign_in(page, console, console.admin_key or "", then="/console/audit")

    verdict = page.locator("#audit-verify")
    expect(verdict).to_contain_text("The audit chain is intact")
    head = verdict.locator("code.head").inner_text()
    records, _, digest = head.partition(":")
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    # Verified after the page read its events: every event shown is in the verified chain.
    newest_shown = int(rows(page).first.inner_text())
    assert int(records) >= newest_shown


def test_an_auditor_reads_their_project_only_and_is_not_offered_verification(
    console: GatewayProcess, world: AuditWorld, page: Page
) -> None:
    auditor = new_key(console, world.project, "auditor")
    sign_in(page, console, auditor.key, then="/console/audit")

    expect(page.locator("#audit-events")).to_be_visible()
    expect(page.locator("#audit-project option")).to_have_count(1)
    expect(page.locator("#audit-project")).to_have_value(world.project)
    assert set(column(page, "Project")) == {world.project}
    expect_seqs(page, api_seqs(console, project=world.project, limit=50))
    expect(page.locator("#audit-verify")).to_contain_text("for owners")
    # Asking for verification anyway, or for another project's events, is refused.
    assert page.request.get(f"{console.base_url}/console/audit/verify").status == 403
    other = page.goto(f"{console.base_url}/console/audit?project=default")
    direct = httpx.get(
        f"{console.base_url}/admin/audit?project=default",
        headers={"authorization": f"Bearer {auditor.key}"},
    )
    assert direct.status_code in (403, 404)
    assert other is not None and other.status == direct.status_code


def test_a_developer_finds_no_audit_section_and_gets_the_api_refusal(
    console: GatewayProcess, world: AuditWorld, page: Page
) -> None:
    developer = new_key(console, world.project, "developer")
    sign_in(page, console, developer.key)
    expect(page.get_by_role("navigation", name="Sections")).to_be_visible()
    expect(page.get_by_role("link", name="Audit log")).to_have_count(0)

    answer = page.goto(f"{console.base_url}/console/audit")

    assert answer is not None and answer.status == 403
    expect(page.get_by_role("alert")).to_contain_text("audit.read")
    expect(page.locator("#audit-events")).to_have_count(0)


def test_on_a_phone_the_audit_page_fits_the_width(
    console: GatewayProcess, world: AuditWorld, browser: Browser
) -> None:
    phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    try:
        page = phone.new_page()
        sign_in(page, console, console.admin_key or "", then="/console/audit")
        expect(page.locator("#audit-verify")).to_contain_text("intact")
        expect(page.locator("#audit-events")).to_be_visible()
        # The wide table scrolls in its own box; the page itself does not.
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        shot(page, "audit-phone")
    finally:
        phone.close()


# -- one read of the API, as a page ---------------------------------------------------------------


def events(*seqs: int) -> list[dict[str, object]]:
    return [{"seq": seq} for seq in seqs]


@pytest.mark.parametrize(
    ("cursor", "read", "expected"),
    [
        # The newest page: one event more than shown means an older page.
        ({}, events(9, 8, 7), AuditPage(events(9, 8), older=8, newer=None)),
        ({}, events(9, 8), AuditPage(events(9, 8), older=None, newer=None)),
        ({}, [], AuditPage([], older=None, newer=None)),
        # An older page: newer starts above its first event.
        ({"before_seq": 7}, events(6, 4, 2), AuditPage(events(6, 4), older=4, newer=6)),
        ({"before_seq": 7}, events(6), AuditPage(events(6), older=None, newer=6)),
        ({"before_seq": 7}, [], AuditPage([], older=None, newer=6)),
        # A newer page, read oldest first, shown newest first.
        ({"after_seq": 3}, events(4, 6, 9), AuditPage(events(6, 4), older=4, newer=6)),
        ({"after_seq": 3}, events(4, 6), AuditPage(events(6, 4), older=4, newer=None)),
        ({"after_seq": 3}, [], AuditPage([], older=4, newer=None)),
        ({"after_seq": 0}, events(1, 2), AuditPage(events(2, 1), older=None, newer=None)),
    ],
)
def test_one_read_of_the_api_makes_a_page_and_its_neighbours_bounds(
    cursor: dict[str, int], read: list[dict[str, object]], expected: AuditPage
) -> None:
    query = AuditQuery(project="p", actor=None, action=None, size=2, **cursor)

    assert page_of(query, read) == expected
    asked = query.api_query()
    assert asked["limit"] == 3
    assert asked["order"] == ("asc" if "after_seq" in cursor else "desc")
