"""Signing in and out of the console, and what protects a session: a key signs in through the
form in a real Chromium, the cookie is HttpOnly and SameSite=Strict and the key is nowhere in the
page or its URLs, a wrong key is refused (and audited), sign-out and revocation end the session
on the server, a POST without the CSRF token or from another origin is refused, every page has
a strict CSP and no inline script, and no console page answers without a session."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
from playwright.sync_api import Page, expect

from modelyard.api.console import page_routes
from tests.console.conftest import ConsoleClient, new_key, new_project, shot, sign_in
from tests.remote.fixtures import remote_catalog
from tests.support.gateway import GatewayProcess
from tests.support.services import RedisServer

INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE)


def test_a_key_signs_in_and_the_browser_keeps_only_a_strict_http_only_cookie(
    console: GatewayProcess, page: Page
) -> None:
    project = new_project(console)
    key = new_key(console, project, "developer")
    page.goto(f"{console.base_url}/console/")
    expect(page).to_have_url(re.compile(r"/console/sign-in\?next="))
    shot(page, "sign-in")

    sign_in(page, console, key.key)

    expect(page.get_by_role("heading", level=1)).to_contain_text("Welcome")
    expect(page.get_by_role("cell", name=project)).to_be_visible()
    shot(page, "overview")
    cookies = {c["name"]: c for c in page.context.cookies()}
    session = cookies["modelyard_console"]
    assert session["httpOnly"] is True
    assert session["sameSite"] == "Strict"
    assert session["path"] == "/console"
    assert key.key not in session["value"]
    assert key.key not in page.content()
    assert key.key not in page.url
    # Scripts cannot read the session cookie.
    assert "modelyard_console" not in page.evaluate("document.cookie")


def test_a_wrong_key_is_refused_and_audited(console: GatewayProcess, page: Page) -> None:
    page.goto(f"{console.base_url}/console/sign-in")
    page.get_by_label("API key").fill("myd-not-a-real-key")
    page.get_by_role("button", name="Sign in").click()

    expect(page.get_by_role("alert")).to_contain_text("Incorrect API key")
    assert "myd-not-a-real-key" not in page.content()
    events = console.admin("GET", "/admin/audit?action=auth.login&limit=1000").json()["data"]
    assert any(e["object"] == "POST /console/sign-in" and e["outcome"] == "failed" for e in events)


def test_sign_out_ends_the_session_on_the_server(console: GatewayProcess, page: Page) -> None:
    key = new_key(console, new_project(console), "viewer")
    sign_in(page, console, key.key)
    cookie = {c["name"]: c["value"] for c in page.context.cookies()}["modelyard_console"]

    page.get_by_role("button", name="Sign out").click()

    expect(page).to_have_url(re.compile(r"/console/sign-in"))
    # The old cookie, replayed by anyone who copied it, no longer opens anything.
    replayed = httpx.get(
        f"{console.base_url}/console/", cookies={"modelyard_console": cookie}, timeout=10
    )
    assert replayed.status_code == 303
    assert replayed.headers["location"].startswith("/console/sign-in")
    events = console.admin("GET", "/admin/audit?action=console.sign_out&limit=1000").json()
    assert any(e["actor"] == key.id or e["outcome"] == "succeeded" for e in events["data"])


def test_revoking_the_key_ends_its_console_session(console: GatewayProcess) -> None:
    project = new_project(console)
    key = new_key(console, project, "admin")
    client = ConsoleClient(console, key.key)
    assert client.http.get("/console/").status_code == 200

    revoked = console.admin("POST", f"/admin/projects/{project}/keys/{key.id}/revoke")
    assert revoked.status_code == 200, revoked.text

    after = client.http.get("/console/")
    assert after.status_code == 303
    assert after.headers["location"].startswith("/console/sign-in")


def test_a_post_without_the_csrf_token_or_from_another_origin_is_refused(
    console: GatewayProcess,
) -> None:
    key = new_key(console, new_project(console), "developer")
    client = ConsoleClient(console, key.key)

    missing = client.post("/console/sign-out", {}, csrf=False)
    wrong = client.http.post("/console/sign-out", data={"csrf_token": "forged"})
    elsewhere = client.http.post(
        "/console/sign-out",
        data={"csrf_token": client.csrf_token},
        headers={"origin": "https://evil.example"},
    )

    for refused in (missing, wrong, elsewhere):
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["code"] == "csrf_failed"
    # The session survived all three: none of them signed it out.
    assert client.http.get("/console/").status_code == 200
    # A sign-in form posted without its own token is refused too.
    forged = httpx.post(
        f"{console.base_url}/console/sign-in", data={"api_key": key.key}, timeout=10
    )
    assert forged.status_code == 403


def test_pages_carry_a_strict_csp_and_no_inline_script(console: GatewayProcess) -> None:
    client = ConsoleClient(console, console.admin_key or "")
    for path in ("/console/", "/console/sign-in"):
        answer = client.http.get(path)
        assert answer.status_code in (200, 303)
        policy = answer.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy
        assert "frame-ancestors 'none'" in policy
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["cache-control"] == "no-store"
        assert not INLINE_SCRIPT.search(answer.text), path


def test_no_console_page_answers_without_a_session(console: GatewayProcess) -> None:
    public = {"/sign-in", "/sign-in/oidc", "/oidc/callback"}
    checked = 0
    for route in page_routes():
        if route.path in public:
            continue
        path = "/console" + re.sub(r"{(\w+)(:\w+)?}", "x", route.path)
        for method in sorted((route.methods or set()) - {"HEAD"}):
            answer = httpx.request(method, console.base_url + path, timeout=10)
            if method == "GET":
                assert answer.status_code == 303, (method, path, answer.text)
                assert answer.headers["location"].startswith("/console/sign-in")
            else:
                assert answer.status_code == 401, (method, path, answer.text)
            checked += 1
    assert checked >= 2


def test_the_console_can_be_turned_off(tmp_path: Path) -> None:
    gateway = GatewayProcess(tmp_path / "off", env={"MODELYARD_CONSOLE": "false"}).start()
    try:
        for path in ("/console/", "/console/sign-in", "/console/static/console.css"):
            answer = httpx.get(gateway.base_url + path, timeout=10)
            assert answer.status_code == 404, path
            assert answer.json()["error"]["code"] == "not_found"
        assert gateway.admin("GET", "/admin/whoami").status_code == 200
    finally:
        gateway.stop()


def test_a_session_holds_on_every_worker(tmp_path: Path, redis_server: RedisServer) -> None:
    # A remote deployment that is never called: no local engine to start in each worker.
    catalog = remote_catalog(tmp_path / "catalog.yaml", "http://127.0.0.1:9/v1")
    gateway = GatewayProcess(
        tmp_path / "workers",
        env={"MODELYARD_REDIS_URL": redis_server.url(), "ACME_KEY": "unused"},
        args=("--catalog", str(catalog), "--workers", "2"),
    ).start()
    try:
        client = ConsoleClient(gateway, gateway.admin_key or "")
        cookie = {"modelyard_console": client.http.cookies["modelyard_console"]}
        # A new connection each time: the workers share the socket, so both answer some.
        for _ in range(30):
            answer = httpx.get(f"{gateway.base_url}/console/", cookies=cookie, timeout=10)
            assert answer.status_code == 200, answer.text
        signed_out = httpx.post(
            f"{gateway.base_url}/console/sign-out",
            cookies=cookie,
            data={"csrf_token": client.csrf_token},
            timeout=10,
        )
        assert signed_out.status_code == 303
        for _ in range(10):
            after = httpx.get(f"{gateway.base_url}/console/", cookies=cookie, timeout=10)
            assert after.status_code == 303
    finally:
        gateway.stop()
