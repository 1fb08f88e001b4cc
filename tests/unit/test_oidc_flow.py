"""The pieces of the console's OIDC sign-in that need no browser: PKCE S256 against RFC 7636's
own example, what a pending sign-in keeps and how its cookie reads back, the authorization URL,
the token request (public and confidential clients), the token endpoint's answers read by status
and RFC 6749's fields, the state and nonce checks, and the `console` section of the identity
provider file (validated at start-up, naming the field)."""

from __future__ import annotations

import asyncio
import base64
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote_plus, urlsplit

import jwt
import orjson
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import ec

from modelyard.auth.identity_provider import AuthConfigError, ConsoleClient, load_identity_provider
from modelyard.auth.oidc_flow import (
    IdentityProviderUnavailable,
    OidcSignInFailed,
    PendingSignIn,
    authorization_url,
    check_nonce,
    check_state,
    code_challenge,
    exchange_code,
    id_token_from,
    refused_by_provider,
    token_request,
)
from modelyard.errors import StartupError

PUBLIC = ConsoleClient(
    client_id="console",
    client_secret=None,
    authorization_endpoint="https://idp.example/authorize?tenant=acme",
    token_endpoint="https://idp.example/token",
    scopes=("openid", "profile"),
)
CONFIDENTIAL = ConsoleClient(
    client_id="console app",
    client_secret="s3cret:with+odd&chars",
    authorization_endpoint="https://idp.example/authorize",
    token_endpoint="https://idp.example/token",
    scopes=("openid",),
)
REDIRECT = "https://gateway.example/console/oidc/callback"
UNRESERVED = re.compile(r"[A-Za-z0-9._~-]+")


def test_the_s256_challenge_is_rfc_7636s_example() -> None:
    # RFC 7636 appendix B.
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert code_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_each_sign_in_gets_fresh_long_random_values_within_pkces_rules() -> None:
    first, second = PendingSignIn.start("/console/"), PendingSignIn.start("/console/")

    assert 43 <= len(first.code_verifier) <= 128
    assert UNRESERVED.fullmatch(first.code_verifier)
    assert len(first.state) >= 43 and len(first.nonce) >= 43
    assert {first.state, first.nonce, first.code_verifier}.isdisjoint(
        {second.state, second.nonce, second.code_verifier}
    )


def test_a_pending_sign_in_reads_back_from_its_cookie_and_garbage_reads_as_none() -> None:
    pending = PendingSignIn.start("/console/evals?project=a&x=1")

    assert PendingSignIn.from_cookie(pending.to_cookie()) == pending
    for garbage in (
        None,
        "",
        "not base64 at all!",
        base64.urlsafe_b64encode(b'["a", "b"]').decode(),
        base64.urlsafe_b64encode(b'{"state": "a"}').decode(),
        base64.urlsafe_b64encode(b'["a", "b", "c", 4]').decode(),
        "A" * 5000,
    ):
        assert PendingSignIn.from_cookie(garbage) is None


def test_the_authorization_url_asks_for_a_pkce_code_and_keeps_the_endpoints_query() -> None:
    pending = PendingSignIn.start("/console/")

    url = urlsplit(authorization_url(PUBLIC, pending, REDIRECT))

    assert (url.scheme, url.netloc, url.path) == ("https", "idp.example", "/authorize")
    assert parse_qsl(url.query) == [
        ("tenant", "acme"),
        ("response_type", "code"),
        ("client_id", "console"),
        ("redirect_uri", REDIRECT),
        ("scope", "openid profile"),
        ("state", pending.state),
        ("nonce", pending.nonce),
        ("code_challenge", code_challenge(pending.code_verifier)),
        ("code_challenge_method", "S256"),
    ]
    assert pending.code_verifier not in url.query


def test_a_public_client_names_itself_in_the_token_form() -> None:
    form, headers = token_request(PUBLIC, "the-code", "the-verifier", REDIRECT)

    assert form == {
        "grant_type": "authorization_code",
        "code": "the-code",
        "redirect_uri": REDIRECT,
        "code_verifier": "the-verifier",
        "client_id": "console",
    }
    assert "authorization" not in headers


def test_a_confidential_client_authenticates_with_basic_form_encoded_parts() -> None:
    form, headers = token_request(CONFIDENTIAL, "the-code", "the-verifier", REDIRECT)

    assert "client_id" not in form and "client_secret" not in form
    scheme, _, encoded = headers["authorization"].partition(" ")
    assert scheme == "Basic"
    user, _, password = base64.b64decode(encoded).decode().partition(":")
    assert user == "console+app" and password == "s3cret%3Awith%2Bodd%26chars"
    assert (unquote_plus(user), unquote_plus(password)) == ("console app", "s3cret:with+odd&chars")


def answer(document: Any) -> bytes:
    return orjson.dumps(document)


def test_the_token_endpoints_id_token_is_taken_from_a_200() -> None:
    body = answer({"access_token": "at", "token_type": "Bearer", "id_token": "a.b.c"})
    assert id_token_from(200, body) == "a.b.c"


