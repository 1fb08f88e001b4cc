"""Authentication from headers: project keys (expiry, revocation, rotation grace), the bootstrap
key, the acting project, and what a failure says (never the key)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from modelyard.auth.authenticator import Authenticator
from modelyard.auth.directory import Directory, KeyRecord, ProjectRecord
from modelyard.auth.keys import (
    compose_project_key,
    digest_key,
    key_hint,
    keyed_digest,
    new_key_id,
    project_key_id,
)
from modelyard.errors import AuthenticationFailed, PermissionDenied
from modelyard.policy.rbac import Role

SECRET = b"s" * 32
ADMIN = "myd-admin-bootstrap-key-for-tests-0123456789"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def project(project_id: str) -> ProjectRecord:
    return ProjectRecord(project_id, "", None, None, None, T0, "test")


def mint(directory: Directory, project_id: str = "alpha", **changes: object) -> str:
    key_id = new_key_id()
    key = compose_project_key(key_id)
    record = KeyRecord(
        id=key_id,
        project_id=project_id,
        name="k",
        subject="dev@alpha",
        role=Role.DEVELOPER,
        models=None,
        digest=keyed_digest(SECRET, key),
        created_at=T0,
        created_by="test",
        expires_at=None,
        revoked_at=None,
        replaced_by=None,
    )
    directory.put_key(dataclasses.replace(record, **changes))  # type: ignore[arg-type]
    return key


@pytest.fixture()
def clock() -> Clock:
    return Clock()


@pytest.fixture()
def directory() -> Directory:
    directory = Directory()
    for name in ("default", "alpha", "beta"):
        directory.put_project(project(name))
    return directory


@pytest.fixture()
def authenticator(directory: Directory, clock: Clock) -> Authenticator:
    return Authenticator(digest_key(ADMIN), directory, SECRET, clock=clock)


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def test_a_project_key_authenticates_as_its_subject_in_its_project(
    authenticator: Authenticator, directory: Directory
) -> None:
    key = mint(directory)
    principal = authenticator.authenticate(bearer(key))
    assert (principal.subject, principal.kind, principal.project) == ("dev@alpha", "key", "alpha")
    assert principal.role_in("alpha") is Role.DEVELOPER
    assert principal.role_in("beta") is None
    assert authenticator.authenticate({"api-key": key}) == principal


def test_the_key_format_has_a_public_id_and_256_secret_bits() -> None:
    key_id = new_key_id()
    key = compose_project_key(key_id)
    assert project_key_id(key) == key_id
    assert len(key) - len(f"myd-{key_id}-") >= 43  # token_urlsafe(32)
    assert key_hint(key) == f"myd-{key_id}-…"
    assert key.split("-", 2)[2] not in key_hint(key)


def test_a_forged_secret_for_a_real_key_id_is_refused_without_echoing_it(
    authenticator: Authenticator, directory: Directory
) -> None:
    key = mint(directory)
    forged = key[:-6] + ("A" * 6 if not key.endswith("AAAAAA") else "B" * 6)
    with pytest.raises(AuthenticationFailed) as failure:
        authenticator.authenticate(bearer(forged))
    assert forged not in failure.value.message
    assert forged[20:] not in failure.value.message


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": "Basic dXNlcjpwYXNz"},
        {"authorization": "Bearer "},
        {"authorization": "Bearer not-a-key"},
        {"authorization": "Bearer myd-abcdefghijkl-" + "x" * 43},
    ],
)
def test_missing_malformed_and_unknown_credentials_are_401(
    authenticator: Authenticator, headers: dict[str, str]
) -> None:
    with pytest.raises(AuthenticationFailed):
        authenticator.authenticate(headers)


def test_two_different_keys_in_one_request_are_refused(
    authenticator: Authenticator, directory: Directory
) -> None:
    with pytest.raises(AuthenticationFailed, match="different keys"):
        authenticator.authenticate({**bearer(mint(directory)), "api-key": mint(directory)})


def test_revocation_takes_effect_on_the_next_request(
    authenticator: Authenticator, directory: Directory, clock: Clock
) -> None:
    key = mint(directory)
    authenticator.authenticate(bearer(key))  # now cached
    record = directory.keys[project_key_id(key) or ""]
    directory.put_key(dataclasses.replace(record, revoked_at=clock.now))
    with pytest.raises(AuthenticationFailed, match="revoked"):
        authenticator.authenticate(bearer(key))


def test_an_expired_key_is_refused_and_says_so(
    authenticator: Authenticator, directory: Directory, clock: Clock
) -> None:
    key = mint(directory, expires_at=T0 + timedelta(hours=1))
    assert authenticator.authenticate(bearer(key)).expires_at == T0 + timedelta(hours=1)
    clock.now = T0 + timedelta(hours=1)
    with pytest.raises(AuthenticationFailed, match="expired"):
        authenticator.authenticate(bearer(key))


def test_a_rotated_key_works_until_its_grace_period_ends(
    authenticator: Authenticator, directory: Directory, clock: Clock
) -> None:
    old = mint(directory, expires_at=T0 + timedelta(minutes=5), replaced_by="newkeyid0000")
    clock.now = T0 + timedelta(minutes=4, seconds=59)
    authenticator.authenticate(bearer(old))
    clock.now = T0 + timedelta(minutes=5)
    with pytest.raises(AuthenticationFailed, match="rotated"):
        authenticator.authenticate(bearer(old))


def test_the_bootstrap_key_is_owner_everywhere_acting_in_default(
    authenticator: Authenticator,
) -> None:
    principal = authenticator.authenticate(bearer(ADMIN))
    assert principal.is_owner() and principal.project == "default"
    named = authenticator.authenticate({**bearer(ADMIN), "x-modelyard-project": "beta"})
    assert named.project == "beta"


def test_naming_a_project_that_is_missing_or_not_yours_gives_the_same_answer(
    authenticator: Authenticator, directory: Directory
) -> None:
    key = mint(directory)
    messages = []
    for name in ("beta", "no-such-project"):
        with pytest.raises(PermissionDenied) as denied:
            authenticator.authenticate({**bearer(key), "x-modelyard-project": name})
        messages.append(denied.value.message.replace(name, "<p>"))
    assert messages[0] == messages[1]
