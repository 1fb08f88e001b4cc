"""Signing in to the console through an OpenID Connect identity provider, in a real Chromium: a
gateway of its own trusts a fake provider on another loopback site (`localhost` against the
gateway's `127.0.0.1`, so the provider's redirect back is cross-site as in production). The
person lands signed in as `oidc:<sub>` with the role the claim maps to, the token endpoint got
the verifier of the challenge sent, and every failure (the provider's `error=`, a tampered
state, a refused code, a token for another sign-in, audience or key) shows the sign-in page with
a reason and a 4xx, never the code. Sign-out ends the session."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from playwright.sync_api import Page, expect

from modelyard.testing.scripted_server import JsonReply
from tests.console.conftest import shot
from tests.remote.fixtures import remote_catalog
from tests.support.fake_idp import FakeIdentityProvider, Person, s256
from tests.support.gateway import GatewayProcess

TEAM = "oidc-team"
# A secret with the characters RFC 6749's form-encoding of client_secret_basic is about.
CLIENT_SECRET = "s3cret:with+odd&chars"
MAPPINGS = [
    {"value": "team-developers", "project": TEAM, "role": "developer"},
    {"value": "gateway-owners", "project": "*", "role": "owner"},
]
IDP_LINK = "Sign in with your identity provider"


@pytest.fixture(scope="module")
def idp() -> Iterator[FakeIdentityProvider]:
    with FakeIdentityProvider(client_secret=CLIENT_SECRET).running() as running:
        yield running


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, idp: FakeIdentityProvider
) -> Iterator[GatewayProcess]:
    directory = tmp_path_factory.mktemp("console-oidc")
    config = idp.write_config(directory / "idp", MAPPINGS)
    # No model is called here: a catalog whose upstream is a closed port keeps the process light.
    catalog = remote_catalog(directory / "catalog.yaml", "http://127.0.0.1:9/v1")
    process = GatewayProcess(
        directory / "data",
        env={"ACME_KEY": "sk-x", "MODELYARD_AUTH_CONFIG": str(config)},
        args=("--catalog", str(catalog)),
    ).start()
    made = process.admin("POST", "/admin/projects", {"id": TEAM})
    assert made.status_code == 201, made.text
    yield process
    process.stop()


@pytest.fixture(autouse=True)
def fresh_idp(idp: FakeIdentityProvider) -> Iterator[None]:
    idp.reset()
    idp.person = Person(f"alice-{uuid.uuid4().hex[:6]}", ["team-developers"])
    yield
    idp.reset()


def start_sign_in(page: Page, gateway: GatewayProcess) -> None:
    page.goto(f"{gateway.base_url}/console/sign-in?next=/console/")
    page.get_by_role("link", name=IDP_LINK).click()


def test_the_provider_signs_a_person_in_with_pkce_as_the_role_its_claim_maps_to(
    gateway: GatewayProcess, idp: FakeIdentityProvider, page: Page
) -> None:
    page.goto(f"{gateway.base_url}/console/sign-in?next=/console/")
    expect(page.get_by_role("link", name=IDP_LINK)).to_be_visible()
    shot(page, "sign-in-oidc")

    idp.login_page = True
    page.get_by_role("link", name=IDP_LINK).click()
    page.get_by_role("button", name=f"Continue as {idp.person.sub}").click()

    expect(page.get_by_role("heading", level=1)).to_have_text(f"Welcome, oidc:{idp.person.sub}")
    expect(page.get_by_role("row", name=f"{TEAM} developer")).to_be_visible()
    # The authorization request was a PKCE S256 code request with a state and a nonce ...
    (asked,) = idp.authorize_requests
    assert asked["response_type"] == "code" and asked["code_challenge_method"] == "S256"
    assert asked["scope"].split() == ["openid", "profile"]
    assert asked["redirect_uri"] == f"{gateway.base_url}/console/oidc/callback"
    assert len(asked["state"]) >= 43 and len(asked["nonce"]) >= 43
    # ... and the token endpoint got the verifier of that challenge, with the client's secret
    # in the Authorization header, never in the form.
    (exchange,) = idp.token_requests
    verifier = exchange.body["code_verifier"]
    assert s256(verifier) == asked["code_challenge"] and 43 <= len(verifier) <= 128
    assert exchange.body["redirect_uri"] == asked["redirect_uri"]
    assert exchange.headers["authorization"].startswith("Basic ")
    assert CLIENT_SECRET not in str(exchange.body)
    # The browser keeps the session cookie only: no verifier, no token, no code.
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert set(cookies) == {"modelyard_console"}
    assert cookies["modelyard_console"]["sameSite"] == "Strict"
    assert cookies["modelyard_console"]["httpOnly"] is True
    assert verifier not in page.content() and "code=" not in page.url

    page.get_by_role("button", name="Sign out").click()

    expect(page).to_have_url(re.compile(r"/console/sign-in"))
    replayed = httpx.get(
        f"{gateway.base_url}/console/",
        cookies={"modelyard_console": cookies["modelyard_console"]["value"]},
        timeout=10,
    )
    assert replayed.status_code == 303
    assert replayed.headers["location"].startswith("/console/sign-in")


def test_an_owner_group_signs_in_as_owner_and_lands_where_it_asked(
    gateway: GatewayProcess, idp: FakeIdentityProvider, page: Page
) -> None:
    idp.person = Person(f"olga-{uuid.uuid4().hex[:6]}", ["gateway-owners"])
    page.goto(f"{gateway.base_url}/console/sign-in?next=/console/routes")
    page.get_by_role("link", name=IDP_LINK).click()

    expect(page).to_have_url(f"{gateway.base_url}/console/routes")
    expect(page.get_by_text(f"oidc:{idp.person.sub}")).to_be_visible()


def refused_sign_in(page: Page, gateway: GatewayProcess) -> tuple[int, str | None]:
    """Start a sign-in that fails at the callback: the callback's status and the code sent."""
    with page.expect_response(re.compile(r"/console/oidc/callback")) as answered:
        start_sign_in(page, gateway)
    callback = answered.value
    code = parse_qs(urlsplit(callback.url).query).get("code", [None])[0]
    return callback.status, code


