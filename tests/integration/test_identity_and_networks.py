"""Bearer tokens from an identity provider and per-project client networks, end to end through
a real gateway: an Entra-style RS256 token signed by a key this test generates, its groups
mapped to roles, members bound by subject, and CIDR allowlists with a trusted proxy."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import openai
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.gateway import GatewayProcess

ISSUER = "https://login.example.com/tenant/v2.0"
AUDIENCE = "api://modelyard"
MODEL = "smollm2"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}


class IdentityProvider:
    def __init__(self, directory: Path) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        (directory / "jwks.json").write_text(json.dumps({"keys": [{**jwk, "kid": "k1"}]}))
        self.config = directory / "auth.yaml"
        mappings = [
            {"value": "platform-owners", "project": "*", "role": "owner"},
            {"value": "team-a-devs", "project": "team-a", "role": "developer"},
        ]
        oidc = {
            "issuer": ISSUER,
            "audience": AUDIENCE,
            "jwks_file": "jwks.json",
            "role_claim": "groups",
            "mappings": mappings,
        }
        self.config.write_text(yaml.safe_dump({"oidc": oidc}))

    def token(self, subject: str, groups: list[str], lifetime: int = 300, **claims: Any) -> str:
        now = int(time.time())
        payload = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": subject,
            "groups": groups,
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            **claims,
        }
        return jwt.encode(payload, self.key, algorithm="RS256", headers={"kid": "k1"})


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> IdentityProvider:
    return IdentityProvider(tmp_path_factory.mktemp("idp"))


@pytest.fixture(scope="module")
def sso_gateway(
    tmp_path_factory: pytest.TempPathFactory, idp: IdentityProvider
) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(
        tmp_path_factory.mktemp("sso") / "data",
        # Each failed login is checked for its own audit record: all come from one address.
        env={
            "MODELYARD_AUTH_CONFIG": str(idp.config),
            "MODELYARD_AUDIT_FAILED_LOGINS_PER_MINUTE": "100000",
        },
        args=("--trusted-proxy", "127.0.0.1/32"),
    ).start()
    admin = {"Authorization": f"Bearer {gateway.admin_key}"}
    for project in ("team-a", "team-b"):
        created = httpx.post(
            f"{gateway.base_url}/admin/projects", json={"id": project}, headers=admin
        )
        assert created.status_code == 201, created.text
    yield gateway
    gateway.stop()


def as_bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_token_with_a_mapped_group_calls_models_through_the_sdk(
    sso_gateway: GatewayProcess, idp: IdentityProvider
) -> None:
    token = idp.token("alice", ["team-a-devs", "unrelated-group"])
    client = openai.OpenAI(base_url=f"{sso_gateway.base_url}/v1", api_key=token, max_retries=0)
    answer = client.chat.completions.create(**CHAT)  # type: ignore[call-overload]
    assert answer.usage.completion_tokens > 0
    me = httpx.get(f"{sso_gateway.base_url}/admin/whoami", headers=as_bearer(token)).json()
    assert me == {
        "subject": "oidc:alice",
        "kind": "token",
        "project": "team-a",
        "roles": {"team-a": "developer"},
        "key_id": None,
        "models": None,
    }
    # A developer may not manage members, and other projects do not exist for it.
    url = f"{sso_gateway.base_url}/admin/projects"
    denied = httpx.put(
        f"{url}/team-a/members/bob", json={"role": "viewer"}, headers=as_bearer(token)
    )
    assert denied.status_code == 403 and "members.manage" in denied.json()["error"]["message"]
    assert httpx.get(f"{url}/team-b", headers=as_bearer(token)).status_code == 404


def test_an_owner_group_token_is_owner_everywhere(
    sso_gateway: GatewayProcess, idp: IdentityProvider
) -> None:
    token = idp.token("root", ["platform-owners", "team-a-devs"])
    me = httpx.get(f"{sso_gateway.base_url}/admin/whoami", headers=as_bearer(token)).json()
    assert me["roles"]["*"] == "owner"
    projects = httpx.get(f"{sso_gateway.base_url}/admin/projects", headers=as_bearer(token))
    assert {p["id"] for p in projects.json()["data"]} >= {"default", "team-a", "team-b"}


def test_a_member_binding_by_subject_grants_a_project_to_a_token(
    sso_gateway: GatewayProcess, idp: IdentityProvider
) -> None:
    admin = {"Authorization": f"Bearer {sso_gateway.admin_key}"}
    token = idp.token("carol", ["team-a-devs"])
    url = f"{sso_gateway.base_url}/admin/projects/team-b/members/oidc:carol"
    assert httpx.put(url, json={"role": "viewer"}, headers=admin).status_code == 200
    headers = {**as_bearer(token), "x-modelyard-project": "team-b"}
    models = httpx.get(f"{sso_gateway.base_url}/v1/models", headers=headers)
    assert models.status_code == 200
    chat = httpx.post(f"{sso_gateway.base_url}/v1/chat/completions", json=CHAT, headers=headers)
    assert chat.status_code == 403 and "'viewer' does not grant 'models.use'" in chat.text
    # With two projects and no header, the caller must say which one.
    ambiguous = httpx.post(
        f"{sso_gateway.base_url}/v1/chat/completions", json=CHAT, headers=as_bearer(token)
    )
    assert ambiguous.status_code == 403 and "x-modelyard-project" in ambiguous.text


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda idp: idp.token("dave", ["team-a-devs"], lifetime=-120), "expired"),
        (lambda idp: idp.token("dave", ["team-a-devs"], aud="api://other"), "audience"),
        (lambda idp: idp.token("dave", ["nobody-group"]), "role"),
        (lambda idp: idp.token("dave", ["team-a-devs"])[:-6] + "AAAAAA", "signature"),
    ],
)
def test_bad_tokens_are_401_and_audited_without_the_token(
    sso_gateway: GatewayProcess, idp: IdentityProvider, make: Any, reason: str
) -> None:
    token = make(idp)
    response = httpx.post(
        f"{sso_gateway.base_url}/v1/chat/completions", json=CHAT, headers=as_bearer(token)
    )
    assert response.status_code == 401
    assert reason in response.json()["error"]["message"]
    assert token not in response.text
    admin = {"Authorization": f"Bearer {sso_gateway.admin_key}"}
    deadline = time.monotonic() + 10
    while True:
        events = httpx.get(f"{sso_gateway.base_url}/admin/audit?limit=1000", headers=admin).json()[
            "data"
        ]
        failures = [e for e in events if e["action"] == "auth.login" and reason in e["reason"]]
        if failures or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert failures, f"no audited login failure mentioning {reason!r}"
    assert all(token not in json.dumps(e) for e in events)


def test_project_networks_with_a_trusted_proxy(sso_gateway: GatewayProcess) -> None:
    admin = {"Authorization": f"Bearer {sso_gateway.admin_key}"}
    url = sso_gateway.base_url
    created = httpx.post(
        f"{url}/admin/projects",
        json={"id": "lan-only", "allowed_cidrs": ["10.20.0.0/16"]},
        headers=admin,
    )
    assert created.status_code == 201
    key = httpx.post(
        f"{url}/admin/projects/lan-only/keys", json={"name": "k"}, headers=admin
    ).json()["key"]
    direct = httpx.post(f"{url}/v1/chat/completions", json=CHAT, headers=as_bearer(key))
    assert direct.status_code == 403 and "127.0.0.1" in direct.json()["error"]["message"]
    # The gateway trusts 127.0.0.1 as a proxy, which vouches for a client inside the network.
    via_proxy = {**as_bearer(key), "X-Forwarded-For": "203.0.113.7, 10.20.3.4"}
    assert httpx.post(f"{url}/v1/chat/completions", json=CHAT, headers=via_proxy).status_code == 200
    # The leftmost entry is the client's own claim and proves nothing.
    spoofed = {**as_bearer(key), "X-Forwarded-For": "10.20.3.4, 203.0.113.7"}
    assert httpx.post(f"{url}/v1/chat/completions", json=CHAT, headers=spoofed).status_code == 403
