"""DirectorySync in one process, on a real SQLite file: it reloads only when the configuration
version moved, never lets a stale reload undo a change made here, and rides out a database
that is away without losing its view or logging connection details."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, insert, text

from modelyard.auth.directory import Directory, ProjectRecord
from modelyard.auth.directory_sync import DirectorySync, bump_config_version
from modelyard.db.engine import open_database
from modelyard.db.schema import projects
from tests.support.ports import free_port


@pytest.fixture()
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = open_database(f"sqlite:///{tmp_path / 'modelyard.db'}")
    yield engine
    engine.dispose()


def _add_project_elsewhere(engine: Engine, project_id: str) -> None:
    """What another replica's admin service commits: a change and a version bump together."""
    with engine.begin() as connection:
        bump_config_version(connection)
        connection.execute(insert(projects).values(**_project_row(project_id)))


def _project_row(project_id: str) -> dict[str, object]:
    return {
        "id": project_id,
        "description": "",
        "allowed_models": None,
        "allowed_cidrs": None,
        "content_retention_days": None,
        "created_at": datetime.now(UTC),
        "created_by": "test",
    }


def test_poll_reloads_only_when_the_version_moved(engine: Engine) -> None:
    directory = Directory.load(engine)
    sync = DirectorySync(engine, directory, interval_s=1.0)
    assert sync.poll()  # the first poll always reloads
    assert not sync.poll()
    _add_project_elsewhere(engine, "made-elsewhere")
    assert "made-elsewhere" not in directory.projects
    assert sync.poll()
    assert "made-elsewhere" in directory.projects
    assert not sync.poll()


def test_reload_that_raced_a_local_change_is_dropped() -> None:
    directory = Directory()
    before = directory.revision
    stale = Directory()
    directory.put_project(ProjectRecord.from_row(_project_row("made-here")))
    assert not directory.replace_with(stale, based_on=before)
    assert "made-here" in directory.projects
    assert directory.replace_with(stale, based_on=directory.revision)
    assert directory.projects == {}


def test_database_away_keeps_the_view_warns_once_and_recovers(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    directory = Directory.load(engine)
    sync = DirectorySync(engine, directory, interval_s=0.01)
    asyncio.run(sync.poll_safely())
    known = dict(directory.projects)
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE config_version RENAME TO config_version_away"))
    with caplog.at_level(logging.INFO, logger="modelyard.auth.directory_sync"):
        asyncio.run(sync.poll_safely())
        asyncio.run(sync.poll_safely())
        assert directory.projects == known
        assert [r.levelname for r in caplog.records] == ["WARNING"]
        with engine.begin() as connection:
            connection.execute(text("ALTER TABLE config_version_away RENAME TO config_version"))
        _add_project_elsewhere(engine, "after-outage")
        asyncio.run(sync.poll_safely())
    assert "after-outage" in directory.projects
    assert [r.levelname for r in caplog.records] == ["WARNING", "INFO"]


def test_unreachable_postgres_is_logged_without_the_url_or_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    password = "pw-canary-3f9a1c"
    # Nothing listens on this port: the connection is refused at once.
    engine = create_engine(
        f"postgresql+psycopg://modelyard:{password}@127.0.0.1:{free_port()}/modelyard"
    )
    directory = Directory()
    directory.put_project(ProjectRecord.from_row(_project_row("kept")))
    sync = DirectorySync(engine, directory, interval_s=0.01)
    with caplog.at_level(logging.WARNING, logger="modelyard.auth.directory_sync"):
        asyncio.run(sync.poll_safely())
    engine.dispose()
    assert list(directory.projects) == ["kept"]
    assert len(caplog.records) == 1
    assert "OperationalError" in caplog.text
    assert password not in caplog.text and "127.0.0.1" not in caplog.text
