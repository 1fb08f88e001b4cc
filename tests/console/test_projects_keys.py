"""The console's Projects pages in a real Chromium against the shared gateway: a key made in
the browser is shown once and works from the `openai` SDK until it is revoked there; rotation
shows the new key once and both work in the grace period; members are added, changed and
removed (and audited); a project's allowed networks refuse a key from elsewhere; a viewer is
offered no mutation, and the server refuses the viewer's forged posts anyway."""

from __future__ import annotations

import uuid
from typing import Any

import openai
import pytest
from playwright.sync_api import Dialog, Page, expect

from tests.console.conftest import ConsoleClient, new_key, new_project, shot, sign_in
from tests.support.gateway import GatewayProcess


def sdk(gateway: GatewayProcess, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=key, max_retries=0)


def chat(gateway: GatewayProcess, key: str) -> str:
    answer = sdk(gateway, key).chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": "Say hi."}], max_tokens=8
    )
    return answer.choices[0].message.content or ""


def accept_dialogs(page: Page) -> list[str]:
    """Accept every confirm() (htmx's hx-confirm) and keep what it asked."""
    asked: list[str] = []

    def accept(dialog: Dialog) -> None:
        asked.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept)
    return asked


def keys_of(gateway: GatewayProcess, project: str) -> list[dict[str, Any]]:
    listed = gateway.admin("GET", f"/admin/projects/{project}/keys")
    assert listed.status_code == 200, listed.text
    data: list[dict[str, Any]] = listed.json()["data"]
    return data


def test_a_key_made_in_the_browser_is_shown_once_and_works_until_revoked_there(
    console: GatewayProcess, page: Page
) -> None:
    project = new_project(console)
    admin = new_key(console, project, "admin")
    sign_in(page, console, admin.key, then=f"/console/projects/{project}")
    asked = accept_dialogs(page)

    page.get_by_label("Name", exact=True).fill("ci-pipeline")
    page.locator("#key-role").select_option("developer")
    page.get_by_role("button", name="Create key").click()

    secret = page.locator("#new-key")
    expect(secret).to_be_visible()
    expect(page.get_by_text("it will not be shown again")).to_be_visible()
    expect(page.locator("#keys button[data-copy='#new-key']")).to_have_text("Copy")
    made = secret.inner_text().strip()
    assert made.startswith("myd-")
    assert made not in page.url
    shot(page, "key-created")
    (row,) = [k for k in keys_of(console, project) if k["name"] == "ci-pipeline"]
    assert row["role"] == "developer"
    expect(page.locator(f"tr[data-key='{row['id']}']")).to_contain_text("active")

    assert chat(console, made)  # the SDK is served with the new key

    page.reload()
    expect(page.locator(f"tr[data-key='{row['id']}']")).to_be_visible()
    expect(page.locator("#new-key")).to_have_count(0)
    assert made not in page.content()

    page.locator(f"tr[data-key='{row['id']}']").get_by_role("button", name="Revoke").click()

    expect(page.locator(f"tr[data-key='{row['id']}']")).to_have_attribute("data-state", "revoked")
    expect(page.get_by_role("status")).to_contain_text(f"Revoked the key {row['id']}")
    assert asked and "ci-pipeline" in asked[0]
    with pytest.raises(openai.AuthenticationError) as refused:
        chat(console, made)
    assert refused.value.status_code == 401
    shot(page, "project-detail")


def test_rotating_shows_the_new_key_once_and_both_work_in_the_grace_period(
    console: GatewayProcess, page: Page
) -> None:
    project = new_project(console)
    admin = new_key(console, project, "admin")
    old = new_key(console, project, "developer")
    sign_in(page, console, admin.key, then=f"/console/projects/{project}")
    accept_dialogs(page)

    row = page.locator(f"tr[data-key='{old.id}']")
    row.get_by_label("Grace").select_option(label="1 hour")
    row.get_by_role("button", name="Rotate").click()

    secret = page.locator("#new-key")
    expect(secret).to_be_visible()
    replacement = secret.inner_text().strip()
    assert replacement != old.key
    expect(page.get_by_role("status")).to_contain_text(f"Rotated the key {old.id}")
    expect(row).to_have_attribute("data-state", "rotated, in grace")
    for key in (old.key, replacement):
        assert any(m.id == "smollm2-135m-instruct" for m in sdk(console, key).models.list())
    retired = next(k for k in keys_of(console, project) if k["id"] == old.id)
    assert retired["replaced_by"] is not None and retired["expires_at"] is not None

    page.reload()
    expect(page.locator("#new-key")).to_have_count(0)
    assert replacement not in page.content()


