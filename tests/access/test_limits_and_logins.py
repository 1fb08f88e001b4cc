"""Limits set on a key hold against that key, and failed logins cannot flood the audit log."""

from __future__ import annotations

from pathlib import Path

import httpx

from modelyard.audit.log import AuditLog
from modelyard.db.engine import open_database
from modelyard.policy.rbac import Role
from modelyard.testing.fake_upstream import FakeUpstream
from tests.access.world import HOME, World
from tests.remote.fixtures import remote_gateway_at

LIMITS = "/admin/projects/{project}/keys/{key_id}/limits"
TIGHT = {"max_concurrent": 1, "requests_per_minute": 10, "budgets_usd": {"day": "1"}}


def set_limits(world: World, key_id: str, who: object, body: dict[str, object]) -> httpx.Response:
    return world.api.call(
        "PUT",
        LIMITS.format(project=HOME, key_id=key_id),
        who,
        json=body,  # type: ignore[arg-type]
    )


def test_a_key_cannot_change_its_own_limits_even_as_admin(world: World) -> None:
    key = world.minted_credential(HOME, role="admin")
    assert key.key_id is not None
    assert set_limits(world, key.key_id, world.owner, TIGHT).status_code == 200
    for body in ({}, TIGHT, {**TIGHT, "max_concurrent": 5}):
        refused = set_limits(world, key.key_id, key, body)
        assert refused.status_code == 403, refused.text
        assert "its own limits" in refused.json()["error"]["message"]
    current = world.api.call("GET", LIMITS.format(project=HOME, key_id=key.key_id), world.owner)
    assert current.json()["max_concurrent"] == 1


def test_loosening_a_keys_limits_needs_a_role_above_the_keys(world: World) -> None:
    admin_key = world.minted_credential(HOME, role="admin")
    other_admin = world.credential(Role.ADMIN)
    assert admin_key.key_id is not None
    assert set_limits(world, admin_key.key_id, world.owner, TIGHT).status_code == 200
    # A peer may tighten, not loosen.
    assert (
        set_limits(
            world, admin_key.key_id, other_admin, {**TIGHT, "requests_per_minute": 5}
        ).status_code
        == 200
    )
    loosened = set_limits(world, admin_key.key_id, other_admin, {})
    assert loosened.status_code == 403, loosened.text
    assert "needs a role above" in loosened.json()["error"]["message"]
    # Over a developer's key, an admin stands above: it may lift.
    developer_key = world.minted_credential(HOME, role="developer")
    assert developer_key.key_id is not None
    assert set_limits(world, developer_key.key_id, world.owner, TIGHT).status_code == 200
    assert set_limits(world, developer_key.key_id, other_admin, {}).status_code == 200
    # And the owner may lift anything.
    assert set_limits(world, admin_key.key_id, world.owner, {}).status_code == 200


def test_a_flood_of_failed_logins_is_recorded_up_to_a_bound_then_counted(
    tmp_path: Path, upstream_server: FakeUpstream
) -> None:
    gateway = remote_gateway_at(
        tmp_path, upstream_server.base_url, {"MODELYARD_AUDIT_FAILED_LOGINS_PER_MINUTE": "5"}
    )
    try:
        for attempt in range(200):
            answer = httpx.get(
                f"{gateway.base_url}/admin/whoami",
                headers={"authorization": f"Bearer myd-nope-{attempt}"},
            )
            assert answer.status_code == 401
    finally:
        gateway.stop()  # counted failures are written as one record when it stops
    audit = AuditLog(open_database(f"sqlite:///{gateway.data_dir / 'modelyard.db'}"))
    logins = [event for event in audit.read(limit=1000) if event["action"] == "auth.login"]
    one_by_one = [event for event in logins if event["object"].startswith("GET ")]
    counted = [event for event in logins if event["object"].endswith("failed logins")]
    # Five recorded as they came (or a few more, if a minute turned over meanwhile), the rest
    # counted: 200 in all, in a handful of records instead of 200.
    assert 5 <= len(one_by_one) <= 10
    assert len(one_by_one) + sum(int(e["object"].split()[0]) for e in counted) == 200
    assert len(logins) <= 12
