"""OIDC/JWT access tokens are verified with real keys and signatures, and mapped to grants.

Keys are generated per test session with `cryptography`, tokens signed with PyJWT, and the JWKS
either written to a file or served by a real HTTP server on 127.0.0.1. Nothing is mocked; the
only stand-in is the clock that spaces JWKS refetches.
"""

from __future__ import annotations

import base64
import hmac
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.warnings import InsecureKeyLengthWarning

from modelyard.auth.identity_provider import IdentityProviderConfig, load_identity_provider
from modelyard.auth.tokens import TokenVerifier, looks_like_jwt
from modelyard.errors import AuthenticationFailed, StartupError
from modelyard.policy.rbac import Role
from tests.support.ports import free_port

ISSUER = "https://login.example.com/tenant/v2.0"
AUDIENCE = "api://modelyard"
MAPPINGS = [
    {"value": "ml-platform-owners", "project": "*", "role": "owner"},
    {"value": "team-a-devs", "project": "team-a", "role": "developer"},
    {"value": "team-a-viewers", "project": "team-a", "role": "viewer"},
    {"value": "team-b-auditors", "project": "team-b", "role": "auditor"},
]


PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


class SigningKey:
    def __init__(self, kid: str, private: PrivateKey) -> None:
        self.kid = kid
        self.private = private
        if isinstance(private, rsa.RSAPrivateKey):
            self.alg = "RS256"
        else:
            self.alg = "ES256" if isinstance(private, ec.EllipticCurvePrivateKey) else "EdDSA"

    def jwk(self) -> dict[str, Any]:
        algorithm = jwt.get_algorithm_by_name(self.alg)
        jwk: dict[str, Any] = json.loads(algorithm.to_jwk(self.private.public_key()))
        return {**jwk, "kid": self.kid, "use": "sig"}

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(
        self, *, headers: dict[str, Any] | None = None, alg: str | None = None, **changes: Any
    ) -> str:
        return jwt.encode(
            claims(**changes),
            self.private,
            algorithm=alg or self.alg,
            headers={"kid": self.kid} if headers is None else headers,
        )


def claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-1",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "groups": ["team-a-devs"],
    }
    base.update(changes)
    return {name: value for name, value in base.items() if value is not None}


def handmade(header: dict[str, Any], payload: dict[str, Any], secret: bytes | None) -> str:
    """A token built without PyJWT, which refuses to sign the forgeries tested here."""

    def segment(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = (
        f"{segment(json.dumps(header).encode())}.{segment(json.dumps(payload).encode())}"
    )
    signature = (
        b"" if secret is None else hmac.new(secret, signing_input.encode(), "sha256").digest()
    )
    return f"{signing_input}.{segment(signature)}"


@pytest.fixture(scope="session")
def rsa_key() -> SigningKey:
    return SigningKey("rsa-1", rsa.generate_private_key(public_exponent=65537, key_size=2048))


@pytest.fixture(scope="session")
def ec_key() -> SigningKey:
    return SigningKey("ec-1", ec.generate_private_key(ec.SECP256R1()))


@pytest.fixture(scope="session")
def ed_key() -> SigningKey:
    return SigningKey("ed-1", ed25519.Ed25519PrivateKey.generate())


@pytest.fixture(scope="session")
def other_rsa_key() -> SigningKey:
    return SigningKey("rsa-2", rsa.generate_private_key(public_exponent=65537, key_size=2048))


def write_config(tmp_path: Path, **oidc: Any) -> Path:
    path = tmp_path / "auth.yaml"
    document = {
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "role_claim": "groups",
        "mappings": MAPPINGS,
        **oidc,
    }
    path.write_text(yaml.safe_dump({"oidc": {k: v for k, v in document.items() if v is not None}}))
    return path


def file_config(tmp_path: Path, keys: list[SigningKey], **oidc: Any) -> IdentityProviderConfig:
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [key.jwk() for key in keys]}))
    return load_identity_provider(write_config(tmp_path, jwks_file="jwks.json", **oidc))


@pytest.fixture()
def verifier(
    tmp_path: Path, rsa_key: SigningKey, ec_key: SigningKey, ed_key: SigningKey
) -> TokenVerifier:
    return TokenVerifier(file_config(tmp_path, [rsa_key, ec_key, ed_key]))