@pytest.mark.parametrize(
    ("status", "body", "failure", "param", "message"),
    [
        (200, answer({"access_token": "at"}), OidcSignInFailed, "id_token", "sent no id_token"),
        (400, answer({"error": "invalid_grant"}), OidcSignInFailed, "code", "(invalid_grant)"),
        (401, answer({"error": "invalid_client"}), OidcSignInFailed, "code", "(invalid_client)"),
        (
            400,
            answer({"error": "<script>", "error_description": "x"}),
            OidcSignInFailed,
            "code",
            "(unknown error)",
        ),
        (400, b"<html>Bad Request</html>", IdentityProviderUnavailable, None, "HTTP 400"),
        (500, answer({"error": "server_error"}), IdentityProviderUnavailable, None, "HTTP 500"),
        (200, b"not json", IdentityProviderUnavailable, None, "HTTP 200"),
    ],
)
def test_the_token_endpoints_failures_are_read_by_status_and_error_field(
    status: int,
    body: bytes,
    failure: type[Exception],
    param: str | None,
    message: str,
) -> None:
    with pytest.raises(failure) as caught:
        id_token_from(status, body)
    assert message in str(caught.value)
    assert getattr(caught.value, "param", None) == param
    assert "at" not in str(caught.value).split()


def test_an_unreachable_token_endpoint_is_a_503_without_its_address() -> None:
    closed = ConsoleClient("console", None, "https://idp.example/a", "http://127.0.0.1:9/token", ())

    with pytest.raises(IdentityProviderUnavailable) as caught:
        asyncio.run(exchange_code(closed, "the-code", "the-verifier", REDIRECT, timeout_s=2))

    assert caught.value.status == 503
    assert "127.0.0.1" not in caught.value.message and "the-code" not in caught.value.message


def test_the_state_must_be_the_one_this_browser_sent() -> None:
    pending = PendingSignIn.start("/console/")

    assert check_state(pending, pending.state) is pending
    for kept, presented in ((None, pending.state), (pending, None), (pending, "forged")):
        with pytest.raises(OidcSignInFailed) as caught:
            check_state(kept, presented)
        assert caught.value.param == "state" and caught.value.status == 401


def token_with(**claims: Any) -> str:
    return jwt.encode(claims, ec.generate_private_key(ec.SECP256R1()), algorithm="ES256")


def test_the_id_token_must_carry_this_sign_ins_nonce() -> None:
    check_nonce(token_with(sub="a", nonce="n-1"), "n-1")
    for claims in ({"sub": "a"}, {"sub": "a", "nonce": "n-2"}, {"sub": "a", "nonce": 7}):
        with pytest.raises(OidcSignInFailed) as caught:
            check_nonce(token_with(**claims), "n-1")
        assert caught.value.param == "nonce"


def test_the_providers_error_is_named_by_its_code_and_nothing_else() -> None:
    assert refused_by_provider("access_denied").message == (
        "The identity provider did not sign you in (access_denied)."
    )
    assert "(unknown error)" in refused_by_provider("Call +1 555 0100 to unlock").message


# The identity provider file's `console` section


def write_config(tmp_path: Path, **console: Any) -> Path:
    section = {
        "client_id": "console",
        "authorization_endpoint": "https://idp.example/authorize",
        "token_endpoint": "https://idp.example/token",
        **console,
    }
    document = {
        "oidc": {
            "issuer": "https://idp.example",
            "audience": ["api", "console"],
            "jwks_file": "jwks.json",
            "role_claim": "groups",
            "mappings": [{"value": "devs", "project": "alpha", "role": "developer"}],
            "console": {k: v for k, v in section.items() if v is not None},
        }
    }
    path = tmp_path / "auth.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def test_the_console_section_is_read_with_openid_first_and_its_secret_out_of_repr(
    tmp_path: Path,
) -> None:
    path = write_config(tmp_path, scopes=["profile", "openid", "email"], client_secret="hush-1")

    console = load_identity_provider(path).console

    assert console is not None
    assert console.scopes == ("openid", "profile", "email")
    assert console.client_secret == "hush-1"
    assert "hush-1" not in repr(console)


def test_the_client_secret_may_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(tmp_path, client_secret="env:CONSOLE_CLIENT_SECRET")
    monkeypatch.delenv("CONSOLE_CLIENT_SECRET", raising=False)
    with pytest.raises(AuthConfigError, match="client_secret: the environment variable"):
        load_identity_provider(path)

    monkeypatch.setenv("CONSOLE_CLIENT_SECRET", "from-env")
    console = load_identity_provider(path).console

    assert console is not None and console.client_secret == "from-env"


def test_a_file_without_a_console_section_offers_no_console_sign_in(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    document = yaml.safe_load(path.read_text())
    del document["oidc"]["console"]
    path.write_text(yaml.safe_dump(document))

    assert load_identity_provider(path).console is None


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"client_id": "stranger"}, "oidc.console.client_id: 'stranger' must be one of the"),
        (
            {"token_endpoint": "http://idp.example/token"},
            "oidc.console.token_endpoint: plain http is only allowed to a loopback address",
        ),
        ({"authorization_endpoint": "idp.example"}, "oidc.console.authorization_endpoint:"),
        ({"scopes": ["openid profile"]}, "oidc.console.scopes: 'openid profile' is not one"),
        ({"client_secret": ""}, "oidc.console.client_secret:"),
        ({"redirect_uri": "https://x"}, "oidc.console.redirect_uri: Extra inputs"),
        ({"client_id": None}, "oidc.console.client_id: Field required"),
    ],
)
def test_a_bad_console_section_stops_start_up_naming_the_field(
    tmp_path: Path, changes: dict[str, Any], expected: str
) -> None:
    path = write_config(tmp_path, **changes)

    with pytest.raises(StartupError) as caught:
        load_identity_provider(path)

    assert str(path) in str(caught.value)
    assert expected in str(caught.value)


def test_plain_http_endpoints_are_allowed_on_loopback(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        authorization_endpoint="http://localhost:8080/authorize",
        token_endpoint="http://127.0.0.1:8080/token",
    )
    console = load_identity_provider(path).console
    assert console is not None and console.token_endpoint == "http://127.0.0.1:8080/token"
