"""Console sessions on a real SQLite database, with a clock the test moves: only the token's hash
is stored, a session ends when idle, at its lifetime, at its credential's expiry and at
sign-out, and the sweep deletes what has ended."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from modelyard.auth.sessions import IDLE, LIFETIME, SessionCredential, SessionStore
from modelyard.db.engine import open_database
from modelyard.db.schema import console_sessions
from modelyard.policy.rbac import Role

START = datetime(2026, 12, 5, 9, tzinfo=UTC)
KEY = SessionCredential("key", "key:abc", "myd-abc-…", digest="d" * 64, key_id="abc")


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture()
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = open_database(f"sqlite:///{tmp_path / 'modelyard.db'}")
    yield engine
    engine.dispose()


def stored(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(console_sessions)).scalar())


def test_only_the_hash_of_the_token_is_stored_and_the_credential_round_trips(
    engine: Engine,
) -> None:
    store = SessionStore(engine, Clock())
    token, opened = store.open(KEY)

    with engine.connect() as connection:
        row = connection.execute(select(console_sessions)).mappings().one()
    assert token not in str(dict(row))
    found = store.find(token)
    assert found is not None
    assert found.credential == KEY
    assert found.csrf_token == opened.csrf_token != token
    assert store.find(token + "x") is None


def test_a_session_ends_when_idle_and_at_its_lifetime(engine: Engine) -> None:
    clock = Clock()
    store = SessionStore(engine, clock)
    idle_token, _ = store.open(KEY)
    busy_token, _ = store.open(KEY)

    # The busy session is used every half idle period; the idle one is not.
    while clock.now < START + LIFETIME - IDLE / 2:
        clock.now += IDLE / 2
        assert store.find(busy_token) is not None
    assert store.find(idle_token) is None
    clock.now = START + LIFETIME
    assert store.find(busy_token) is None
    assert stored(engine) == 0


def test_a_token_credential_ends_the_session_at_its_own_expiry(engine: Engine) -> None:
    clock = Clock()
    store = SessionStore(engine, clock)
    token_credential = SessionCredential(
        "token",
        "oidc:ana",
        "oidc:ana",
        grants={"team": Role.DEVELOPER},
        expires_at=START + timedelta(minutes=10),
    )
    token, opened = store.open(token_credential)

    assert opened.expires_at == START + timedelta(minutes=10)
    assert store.find(token) is not None
    clock.now += timedelta(minutes=10)
    assert store.find(token) is None


def test_sign_out_deletes_the_session_and_the_sweep_deletes_ended_ones(engine: Engine) -> None:
    clock = Clock()
    store = SessionStore(engine, clock)
    signed_out, _ = store.open(KEY)
    store.open(KEY)
    live, _ = store.open(KEY)

    assert store.close(signed_out) is True
    assert store.close(signed_out) is False
    assert store.find(signed_out) is None
    clock.now += IDLE - timedelta(seconds=1)
    assert store.find(live) is not None  # touched: its idle clock starts again
    clock.now += timedelta(seconds=2)
    assert store.sweep() == 1
    assert stored(engine) == 1