def assert_not_signed_in(page: Page, gateway: GatewayProcess) -> None:
    assert "modelyard_console" not in {c["name"] for c in page.context.cookies()}
    page.goto(f"{gateway.base_url}/console/")
    expect(page).to_have_url(re.compile(r"/console/sign-in\?next="))


def test_a_callback_with_a_tampered_state_is_refused_before_the_code_is_used(
    gateway: GatewayProcess, idp: FakeIdentityProvider, page: Page
) -> None:
    idp.tamper_next_state()

    status, code = refused_sign_in(page, gateway)

    assert status == 401
    expect(page.get_by_role("alert")).to_contain_text("does not belong to this sign-in")
    assert code is not None and code not in page.content()
    assert idp.token_requests == []
    assert_not_signed_in(page, gateway)


def test_the_providers_error_is_shown_by_its_code_only(
    gateway: GatewayProcess, idp: FakeIdentityProvider, page: Page
) -> None:
    idp.fail_next_authorize("access_denied")

    status, _ = refused_sign_in(page, gateway)

    assert status == 401
    expect(page.get_by_role("alert")).to_have_text(
        "The identity provider did not sign you in (access_denied)."
    )
    shot(page, "sign-in-oidc-refused")
    # The provider's free text is not reflected into the page.
    assert "The user said no" not in page.content()
    assert idp.token_requests == []
    assert_not_signed_in(page, gateway)
    events = gateway.admin("GET", "/admin/audit?action=auth.login&limit=1000").json()["data"]
    assert any(
        e["object"] == "GET /console/oidc/callback" and "access_denied" in e["reason"]
        for e in events
    )


@pytest.mark.parametrize(
    ("fault", "status", "message"),
    [
        ("invalid_grant", 401, "refused the sign-in code (invalid_grant)"),
        ("token_endpoint_down", 503, "token endpoint failed (HTTP 500)"),
        ("no_id_token", 401, "sent no id_token"),
        ("other_nonce", 401, "not issued for this sign-in"),
        ("other_audience", 401, "audience 'someone-else' not accepted"),
        ("foreign_key", 401, "signature"),
        ("no_role", 401, "granted no Modelyard role"),
    ],
)
def test_a_sign_in_the_token_step_refuses_shows_why_and_never_the_code(
    gateway: GatewayProcess,
    idp: FakeIdentityProvider,
    page: Page,
    fault: str,
    status: int,
    message: str,
) -> None:
    if fault == "invalid_grant":
        idp.enqueue(JsonReply({"error": "invalid_grant", "error_description": "used"}, 400))
    elif fault == "token_endpoint_down":
        idp.enqueue(JsonReply({"message": "upstream connect error"}, 500))
    elif fault == "no_id_token":
        idp.enqueue(JsonReply({"access_token": "at-123", "token_type": "Bearer"}))
    elif fault == "other_nonce":
        idp.sign_next_token(nonce="a-nonce-of-another-sign-in")
    elif fault == "other_audience":
        idp.sign_next_token(aud="someone-else")
    elif fault == "foreign_key":
        idp.sign_next_with_foreign_key()
    else:
        idp.person = Person(idp.person.sub, ["nobody-maps-this"])

    answered, code = refused_sign_in(page, gateway)

    assert answered == status
    expect(page.get_by_role("alert")).to_contain_text(message)
    assert len(idp.token_requests) == 1
    assert code is not None and code not in page.content()
    assert "at-123" not in page.content()
    assert_not_signed_in(page, gateway)


def test_a_callback_without_a_started_sign_in_is_refused(gateway: GatewayProcess) -> None:
    answer = httpx.get(
        f"{gateway.base_url}/console/oidc/callback?code=code-7f3e9a&state=def", timeout=10
    )

    assert answer.status_code == 401
    assert "was not started here" in answer.text
    assert "code-7f3e9a" not in answer.text


def test_a_gateway_without_an_identity_provider_offers_no_provider_sign_in(
    console: GatewayProcess,
) -> None:
    page = httpx.get(f"{console.base_url}/console/sign-in", timeout=10)
    started = httpx.get(f"{console.base_url}/console/sign-in/oidc?next=/console/", timeout=10)

    assert IDP_LINK not in page.text
    assert started.status_code == 404
    assert "not set up on this gateway" in started.text
