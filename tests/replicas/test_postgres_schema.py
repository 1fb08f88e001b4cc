"""The migrations on both databases Modelyard runs on: a fresh database upgrades to the newest
revision, builds exactly the tables `db/schema.py` declares, and a second run changes nothing.
On PostgreSQL, replicas that start together on a fresh database migrate it once, in turn."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, select

from modelyard.db.engine import migrate, open_database
from modelyard.db.schema import config_version, metadata
from tests.support.services import PostgresServer


@pytest.fixture(params=["postgresql", "sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'modelyard.db'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    yield server.create_database(f"schema_{uuid.uuid4().hex[:12]}")


def test_fresh_database_migrates_to_head_and_matches_the_schema(database_url: str) -> None:
    engine = open_database(database_url)
    try:
        assert _current_revision(engine) == _head_revision()
        with engine.connect() as connection:
            assert compare_metadata(MigrationContext.configure(connection), metadata) == []
            assert connection.execute(select(config_version)).all() == [(1, 0)]
    finally:
        engine.dispose()


def test_second_migration_run_is_a_no_op(database_url: str) -> None:
    engine = open_database(database_url)
    try:
        before = _fingerprint(engine)
        migrate(engine)
        migrate(engine)
        assert _fingerprint(engine) == before
        assert _current_revision(engine) == _head_revision()
        with engine.connect() as connection:
            assert connection.execute(select(config_version)).all() == [(1, 0)]
    finally:
        engine.dispose()


def test_replicas_starting_together_migrate_a_fresh_postgres_database_once(
    postgres_server: PostgresServer,
) -> None:
    url = postgres_server.create_database(f"together_{uuid.uuid4().hex[:12]}")
    starting = [
        subprocess.Popen(
            [sys.executable, "-c", _OPEN_DATABASE, url],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [process.communicate(timeout=120)[0] for process in starting]
    assert [process.returncode for process in starting] == [0] * 4, "\n".join(outputs)
    engine = open_database(url)
    try:
        assert _current_revision(engine) == _head_revision()
        with engine.connect() as connection:
            assert connection.execute(select(config_version)).all() == [(1, 0)]
    finally:
        engine.dispose()


_OPEN_DATABASE = "import sys; from modelyard.db.engine import open_database as o; o(sys.argv[1])"


def _head_revision() -> str | None:
    config = Config()
    config.set_main_option(
        "script_location", str(resources.files("modelyard.db").joinpath("migrations"))
    )
    return ScriptDirectory.from_config(config).get_current_head()


def _current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def _fingerprint(engine: Engine) -> dict[str, Any]:
    """Tables, columns, indexes and the revision, as plain values that compare with ==."""
    inspector = inspect(engine)
    tables = {}
    for table in sorted(inspector.get_table_names()):
        columns = [(c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(table)]
        indexes = sorted(
            (i["name"] or "", tuple(i["column_names"])) for i in inspector.get_indexes(table)
        )
        tables[table] = (
            columns,
            indexes,
            inspector.get_pk_constraint(table)["constrained_columns"],
        )
    return {"tables": tables, "revision": _current_revision(engine)}