def refusal(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(AuthenticationFailed) as caught:
        verifier.verify(token)
    assert caught.value.status == 401
    assert token not in caught.value.message
    return caught.value.message


@pytest.mark.parametrize(
    ("key_name", "alg"),
    [("rsa_key", "RS256"), ("rsa_key", "PS256"), ("ec_key", "ES256"), ("ed_key", "EdDSA")],
)
def test_valid_token_yields_subject_grants_and_expiry(
    verifier: TokenVerifier, key_name: str, alg: str, request: pytest.FixtureRequest
) -> None:
    key: SigningKey = request.getfixturevalue(key_name)
    exp = int(time.time()) + 300
    verified = verifier.verify(key.sign(alg=alg, exp=exp))
    assert verified.subject == "oidc:user-1"
    assert verified.grants == {"team-a": Role.DEVELOPER}
    assert verified.expires_at == datetime.fromtimestamp(exp, tz=UTC)


def test_repeated_verification_is_served_from_cache_and_copies_grants(
    verifier: TokenVerifier, rsa_key: SigningKey
) -> None:
    token = rsa_key.sign()
    first = verifier.verify(token)
    first.grants["team-z"] = Role.OWNER
    assert verifier.verify(token).grants == {"team-a": Role.DEVELOPER}


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        # Times are offsets from now, resolved when the test runs (not when it is collected).
        ({"exp": -120}, "token expired"),
        ({"nbf": 300}, "not yet valid"),
        ({"iat": 300}, "not yet valid"),
        ({"exp": None}, "token has no 'exp' claim"),
        ({"exp": "9999999999"}, "'exp' is not a number"),
        ({"iss": "https://sts.example.com/tenant/"}, "issuer 'https://sts.example.com/tenant/'"),
        ({"iss": None}, "issuer None not accepted"),
        ({"aud": "api://someone-else"}, "audience 'api://someone-else' not accepted"),
        ({"aud": None}, "audience None not accepted"),
        ({"sub": None}, "token has no 'sub' claim"),
    ],
)
def test_claims_that_fail_are_refused_with_the_reason(
    verifier: TokenVerifier, rsa_key: SigningKey, changes: dict[str, Any], expected: str
) -> None:
    now = int(time.time())
    claims = {
        name: now + value if name in ("exp", "nbf", "iat") and isinstance(value, int) else value
        for name, value in changes.items()
    }
    assert expected in refusal(verifier, rsa_key.sign(**claims))


def test_leeway_accepts_a_token_expired_moments_ago(
    verifier: TokenVerifier, rsa_key: SigningKey
) -> None:
    assert verifier.verify(rsa_key.sign(exp=int(time.time()) - 10)).subject == "oidc:user-1"


def test_any_configured_audience_matches_and_a_token_may_carry_several(
    tmp_path: Path, rsa_key: SigningKey
) -> None:
    config = file_config(tmp_path, [rsa_key], audience=["api://modelyard", "0000-client-id"])
    verifier = TokenVerifier(config)
    assert verifier.verify(rsa_key.sign(aud="0000-client-id")).grants
    assert verifier.verify(rsa_key.sign(aud=["api://other", "api://modelyard"])).grants
    assert "not accepted" in refusal(verifier, rsa_key.sign(aud=["api://other"]))


def test_tampered_payload_fails_the_signature(verifier: TokenVerifier, rsa_key: SigningKey) -> None:
    header, _, signature = rsa_key.sign().split(".")
    forged_claims = json.dumps(claims(groups=["ml-platform-owners"])).encode()
    forged = base64.urlsafe_b64encode(forged_claims).rstrip(b"=").decode()
    assert refusal(verifier, f"{header}.{forged}.{signature}") == "signature invalid"


def test_signature_by_another_key_under_a_known_kid_is_invalid(
    verifier: TokenVerifier, other_rsa_key: SigningKey
) -> None:
    token = other_rsa_key.sign(headers={"kid": "rsa-1"})
    assert refusal(verifier, token) == "signature invalid"


def test_unknown_kid_is_refused(verifier: TokenVerifier, other_rsa_key: SigningKey) -> None:
    assert "unknown signing key" in refusal(verifier, other_rsa_key.sign())


def test_token_without_kid_uses_the_only_key(tmp_path: Path, rsa_key: SigningKey) -> None:
    verifier = TokenVerifier(file_config(tmp_path, [rsa_key]))
    assert verifier.verify(rsa_key.sign(headers={})).subject == "oidc:user-1"


def test_token_without_kid_is_refused_when_there_are_several_keys(
    verifier: TokenVerifier, rsa_key: SigningKey
) -> None:
    assert "names no signing key" in refusal(verifier, rsa_key.sign(headers={}))


