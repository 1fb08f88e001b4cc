"""Nobody hands out more than they hold, writes a field they may not set, reaches into another
project, or learns whether a project they hold no role on exists."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from modelyard.policy.rbac import Role
from tests.access.world import CHAT, HOME, OTHER, Credential, World


def denial(response: httpx.Response) -> str:
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("permission_error", "permission_denied")
    message: str = error["message"]
    return message


def in_an_hour(minutes: int = 60) -> datetime:
    return (datetime.now(UTC) + timedelta(minutes=minutes)).replace(microsecond=0)


# -- roles -------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["admin", "owner"])
def test_developer_cannot_mint_a_key_with_a_stronger_role(world: World, role: str) -> None:
    before = len(world.keys_of(HOME))
    response = world.api.call(
        "POST",
        f"/admin/projects/{HOME}/keys",
        world.credential(Role.DEVELOPER),
        json={"name": world.unique("grab"), "role": role},
    )
    assert "'keys.manage_own' on project 'alpha'" in denial(response)
    assert len(world.keys_of(HOME)) == before


@pytest.mark.parametrize("role", ["owner", "auditor"])  # auditor holds audit.read; admin does not
@pytest.mark.parametrize("through", ["membership", "key"])
def test_admin_cannot_grant_a_role_with_rights_it_lacks(
    world: World, role: str, through: str
) -> None:
    admin = world.credential(Role.ADMIN)
    if through == "membership":
        subject = world.unique("someone")
        response = world.api.call(
            "PUT", f"/admin/projects/{HOME}/members/{subject}", admin, json={"role": role}
        )
        assert "'members.manage' on project 'alpha'" in denial(response)
        members = world.api.call("GET", f"/admin/projects/{HOME}/members", world.owner).json()
        assert subject not in {member["subject"] for member in members["data"]}
    else:
        before = len(world.keys_of(HOME))
        response = world.api.call(
            "POST", f"/admin/projects/{HOME}/keys", admin, json={"name": "x", "role": role}
        )
        assert "'keys.manage' on project 'alpha'" in denial(response)
        assert len(world.keys_of(HOME)) == before


def test_rotation_cannot_hand_out_more_than_the_rotator_holds(world: World) -> None:
    target = world.mint(HOME, role="admin")
    developer = world.minted_credential(HOME, role="developer", models=["acme-small"])
    response = world.api.call(
        "POST",
        f"/admin/projects/{HOME}/keys/{target['id']}/rotate",
        developer,
        json={"grace_seconds": 0},
    )
    assert response.status_code in (403, 404), response.text


# -- models and lifetime -----------------------------------------------------------------------


def test_model_limited_key_cannot_mint_a_key_for_other_models(world: World) -> None:
    limited = world.minted_credential(HOME, role="developer", models=["acme-small"])
    for models in (["acme-large"], ["acme-small", "acme-large"]):
        response = world.api.call(
            "POST",
            f"/admin/projects/{HOME}/keys",
            limited,
            json={"name": world.unique("wider"), "role": "developer", "models": models},
        )
        assert "on model 'acme-large'" in denial(response)
    inherited = world.mint(HOME, limited, role="developer")
    assert inherited["models"] == ["acme-small"]
    chat = world.api.call(
        "POST",
        "/v1/chat/completions",
        Credential.bearer("inherited", inherited["key"]),
        json={**CHAT, "model": "acme-large"},
    )
    assert "'models.use' on model 'acme-large'" in denial(chat)


def test_key_cannot_outlive_the_key_that_minted_it(world: World) -> None:
    deadline = in_an_hour()
    creator = world.minted_credential(HOME, role="developer", expires_at=deadline.isoformat())
    for wanted, kept in (
        (None, deadline),
        (in_an_hour(120), deadline),
        (in_an_hour(30), in_an_hour(30)),
    ):
        body: dict[str, Any] = {"role": "developer"}
        if wanted is not None:
            body["expires_at"] = wanted.isoformat()
        minted = world.mint(HOME, creator, **body)
        assert datetime.fromisoformat(minted["expires_at"]) == kept, (wanted, minted)


# -- fields a caller may not set ---------------------------------------------------------------

FORBIDDEN_FIELDS = {
    "project_id": OTHER,
    "subject": "someone-else",
    "created_by": "someone-else",
    "digest": "0" * 64,
    "revoked_at": None,
}


@pytest.mark.parametrize("name", sorted(FORBIDDEN_FIELDS))
def test_key_body_with_a_field_the_caller_may_not_set_creates_nothing(
    world: World, name: str
) -> None:
    keys_before = {project: len(world.keys_of(project)) for project in (HOME, OTHER)}
    response = world.api.call(
        "POST",
        f"/admin/projects/{HOME}/keys",
        world.owner,
        json={"name": world.unique("sneaky"), "role": "viewer", name: FORBIDDEN_FIELDS[name]},
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == name
    assert {project: len(world.keys_of(project)) for project in (HOME, OTHER)} == keys_before


@pytest.mark.parametrize("name", sorted(FORBIDDEN_FIELDS))
def test_project_body_with_a_field_the_caller_may_not_set_creates_nothing(
    world: World, name: str
) -> None:
    project = world.unique("sneaky")
    response = world.api.call(
        "POST", "/admin/projects", world.owner, json={"id": project, name: FORBIDDEN_FIELDS[name]}
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == name
    assert world.api.call("GET", f"/admin/projects/{project}", world.owner).status_code == 404


def test_unknown_admin_fields_are_reported_as_unsupported_parameters(world: World) -> None:
    response = world.api.call(
        "POST", f"/admin/projects/{HOME}/keys", world.owner, json={"name": "x", "digest": "0"}
    )
    assert response.json()["error"]["code"] == "unsupported_parameter"


# -- other projects and other people -----------------------------------------------------------


@pytest.mark.parametrize("via", [HOME, OTHER])
@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [("GET", "", None), ("POST", "/revoke", None), ("POST", "/rotate", {"grace_seconds": 0})],
    ids=["read", "revoke", "rotate"],
)
def test_another_projects_key_is_not_found_by_id(
    world: World, via: str, method: str, suffix: str, body: dict[str, Any] | None
) -> None:
    foreign = world.minted_credential(OTHER, role="viewer")
    response = world.api.call(
        method,
        f"/admin/projects/{via}/keys/{foreign.key_id}{suffix}",
        world.credential(Role.ADMIN),
        json=body,
    )
    assert response.status_code == 404, response.text
    assert world.status_with(foreign) == 200


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [("GET", "", None), ("POST", "/revoke", None), ("POST", "/rotate", {"grace_seconds": 0})],
    ids=["read", "revoke", "rotate"],
)
def test_developer_cannot_touch_another_members_key(
    world: World, method: str, suffix: str, body: dict[str, Any] | None
) -> None:
    alice = Credential.bearer("alice", world.identity.token("alice"))
    bob = Credential.bearer("bob", world.identity.token("bob"))
    alices = world.minted_credential(HOME, alice, role="developer")
    for developer in (bob, world.credential(Role.DEVELOPER)):
        response = world.api.call(
            method, f"/admin/projects/{HOME}/keys/{alices.key_id}{suffix}", developer, json=body
        )
        # Developers see their own keys only, so the gateway may answer either way; it must
        # refuse, and leave the key as it was.
        assert response.status_code in (403, 404), (developer.label, response.text)
    listed = world.api.call("GET", f"/admin/projects/{HOME}/keys", bob).json()["data"]
    assert alices.key_id not in {key["id"] for key in listed}
    assert world.status_with(alices) == 200


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/embeddings"])
def test_viewer_cannot_use_models(world: World, path: str) -> None:
    body = CHAT if "chat" in path else {"model": "acme-embed", "input": "hi"}
    response = world.api.call("POST", path, world.credential(Role.VIEWER), json=body)
    message = denial(response)
    assert "'models.use' on project 'alpha'" in message
    assert "viewer" in message


def test_admin_may_narrow_a_projects_models_but_only_the_owner_may_widen(world: World) -> None:
    project = world.create_project(allowed_models=["acme-large", "acme-small"])
    admin = world.minted_credential(project, role="admin")

    def allow(who: Credential, models: list[str] | None) -> httpx.Response:
        return world.api.call(
            "PATCH", f"/admin/projects/{project}", who, json={"allowed_models": models}
        )

    narrowed = allow(admin, ["acme-small"])
    assert narrowed.status_code == 200, narrowed.text
    assert narrowed.json()["allowed_models"] == ["acme-small"]
    chat = world.api.call(
        "POST", "/v1/chat/completions", admin, json={**CHAT, "model": "acme-large"}
    )
    assert f"the project '{project}' does not allow this model" in denial(chat)
    for wider in (["acme-small", "acme-large"], None):
        assert "only an owner may widen" in denial(allow(admin, wider))
    widened = allow(world.owner, ["acme-small", "acme-large"])
    assert widened.status_code == 200, widened.text
    assert widened.json()["allowed_models"] == ["acme-large", "acme-small"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v1/models", None),
        ("POST", "/v1/chat/completions", CHAT),
        ("GET", "/admin/whoami", None),
        ("GET", "/admin/projects/{project}", None),
    ],
)
def test_a_foreign_project_answers_like_a_missing_one(
    world: World, method: str, path: str, body: dict[str, Any] | None
) -> None:
    """Named in x-modelyard-project or in the path, a project the key holds no role on gets the
    same answer, word for word, as one that does not exist."""
    developer = world.credential(Role.DEVELOPER)
    answers = []
    for project in (OTHER, "no-such-project"):
        in_path = "{project}" in path
        response = world.api.call(
            method,
            path.format(project=project),
            developer,
            json=body,
            headers={} if in_path else {"x-modelyard-project": project},
        )
        assert response.status_code in (403, 404), response.text
        answers.append((response.status_code, json.dumps(response.json()).replace(project, "P")))
    assert answers[0] == answers[1]


# -- replays -----------------------------------------------------------------------------------


def test_idempotent_replay_is_only_for_a_caller_allowed_to_make_the_request(
    world: World,
) -> None:
    idempotency = {"idempotency-key": world.unique("replay")}
    body = {"name": world.unique("ops"), "role": "admin"}
    path = f"/admin/projects/{HOME}/keys"
    first = world.api.call("POST", path, world.owner, json=body, headers=idempotency)
    assert first.status_code == 201, first.text
    outsider = world.credential(Role.VIEWER, OTHER)
    replay = world.api.call("POST", path, outsider, json=body, headers=idempotency)
    assert first.json()["key"] not in replay.text
    assert replay.status_code == 404, replay.text
