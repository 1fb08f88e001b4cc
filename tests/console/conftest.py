"""The console's test world: one gateway (bundled SmolLM2, SQLite) for the package, a real
headless Chromium driven by Playwright (Debian's `chromium`, never a downloaded browser), and
helpers to sign in from the browser or from httpx, make keys and save screenshots."""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from tests.support.gateway import GatewayProcess

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
# Screenshots of every page, looked at by people (the closing note names them).
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-results" / "console"
CSRF_IN_PAGE = re.compile(r'"X-CSRF-Token": "([^"]+)"')


@pytest.fixture(scope="package")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    process = GatewayProcess(
        tmp_path_factory.mktemp("console"), env={"MODELYARD_DEFAULT_MODEL": "smollm2"}
    ).start()
    yield process
    process.stop()


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"Chromium is not installed ({CHROMIUM}); .ci/run installs it")
        pytest.skip("Chromium is not installed")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture()
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh browser profile per test: no cookie carries over."""
    made = browser.new_context(viewport={"width": 1280, "height": 900})
    made.set_default_timeout(20_000)
    yield made
    made.close()


@pytest.fixture()
def page(context: BrowserContext) -> Iterator[Page]:
    """A tab that fails its test if the page's CSP blocks anything or a script throws."""
    opened = context.new_page()
    problems: list[str] = []
    opened.on(
        "console",
        lambda message: (
            problems.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    opened.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
    yield opened
    assert not problems, problems


def shot(page: Page, name: str) -> Path:
    """Save a full-page screenshot as test-results/console/<name>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def sign_in(page: Page, gateway: GatewayProcess, key: str, then: str = "/console/") -> None:
    """Sign in through the sign-in form, as a person would, and wait for the page after."""
    page.goto(f"{gateway.base_url}/console/sign-in?next={then}")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{gateway.base_url}{then}*")


@dataclass
class Key:
    id: str
    key: str
    project: str


def new_project(gateway: GatewayProcess, prefix: str = "console") -> str:
    project = f"{prefix}-{uuid.uuid4().hex[:8]}"
    made = gateway.admin("POST", "/admin/projects", {"id": project})
    assert made.status_code in (200, 201), made.text
    return project


def new_key(gateway: GatewayProcess, project: str, role: str, **extra: object) -> Key:
    made = gateway.admin(
        "POST",
        f"/admin/projects/{project}/keys",
        {"name": f"{role}-{uuid.uuid4().hex[:6]}", "role": role, **extra},
    )
    assert made.status_code in (200, 201), made.text
    body = made.json()
    return Key(body["id"], body["key"], project)


class ConsoleClient:
    """A signed-in console session driven over plain HTTP (httpx): for what a browser would
    not send, such as a forged or CSRF-less POST."""

    def __init__(self, gateway: GatewayProcess, key: str) -> None:
        self.http = httpx.Client(base_url=gateway.base_url, timeout=30, follow_redirects=False)
        form = self.http.get("/console/sign-in")
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert token is not None, form.text
        signed = self.http.post(
            "/console/sign-in",
            data={"api_key": key, "csrf_token": token.group(1), "next": "/console/"},
        )
        assert signed.status_code == 303, signed.text
        home = self.http.get("/console/")
        assert home.status_code == 200, home.text
        found = CSRF_IN_PAGE.search(home.text)
        assert found is not None
        self.csrf_token = found.group(1)

    def post(self, path: str, data: dict[str, str], *, csrf: bool = True) -> httpx.Response:
        fields = {**data, "csrf_token": self.csrf_token} if csrf else data
        return self.http.post(path, data=fields)

    def close(self) -> None:
        self.http.close()