def test_algorithm_must_fit_the_key_the_kid_names(
    verifier: TokenVerifier, ec_key: SigningKey
) -> None:
    # An ES256 signature presented under the RSA key's kid.
    assert "does not fit algorithm 'ES256'" in refusal(
        verifier, ec_key.sign(headers={"kid": "rsa-1"})
    )


def test_rsa_key_shorter_than_2048_bits_is_refused(tmp_path: Path) -> None:
    weak = SigningKey("weak", rsa.generate_private_key(public_exponent=65537, key_size=1024))
    verifier = TokenVerifier(file_config(tmp_path, [weak]))
    with pytest.warns(InsecureKeyLengthWarning):  # PyJWT signs, but only with a warning
        token = weak.sign()
    assert "signing key is too weak" in refusal(verifier, token)


def test_unsigned_token_is_refused(verifier: TokenVerifier) -> None:
    token = handmade({"alg": "none", "kid": "rsa-1"}, claims(), secret=None)
    assert looks_like_jwt(token)
    assert "alg 'none'" in refusal(verifier, token)


def test_hs256_signed_with_the_public_key_is_refused(
    verifier: TokenVerifier, rsa_key: SigningKey
) -> None:
    token = handmade({"alg": "HS256", "kid": "rsa-1"}, claims(), secret=rsa_key.public_pem())
    assert "algorithm 'HS256' is not accepted" in refusal(verifier, token)


def test_algorithm_outside_the_config_is_refused_even_with_a_valid_signature(
    tmp_path: Path, rsa_key: SigningKey, ec_key: SigningKey
) -> None:
    verifier = TokenVerifier(file_config(tmp_path, [rsa_key, ec_key], algorithms=["RS256"]))
    assert "algorithm 'ES256' is not accepted" in refusal(verifier, ec_key.sign())


def test_no_matching_mapping_is_refused_without_naming_the_groups(
    verifier: TokenVerifier, rsa_key: SigningKey
) -> None:
    message = refusal(verifier, rsa_key.sign(groups=["secret-project-x"]))
    assert message == (
        "authenticated by the identity provider but granted no Modelyard role: "
        "no role mapping matched claim 'groups'"
    )
    assert "no role mapping matched claim 'groups'" in refusal(verifier, rsa_key.sign(groups=None))


def test_role_claim_may_be_a_string_or_a_list(verifier: TokenVerifier, rsa_key: SigningKey) -> None:
    assert verifier.verify(rsa_key.sign(groups="team-a-devs")).grants == {"team-a": Role.DEVELOPER}
    verified = verifier.verify(rsa_key.sign(groups=["ml-platform-owners", 7, "team-b-auditors"]))
    assert verified.grants == {"*": Role.OWNER, "team-b": Role.AUDITOR}


@pytest.mark.parametrize(
    "groups", [["team-a-viewers", "team-a-devs"], ["team-a-devs", "team-a-viewers"]]
)
def test_two_roles_on_one_project_keep_the_stronger(
    verifier: TokenVerifier, rsa_key: SigningKey, groups: list[str]
) -> None:
    assert verifier.verify(rsa_key.sign(groups=groups)).grants == {"team-a": Role.DEVELOPER}


def test_subject_and_role_claims_are_configurable(tmp_path: Path, rsa_key: SigningKey) -> None:
    config = file_config(tmp_path, [rsa_key], subject_claim="oid", role_claim="roles")
    verifier = TokenVerifier(config)
    verified = verifier.verify(rsa_key.sign(oid="object-9", roles=["team-a-devs"], groups=None))
    assert (verified.subject, verified.grants) == ("oidc:object-9", {"team-a": Role.DEVELOPER})


def test_looks_like_jwt_tells_tokens_from_api_keys(rsa_key: SigningKey) -> None:
    assert looks_like_jwt(rsa_key.sign())
    assert not looks_like_jwt("myd-admin-" + "A" * 43)
    assert not looks_like_jwt("a.b.c")  # header is not JSON
    assert not looks_like_jwt(".".join(rsa_key.sign().split(".")[:2]))
    assert not looks_like_jwt(rsa_key.sign() + ".x")
    no_alg = base64.urlsafe_b64encode(b'{"typ":"JWT"}').rstrip(b"=").decode()
    assert not looks_like_jwt(f"{no_alg}.e30.sig")