def test_a_key_is_made_with_the_keyboard_alone_and_focus_moves_to_it(
    console: GatewayProcess, page: Page
) -> None:
    project = new_project(console)
    admin = new_key(console, project, "admin")
    sign_in(page, console, admin.key, then=f"/console/projects/{project}")

    page.locator("#key-name").focus()
    page.keyboard.type("typed")
    page.keyboard.press("Tab")
    page.keyboard.press("ArrowDown")  # developer -> viewer
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Enter")  # submits the form from its text field

    expect(page.locator("#new-key-title")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Copy")).to_be_focused()
    (made,) = [k for k in keys_of(console, project) if k["name"] == "typed"]
    assert made["role"] == "viewer"


def test_a_refused_key_shows_the_status_and_the_apis_message(
    console: GatewayProcess, page: Page
) -> None:
    project = new_project(console)
    admin = new_key(console, project, "admin")
    sign_in(page, console, admin.key, then=f"/console/projects/{project}")

    page.get_by_label("Name", exact=True).fill("bad-models")
    page.get_by_label("Models (optional)").fill("smollm2, no-such-model")
    page.get_by_role("button", name="Create key").click()

    alert = page.locator("#keys").get_by_role("alert")
    expect(alert).to_have_attribute("data-status", "400")
    expect(alert).to_contain_text("'no-such-model' is neither in the catalog nor a route")
    expect(page.locator("#new-key")).to_have_count(0)
    assert not [k for k in keys_of(console, project) if k["name"] == "bad-models"]


def test_members_are_added_changed_and_removed_in_the_browser_and_audited(
    console: GatewayProcess, page: Page
) -> None:
    project = new_project(console)
    admin = new_key(console, project, "admin")
    subject = f"alice-{uuid.uuid4().hex[:6]}@example.com"
    sign_in(page, console, admin.key, then=f"/console/projects/{project}")
    asked = accept_dialogs(page)

    page.get_by_label("Subject").fill(subject)
    page.locator("#member-role").select_option("viewer")
    page.get_by_role("button", name="Add member").click()
    row = page.locator(f"#members tr[data-member='{subject}']")
    expect(row).to_contain_text("viewer")

    row.get_by_label(f"New role for {subject}").select_option("developer")
    row.get_by_role("button", name="Change role").click()
    expect(row.locator("td").first).to_have_text("developer")
    members = console.admin("GET", f"/admin/projects/{project}/members").json()["data"]
    assert [(m["subject"], m["role"]) for m in members] == [(subject, "developer")]

    row.get_by_role("button", name="Remove").click()
    expect(row).to_have_count(0)
    assert asked == [f"Remove {subject} from {project}?"]
    assert console.admin("GET", f"/admin/projects/{project}/members").json()["data"] == []

    events = console.admin("GET", f"/admin/audit?project={project}&limit=1000").json()["data"]
    about = [
        (e["action"], e["reason"], e["actor"])
        for e in events
        if e["object"] == f"member:{project}/{subject}"
    ]
    actor = f"key:{admin.id}"
    assert about == [
        ("members.put", "role viewer", actor),
        ("members.put", "role developer", actor),
        ("members.remove", "removed role developer", actor),
    ]


def test_allowed_networks_set_in_the_browser_refuse_a_key_from_elsewhere(
    console: GatewayProcess, page: Page
) -> None:
    project = new_project(console)
    developer = new_key(console, project, "developer")
    sign_in(page, console, console.admin_key or "", then=f"/console/projects/{project}")
    settings = page.locator("#settings")

    settings.get_by_text("Edit settings").click()
    settings.get_by_label("Allowed networks (CIDR)").fill("10.0.0.0/8")
    settings.get_by_role("button", name="Save settings").click()

    expect(settings.get_by_role("status")).to_have_text("Saved: allowed cidrs.")
    expect(settings.locator("dd .badge")).to_have_text(["10.0.0.0/8"])
    got = console.admin("GET", f"/admin/projects/{project}").json()
    assert got["allowed_cidrs"] == ["10.0.0.0/8"] and got["allowed_models"] is None
    with pytest.raises(openai.PermissionDeniedError) as refused:
        chat(console, developer.key)
    assert refused.value.status_code == 403
    assert "outside the project's allowed networks" in str(refused.value)

    settings.get_by_text("Edit settings").click()
    settings.get_by_label("Allowed networks (CIDR)").fill("")
    settings.get_by_role("button", name="Save settings").click()

    expect(settings.get_by_role("status")).to_have_text("Saved: allowed cidrs.")
    assert console.admin("GET", f"/admin/projects/{project}").json()["allowed_cidrs"] is None
    assert chat(console, developer.key)


def test_an_owner_lists_projects_and_creates_one(console: GatewayProcess, page: Page) -> None:
    project = new_project(console)
    sign_in(page, console, console.admin_key or "", then="/console/projects")
    expect(page.get_by_role("link", name=project)).to_be_visible()
    new = f"made-{uuid.uuid4().hex[:8]}"

    page.get_by_label("Project id").fill(new)
    page.get_by_label("Description (optional)").fill("Made in the console")
    page.get_by_role("button", name="Create project").click()

    page.wait_for_url(f"**/console/projects/{new}")
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Project {new}")
    expect(page.locator("#settings")).to_contain_text("Made in the console")
    assert console.admin("GET", f"/admin/projects/{new}").json()["created_by"] == "admin"

    page.goto(f"{console.base_url}/console/projects")
    page.get_by_label("Project id").fill(new)
    page.get_by_role("button", name="Create project").click()
    alert = page.get_by_role("alert")
    expect(alert).to_have_attribute("data-status", "409")
    expect(alert).to_contain_text(f"The project '{new}' already exists.")
    page.goto(f"{console.base_url}/console/projects")
    shot(page, "projects")


def test_a_viewer_is_offered_no_mutation_and_its_forged_posts_are_refused(
    console: GatewayProcess, page: Page
) -> None:
    project = new_project(console)
    viewer = new_key(console, project, "viewer")
    target = new_key(console, project, "developer")
    limits = {"budgets_usd": {"month": "5"}, "requests_per_minute": 60}
    assert console.admin("PUT", f"/admin/projects/{project}/limits", limits).status_code == 200
    sign_in(page, console, viewer.key, then="/console/projects")

    expect(page.get_by_role("link", name=project)).to_be_visible()
    expect(page.get_by_label("Project id")).to_have_count(0)
    shot(page, "projects-viewer")
    page.get_by_role("link", name=project).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Project {project}")
    expect(page.locator("#settings")).to_contain_text("any network")
    expect(page.get_by_text("does not let you see or make this project's keys")).to_be_visible()
    main = page.locator("main")
    expect(main.locator("form")).to_have_count(0)
    expect(main.get_by_role("button")).to_have_count(0)
    page.goto(f"{console.base_url}/console/limits?project={project}")
    expect(page.locator("tr[data-period='month']")).to_contain_text("$5.00")
    expect(page.get_by_text("Only an owner sets a project's limits.")).to_be_visible()
    expect(main.locator("form[method='post']")).to_have_count(0)

    forged = ConsoleClient(console, viewer.key)
    made = forged.post(f"/console/projects/{project}/keys", {"name": "forged", "role": "viewer"})
    revoked = forged.post(f"/console/projects/{project}/keys/{target.id}/revoke", {})
    limited = forged.post(f"/console/limits/{project}", {"budget_month": "9999"})
    key_limited = forged.post(
        f"/console/limits/{project}/keys/{target.id}", {"requests_per_minute": "1"}
    )
    member = forged.post(
        f"/console/projects/{project}/members", {"subject": "mallory", "role": "viewer"}
    )

    for refused in (made, revoked, limited, key_limited, member):
        assert refused.status_code == 403, refused.text
        assert "403" in refused.text and "Permission denied" in refused.text
    # Another project is not the viewer's: it does not exist as far as the viewer can tell.
    elsewhere = forged.http.get(f"/console/projects/{new_project(console)}")
    assert elsewhere.status_code == 404
    assert "does not exist" in elsewhere.text
    keys = keys_of(console, project)
    assert sorted(k["id"] for k in keys) == sorted([viewer.id, target.id])
    assert all(k["revoked_at"] is None for k in keys)
    after = console.admin("GET", f"/admin/projects/{project}/limits").json()
    assert after["budgets_usd"] == {"month": "5.000000"}
    assert after["requests_per_minute"] == 60
    key_after = console.admin("GET", f"/admin/projects/{project}/keys/{target.id}/limits").json()
    assert key_after["requests_per_minute"] is None
    assert console.admin("GET", f"/admin/projects/{project}/members").json()["data"] == []
    forged.close()


def test_a_developer_manages_only_its_own_keys(console: GatewayProcess, page: Page) -> None:
    project = new_project(console)
    new_key(console, project, "admin")
    developer = new_key(console, project, "developer")
    sign_in(page, console, developer.key, then=f"/console/projects/{project}")

    expect(page.locator("#keys caption")).to_have_text(f"Your keys in {project}")
    expect(page.locator("#key-role option")).to_have_text(["developer", "viewer"])
    page.get_by_label("Name", exact=True).fill("mine")
    page.get_by_role("button", name="Create key").click()

    expect(page.locator("#new-key")).to_be_visible()
    # Its own keys only: itself (minted for it) and the one it just made, not the admin's.
    rows = page.locator("#keys tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("mine")
    expect(rows.first.get_by_role("button", name="Revoke")).to_be_visible()
    expect(page.locator(f"tr[data-key='{developer.id}']")).to_be_visible()


def test_the_project_page_reads_on_a_phone(console: GatewayProcess, page: Page) -> None:
    project = new_project(console)
    admin = new_key(console, project, "admin")
    new_key(console, project, "developer")
    page.set_viewport_size({"width": 390, "height": 844})
    sign_in(page, console, admin.key, then=f"/console/projects/{project}")

    expect(page.get_by_role("heading", level=1)).to_have_text(f"Project {project}")
    expect(page.get_by_role("button", name="Create key")).to_be_visible()
    # Nothing but the tables' own scrolling areas is wider than the screen.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    shot(page, "project-phone")
