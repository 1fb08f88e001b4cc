"""The world the access tests act in: one gateway on the remote catalog that also trusts a test
identity provider, projects `alpha` and `beta` with one API key per role in each, and a client
of the gateway's HTTP API that remembers every API key it saw handed out. `alpha` keeps content
(so it stores Responses API responses, which the matrix reads and deletes); `beta` keeps none.

Everything here is made once per session through the admin API with the bootstrap key (the
owner). Nothing made here is changed afterwards: tests that mutate make their own projects and
keys, so they run in any order.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from modelyard.policy.rbac import Role
from tests.access.identity_provider import IdentityProvider
from tests.support.gateway import GatewayProcess

HOME = "alpha"
OTHER = "beta"
KEY_ROLES = (Role.ADMIN, Role.DEVELOPER, Role.VIEWER, Role.AUDITOR)
CHAT = {"model": "acme-small", "messages": [{"role": "user", "content": "Say hi."}]}
RESPONSE = {"model": "acme-small", "input": "Say hi."}
# Days HOME keeps content: long enough to outlive the session.
HOME_RETENTION_DAYS = 1
REVOKE = "/admin/projects/{project}/keys/{key_id}/revoke"
ROTATE = "/admin/projects/{project}/keys/{key_id}/rotate"
MEMBER = "/admin/projects/{project}/members/{subject}"
AUDIT = "/admin/audit"
FEEDBACK = "/v1/feedback"
# How long the session's expired key lives; short, and made first, so it is dead by first use.
EXPIRING_KEY_LIFETIME = timedelta(seconds=1)


@dataclass(frozen=True)
class Credential:
    """Who calls: a label for reports, the headers that carry the credential, and the key."""

    label: str
    headers: Mapping[str, str]
    key: str | None = None
    key_id: str | None = None

    @classmethod
    def bearer(cls, label: str, key: str, key_id: str | None = None) -> Credential:
        return cls(label, {"authorization": f"Bearer {key}"}, key, key_id)


class Api:
    """httpx over the gateway's socket. Every API key seen in a reply is remembered, so tests
    can check that none of them leaks anywhere."""

    def __init__(self, base_url: str) -> None:
        self._base_url = base_url
        self._client = httpx.Client(base_url=base_url, timeout=15)
        self.keys_seen: list[str] = []

    def call(
        self,
        method: str,
        path: str,
        who: Credential | None = None,
        *,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        sent = {**(who.headers if who is not None else {}), **(headers or {})}
        response = self._client.request(method, path, json=json, headers=sent)
        if response.status_code >= 500:
            # uvicorn drops the connection after an unhandled error: the next call must not
            # reuse it.
            self._client.close()
            self._client = httpx.Client(base_url=self._base_url, timeout=15)
        self._remember_key(response)
        return response

    def close(self) -> None:
        self._client.close()

    def _remember_key(self, response: httpx.Response) -> None:
        if not response.headers.get("content-type", "").startswith("application/json"):
            return
        body = response.json()
        if isinstance(body, dict) and isinstance(body.get("key"), str):
            self.keys_seen.append(body["key"])


@dataclass
class World:
    gateway: GatewayProcess
    api: Api
    identity: IdentityProvider
    owner: Credential
    role_keys: dict[tuple[str, Role], Credential] = field(default_factory=dict)
    expiring: Credential | None = None
    expiring_until: datetime = field(default_factory=lambda: datetime.now(UTC))
    _revoked: Credential | None = None
    _served: str | None = None
    _serial: Iterator[int] = field(default_factory=itertools.count)

    def credential(self, role: Role, project: str = HOME) -> Credential:
        return self.owner if role is Role.OWNER else self.role_keys[(project, role)]

    def unique(self, prefix: str) -> str:
        return f"{prefix}-{next(self._serial)}-{secrets.token_hex(2)}"

    def create_project(self, **body: Any) -> str:
        project = body.setdefault("id", self.unique("proj"))
        response = self.api.call("POST", "/admin/projects", self.owner, json=body)
        assert response.status_code == 201, response.text
        return str(project)

    def mint(self, project: str, who: Credential | None = None, **body: Any) -> dict[str, Any]:
        """A new key in `project`, minted by `who` (the owner by default); asserts it worked."""
        body.setdefault("name", self.unique("key"))
        response = self.api.call(
            "POST", f"/admin/projects/{project}/keys", who or self.owner, json=body
        )
        assert response.status_code == 201, response.text
        minted: dict[str, Any] = response.json()
        return minted

    def minted_credential(
        self, project: str, who: Credential | None = None, **body: Any
    ) -> Credential:
        minted = self.mint(project, who, **body)
        return Credential.bearer(f"key {minted['id']}", minted["key"], minted["id"])

    def keys_of(self, project: str) -> list[dict[str, Any]]:
        response = self.api.call("GET", f"/admin/projects/{project}/keys", self.owner)
        assert response.status_code == 200, response.text
        keys: list[dict[str, Any]] = response.json()["data"]
        return keys

    def status_with(self, who: Credential) -> int:
        """The status a cheap authenticated read gets with this credential."""
        return self.api.call("GET", "/admin/whoami", who).status_code

    def expired_key(self) -> Credential:
        assert self.expiring is not None
        wait_until(self.expiring_until)
        return self.expiring

    def revoked_key(self) -> Credential:
        if self._revoked is None:
            key = self.minted_credential(HOME, role="admin")
            response = self.api.call(
                "POST", f"/admin/projects/{HOME}/keys/{key.key_id}/revoke", self.owner
            )
            assert response.status_code == 200, response.text
            self._revoked = key
        return self._revoked

    def served_request_id(self) -> str:
        """A request served in HOME and already in its ledger (feedback names one)."""
        if self._served is None:
            developer = self.credential(Role.DEVELOPER)
            answer = self.api.call("POST", "/v1/chat/completions", developer, json=CHAT)
            assert answer.status_code == 200, answer.text
            served = answer.headers["x-request-id"]
            # The ledger is written just after the answer: feedback is refused (404) until then.
            deadline = time.monotonic() + 20
            body = {"request_id": served, "score": 1}
            while self.api.call("POST", FEEDBACK, developer, json=body).status_code == 404:
                assert time.monotonic() < deadline, "the served request never reached the ledger"
                time.sleep(0.05)
            self._served = served
        return self._served

    def stored_response_id(self) -> str:
        """A fresh response stored in HOME (which keeps content), made by its developer."""
        developer = self.credential(Role.DEVELOPER)
        answer = self.api.call("POST", "/v1/responses", developer, json=RESPONSE)
        assert answer.status_code == 200, answer.text
        response: dict[str, Any] = answer.json()
        # Stored before the answer left: it can be read back at once.
        assert response["store"] is True, response
        return str(response["id"])

    def audit_events(self) -> list[dict[str, Any]]:
        """Every audit record, oldest first, read through GET /admin/audit as the owner."""
        events: list[dict[str, Any]] = []
        while True:
            after = events[-1]["seq"] if events else 0
            response = self.api.call("GET", f"{AUDIT}?after_seq={after}&limit=1000", self.owner)
            assert response.status_code == 200, response.text
            page = response.json()["data"]
            events += page
            if len(page) < 1000:
                return events


def wait_until(moment: datetime) -> None:
    remaining = (moment - datetime.now(UTC)).total_seconds()
    if remaining > 0:
        time.sleep(remaining + 0.05)


def build_world(gateway: GatewayProcess, identity: IdentityProvider) -> World:
    api = Api(gateway.base_url)
    assert gateway.admin_key is not None
    world = World(gateway, api, identity, Credential.bearer("owner", gateway.admin_key))
    world.expiring_until = datetime.now(UTC) + EXPIRING_KEY_LIFETIME
    world.create_project(id=HOME, content_retention_days=HOME_RETENTION_DAYS)
    world.create_project(id=OTHER)
    world.expiring = world.minted_credential(
        HOME, role="admin", expires_at=world.expiring_until.isoformat()
    )
    for project in (HOME, OTHER):
        for role in KEY_ROLES:
            minted = world.mint(project, name=f"{project}-{role}", role=role.value)
            world.role_keys[(project, role)] = Credential.bearer(
                f"{role}@{project}", minted["key"], minted["id"]
            )
    return world
