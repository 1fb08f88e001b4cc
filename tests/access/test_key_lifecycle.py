"""A key's life (minted, used, rotated, revoked, expired) and what the gateway keeps of it: the
audit log, its hash chain, and the admin CLI that drives all of it from a terminal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from modelyard.policy.rbac import Role
from tests.access.world import HOME, Credential, World, wait_until

POLL_SECONDS = 5.0


def refusal(response: httpx.Response) -> str:
    assert response.status_code == 401, response.text
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("authentication_error", "invalid_api_key")
    message: str = error["message"]
    return message


def poll_audit(world: World, done: Callable[[list[dict[str, Any]]], bool]) -> list[dict[str, Any]]:
    """The audit log once `done` holds for it: refusals are written by a background writer."""
    deadline = time.monotonic() + POLL_SECONDS
    while True:
        events = world.audit_events()
        if done(events) or time.monotonic() > deadline:
            return events
        time.sleep(0.1)


# -- a key's life ------------------------------------------------------------------------------


def test_revoked_key_is_refused_at_once(world: World) -> None:
    key = world.minted_credential(HOME, role="developer")
    assert world.status_with(key) == 200
    revoked = world.api.call(
        "POST", f"/admin/projects/{HOME}/keys/{key.key_id}/revoke", world.owner
    )
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["revoked_at"] is not None
    assert "revoked" in refusal(world.api.call("GET", "/v1/models", key))


def test_rotated_key_works_beside_its_replacement_until_the_grace_ends(world: World) -> None:
    old = world.minted_credential(HOME, role="developer")
    response = world.api.call(
        "POST",
        f"/admin/projects/{HOME}/keys/{old.key_id}/rotate",
        world.owner,
        json={"grace_seconds": 2},
    )
    assert response.status_code == 200, response.text
    rotated = response.json()
    new = Credential.bearer("replacement", rotated["key"], rotated["id"])
    assert rotated["replaces"]["id"] == old.key_id
    assert rotated["replaces"]["replaced_by"] == new.key_id
    assert (world.status_with(old), world.status_with(new)) == (200, 200)
    wait_until(datetime.fromisoformat(rotated["replaces"]["expires_at"]))
    assert "rotated" in refusal(world.api.call("GET", "/admin/whoami", old))
    assert world.status_with(new) == 200


def test_expired_key_is_refused_saying_it_expired(world: World) -> None:
    until = datetime.now(UTC) + timedelta(seconds=1.5)
    key = world.minted_credential(HOME, role="developer", expires_at=until.isoformat())
    assert world.status_with(key) == 200
    wait_until(until)
    assert "expired" in refusal(world.api.call("GET", "/v1/models", key))


def test_repeated_key_creation_with_one_idempotency_key_makes_one_key(world: World) -> None:
    project = world.create_project()
    path = f"/admin/projects/{project}/keys"
    idempotency = {"idempotency-key": world.unique("create-ci-key")}
    body = {"name": "ci", "role": "developer"}
    first = world.api.call("POST", path, world.owner, json=body, headers=idempotency)
    again = world.api.call("POST", path, world.owner, json=body, headers=idempotency)
    assert (first.status_code, again.status_code) == (201, 201), again.text
    assert "idempotent-replayed" not in first.headers
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert [key["id"] for key in world.keys_of(project)] == [first.json()["id"]]
    other = world.api.call(
        "POST", path, world.owner, json={**body, "name": "other"}, headers=idempotency
    )
    assert other.status_code == 422, other.text
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert len(world.keys_of(project)) == 1
    assert world.status_with(Credential.bearer("ci", first.json()["key"])) == 200


# -- the audit log -----------------------------------------------------------------------------


def test_audit_api_lists_the_events_of_a_project(world: World) -> None:
    # It once answered 500: rows came back keyed by SQLAlchemy's quoted_name, which orjson
    # refuses as a dict key.
    for who in (world.owner, world.credential(Role.AUDITOR)):
        response = world.api.call("GET", f"/admin/audit?project={HOME}", who)
        assert response.status_code == 200, response.text
        events = response.json()["data"]
        assert {event["project_id"] for event in events} == {HOME}
        assert ("projects.create", f"project:{HOME}") in {
            (event["action"], event["object"]) for event in events
        }


def test_audit_api_filters_by_actor_and_action_and_pages_newest_first(world: World) -> None:
    everything = world.audit_events()
    created = [e for e in everything if e["action"] == "keys.create"]
    assert len(created) >= 3

    def read(query: str) -> list[dict[str, Any]]:
        response = world.api.call("GET", f"/admin/audit?{query}", world.owner)
        assert response.status_code == 200, response.text
        events: list[dict[str, Any]] = response.json()["data"]
        return events

    assert read("action=keys.create&limit=1000") == created
    actor = created[0]["actor"]
    assert read(f"action=keys.create&actor={actor}&limit=1000") == [
        e for e in created if e["actor"] == actor
    ]
    newest = read("action=keys.create&order=desc&limit=2")
    assert newest == created[::-1][:2]
    older = read(f"action=keys.create&order=desc&limit=2&before_seq={newest[-1]['seq']}")
    assert older == created[::-1][2:4]
    for bad in ("order=sideways", "before_seq=x"):
        refused = world.api.call("GET", f"/admin/audit?{bad}", world.owner)
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["param"] == bad.split("=")[0]


def test_audit_log_records_each_mutation_denial_and_failed_login(world: World) -> None:
    project = world.create_project()
    base = f"/admin/projects/{project}"
    subject = world.unique("member")
    owner = world.owner
    for method, path, body in (
        ("PATCH", base, {"description": "audited"}),
        ("PUT", f"{base}/members/{subject}", {"role": "viewer"}),
        ("DELETE", f"{base}/members/{subject}", None),
    ):
        response = world.api.call(method, path, owner, json=body)
        assert response.status_code == 200, response.text
    key = world.mint(project, role="developer")
    rotated = world.api.call(
        "POST", f"{base}/keys/{key['id']}/rotate", owner, json={"grace_seconds": 0}
    ).json()
    revoke = world.api.call("POST", f"{base}/keys/{rotated['id']}/revoke", owner)
    assert revoke.status_code == 200, revoke.text
    viewer = world.minted_credential(project, role="viewer")
    denied = world.api.call("POST", f"{base}/keys", viewer, json={"name": "x", "role": "admin"})
    assert denied.status_code == 403, denied.text
    wrong = Credential.bearer("wrong", f"myd-{viewer.key_id}-{'x' * 43}")
    assert world.api.call("GET", f"{base}/members", wrong).status_code == 401

    expected = {
        ("projects.create", "succeeded", f"project:{project}"),
        ("projects.update", "succeeded", f"project:{project}"),
        ("members.put", "succeeded", f"member:{project}/{subject}"),
        ("members.remove", "succeeded", f"member:{project}/{subject}"),
        ("keys.create", "succeeded", f"key:{key['id']}"),
        ("keys.rotate", "succeeded", f"key:{key['id']}"),
        ("keys.revoke", "succeeded", f"key:{rotated['id']}"),
        ("keys.create", "succeeded", f"key:{viewer.key_id}"),
        ("keys.manage_own", "denied", f"project '{project}'"),
        ("auth.login", "failed", f"GET {base}/members"),
    }

    def recorded(events: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
        return {(event["action"], event["outcome"], event["object"]) for event in events}

    missing = expected - recorded(poll_audit(world, lambda events: expected <= recorded(events)))
    assert not missing


def test_no_audit_record_or_log_line_holds_an_api_key(world: World) -> None:
    key = world.minted_credential(HOME, role="developer")
    token = world.identity.token("carol")
    assert key.key is not None
    # Refusals that quote what the caller sent: a key or a token named as the acting project,
    # a key in the path, a real key id with a wrong secret.
    for credential, quoted in ((key, key.key), (Credential.bearer("carol", token), token)):
        response = world.api.call(
            "GET", "/v1/models", credential, headers={"x-modelyard-project": quoted}
        )
        assert response.status_code == 403, response.text
    assert world.api.call("GET", f"/admin/projects/{key.key}/keys").status_code == 401
    wrong_secret = f"myd-{key.key_id}-{'y' * 43}"
    assert world.status_with(Credential.bearer("wrong", wrong_secret)) == 401

    in_path = f"GET /admin/projects/myd-{key.key_id}-"
    events = poll_audit(
        world, lambda events: any(str(e["object"]).startswith(in_path) for e in events)
    )
    assert any(str(event["object"]).startswith(in_path) for event in events)
    assert world.gateway.admin_key is not None
    secrets = {*world.api.keys_seen, world.gateway.admin_key, wrong_secret, token}
    assert key.key in secrets
    for event in events:
        for name, value in event.items():
            for secret in secrets:
                assert secret not in str(value), f"audit seq {event['seq']} {name} holds a secret"
    log = world.gateway.log()
    assert not [secret for secret in secrets if secret in log], "the gateway log holds a secret"


# -- the command line --------------------------------------------------------------------------


def modelyard(
    *args: str, key: str | None = None, url: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("MODELYARD_")}
    if key is not None:
        env["MODELYARD_API_KEY"] = key
    if url is not None:
        env["MODELYARD_URL"] = url
    return subprocess.run(
        [sys.executable, "-m", "modelyard", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_creates_a_project_then_mints_and_revokes_a_key(world: World) -> None:
    owner_key, url = world.gateway.admin_key, world.gateway.base_url
    project = world.unique("cli")
    created = modelyard(
        "projects", "create", project, "--model", "acme-small", key=owner_key, url=url
    )
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["id"] == project
    shown = world.api.call("GET", f"/admin/projects/{project}", world.owner).json()
    assert shown["allowed_models"] == ["acme-small"]

    minted = modelyard(
        "keys", "create", project, "ci", "--role", "developer", key=owner_key, url=url
    )
    assert minted.returncode == 0, minted.stderr
    made = json.loads(minted.stdout)
    world.api.keys_seen.append(made["key"])
    assert (made["project"], made["name"], made["role"]) == (project, "ci", "developer")
    ci = Credential.bearer("ci", made["key"], made["id"])
    assert world.api.call("GET", "/admin/whoami", ci).json()["project"] == project

    revoked = modelyard("keys", "revoke", project, made["id"], key=owner_key, url=url)
    assert revoked.returncode == 0, revoked.stderr
    assert json.loads(revoked.stdout)["revoked_at"] is not None
    assert world.status_with(ci) == 401
    for run in (created, minted, revoked):
        assert owner_key is not None and owner_key not in run.stdout + run.stderr


def test_cli_reports_a_refusal_and_exits_nonzero(world: World) -> None:
    viewer = world.credential(Role.VIEWER)
    run = modelyard(
        "keys",
        "create",
        HOME,
        "mine",
        "--role",
        "developer",
        key=viewer.key,
        url=world.gateway.base_url,
    )
    assert run.returncode == 1
    assert "403 Permission denied: 'keys.manage_own'" in run.stderr


def test_audit_chain_verifies_intact(world: World) -> None:
    # Last in the file: the chain then holds everything the session wrote.
    run = modelyard("audit", "verify", "--data-dir", str(world.gateway.data_dir))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "intact" in run.stdout