def test_garbage_is_refused_as_malformed(verifier: TokenVerifier) -> None:
    assert "not a well-formed JWT" in refusal(verifier, "not-a-token")
    assert "too large" in refusal(verifier, "x" * 20_000)


# JWKS over HTTP


class JwksServer:
    """A real HTTP server on 127.0.0.1 serving a JWKS that a test can change and count."""

    def __init__(self) -> None:
        self.document: dict[str, Any] = {"keys": []}
        self.status = 200
        self.hits = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.hits += 1
                body = json.dumps(server.document).encode()
                self.send_response(server.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}/keys"
        self._thread = threading.Thread(
            target=self._http.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    def serve(self, *keys: SigningKey) -> None:
        self.document = {"keys": [key.jwk() for key in keys]}

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def jwks_server() -> Iterator[JwksServer]:
    server = JwksServer()
    yield server
    server.stop()


def url_verifier(tmp_path: Path, url: str, clock: Clock) -> TokenVerifier:
    config = load_identity_provider(write_config(tmp_path, jwks_url=url))
    return TokenVerifier(config, clock=clock)


def test_keys_are_fetched_once_and_a_new_kid_triggers_a_rate_limited_refetch(
    tmp_path: Path, jwks_server: JwksServer, rsa_key: SigningKey, other_rsa_key: SigningKey
) -> None:
    clock = Clock()
    jwks_server.serve(rsa_key)
    verifier = url_verifier(tmp_path, jwks_server.url, clock)
    assert verifier.verify(rsa_key.sign()).subject == "oidc:user-1"
    assert verifier.verify(rsa_key.sign(sub="user-2")).subject == "oidc:user-2"
    assert jwks_server.hits == 1

    jwks_server.serve(rsa_key, other_rsa_key)  # the provider publishes a new key
    clock.now += 5
    assert "unknown signing key" in refusal(verifier, other_rsa_key.sign())
    assert jwks_server.hits == 1  # within 30 s of the last fetch
    clock.now += 26
    assert verifier.verify(other_rsa_key.sign()).subject == "oidc:user-1"
    assert jwks_server.hits == 2

    forged_kid = rsa_key.sign(headers={"kid": "rsa-9"})
    clock.now += 5
    assert "unknown signing key" in refusal(verifier, forged_kid)
    assert jwks_server.hits == 2
    clock.now += 26
    assert "unknown signing key" in refusal(verifier, forged_kid)
    assert jwks_server.hits == 3


def test_rotation_picks_up_a_key_published_after_the_first_fetch(
    tmp_path: Path, jwks_server: JwksServer, rsa_key: SigningKey, other_rsa_key: SigningKey
) -> None:
    clock = Clock()
    jwks_server.serve(rsa_key)
    verifier = url_verifier(tmp_path, jwks_server.url, clock)
    verifier.verify(rsa_key.sign())
    jwks_server.serve(other_rsa_key)  # rotated: the old key is withdrawn
    clock.now += 31
    assert verifier.verify(other_rsa_key.sign()).subject == "oidc:user-1"
    assert "unknown signing key" in refusal(verifier, rsa_key.sign(sub="user-3"))


def test_withdrawn_key_also_drops_its_cached_results(
    tmp_path: Path, jwks_server: JwksServer, rsa_key: SigningKey, other_rsa_key: SigningKey
) -> None:
    clock = Clock()
    jwks_server.serve(rsa_key)
    verifier = url_verifier(tmp_path, jwks_server.url, clock)
    old = rsa_key.sign()
    verifier.verify(old)
    jwks_server.serve(other_rsa_key)
    clock.now += 31
    verifier.verify(other_rsa_key.sign())
    assert "unknown signing key" in refusal(verifier, old)


def test_keys_are_refetched_after_their_lifetime_and_kept_when_the_server_fails(
    tmp_path: Path, jwks_server: JwksServer, rsa_key: SigningKey
) -> None:
    clock = Clock()
    jwks_server.serve(rsa_key)
    verifier = url_verifier(tmp_path, jwks_server.url, clock)
    verifier.verify(rsa_key.sign())
    clock.now += 599
    verifier.verify(rsa_key.sign(sub="user-2"))
    assert jwks_server.hits == 1
    clock.now += 1
    verifier.verify(rsa_key.sign(sub="user-3"))
    assert jwks_server.hits == 2

    jwks_server.status = 500
    clock.now += 600
    assert verifier.verify(rsa_key.sign(sub="user-4")).subject == "oidc:user-4"
    assert jwks_server.hits == 3


def test_server_down_without_cached_keys_is_a_401(tmp_path: Path, rsa_key: SigningKey) -> None:
    clock = Clock()
    verifier = url_verifier(tmp_path, f"http://127.0.0.1:{free_port()}/keys", clock)
    assert refusal(verifier, rsa_key.sign()) == "identity provider keys unavailable"
    clock.now += 1
    assert refusal(verifier, rsa_key.sign()) == "identity provider keys unavailable"


@pytest.mark.parametrize("document", [{"keys": []}, {"no": "keys"}, ["not", "an", "object"]])
def test_server_answering_without_usable_keys_is_a_401(
    tmp_path: Path, jwks_server: JwksServer, rsa_key: SigningKey, document: Any
) -> None:
    jwks_server.document = document
    verifier = url_verifier(tmp_path, jwks_server.url, Clock())
    assert refusal(verifier, rsa_key.sign()) == "identity provider keys unavailable"


# The config file


def config_error(path: Path) -> str:
    with pytest.raises(StartupError) as caught:
        load_identity_provider(path)
    message = str(caught.value)
    assert str(path) in message
    return message


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"algorithms": ["RS256", "HS256"]}, "oidc.algorithms: 'HS256' uses a shared secret"),
        ({"algorithms": ["none"]}, "oidc.algorithms: 'none' accepts unsigned tokens"),
        ({"algorithms": ["RS1"]}, "oidc.algorithms: 'RS1' is not supported"),
        ({"jwks_url": "https://idp.example.com/keys"}, "oidc: jwks_file, jwks_url: give exactly"),
        ({"jwks_file": None}, "oidc: jwks_file, jwks_url: give exactly one"),
        (
            {"mappings": [{"value": "g", "project": "team-a", "role": "owner"}]},
            "oidc.mappings[0].role: 'owner' is granted on project '*' only",
        ),
        (
            {"mappings": [{"value": "g", "project": "*", "role": "admin"}]},
            "oidc.mappings[0].project: only role 'owner' may be granted on '*'",
        ),
        (
            {"mappings": [{"value": "g", "project": "p", "role": "boss"}]},
            "oidc.mappings[0].role: Input should be 'owner'",
        ),
        ({"mappings": [MAPPINGS[1], MAPPINGS[1]]}, "oidc.mappings[1].value: 'team-a-devs' is"),
        ({"mappings": []}, "oidc.mappings: List should have at least 1 item"),
        ({"leeway_seconds": "30"}, "oidc.leeway_seconds: Input should be a valid integer"),
        ({"role_claim": None}, "oidc.role_claim: Field required"),
        ({"audiences": ["x"]}, "oidc.audiences: Extra inputs are not permitted"),
    ],
)
def test_config_errors_name_the_file_and_the_field(
    tmp_path: Path, changes: dict[str, Any], expected: str
) -> None:
    path = write_config(tmp_path, **{"jwks_file": "jwks.json", **changes})
    assert expected in config_error(path)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://idp.example.com/keys", "plain http is only allowed to a loopback address"),
        ("ftp://idp.example.com/keys", "must be an https:// URL"),
    ],
)
def test_jwks_url_must_be_https_unless_loopback(tmp_path: Path, url: str, expected: str) -> None:
    assert f"oidc.jwks_url: {expected}" in config_error(write_config(tmp_path, jwks_url=url))


def test_defaults_and_relative_jwks_file(tmp_path: Path) -> None:
    config = load_identity_provider(write_config(tmp_path, jwks_file="keys/jwks.json"))
    assert config.algorithms == ("RS256", "ES256", "PS256", "EdDSA")
    assert config.audiences == (AUDIENCE,)
    assert config.jwks_file == tmp_path / "keys" / "jwks.json"
    assert (config.subject_claim, config.leeway_seconds, config.jwks_cache_seconds) == (
        "sub",
        30,
        600,
    )


def test_unreadable_or_keyless_jwks_file_stops_startup(tmp_path: Path, rsa_key: SigningKey) -> None:
    config = load_identity_provider(write_config(tmp_path, jwks_file="jwks.json"))
    with pytest.raises(StartupError, match=r"oidc\.jwks_file .*jwks\.json: cannot read"):
        TokenVerifier(config)
    private = {**rsa_key.jwk(), "d": "AQAB"}  # private material is never used
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [private]}))
    with pytest.raises(StartupError, match="no usable signing key"):
        TokenVerifier(config)
