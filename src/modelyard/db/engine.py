"""The SQLAlchemy engine for the configured database, migrated to the newest schema at start-up.

SQLite (the embedded default) runs in WAL mode with a busy timeout, so readers never wait for
the writer; PostgreSQL is used as is. All access is synchronous and runs off the event loop.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, func, select
from sqlalchemy.engine import ExceptionContext

# The advisory lock that serializes migrations on PostgreSQL ("myd_migr" as an integer).
_PG_MIGRATION_LOCK = 0x6D79645F6D696772


def open_database(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _tune_sqlite)
        event.listen(engine, "handle_error", _close_locked_sqlite_connection)
    else:
        engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)
    migrate(engine)
    return engine


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision (a no-op when it is already there)."""
    config = Config()
    config.set_main_option(
        "script_location", str(resources.files("modelyard.db").joinpath("migrations"))
    )
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Replicas starting together on one database migrate in turn; the later ones then
            # find the schema current. (PostgreSQL DDL is transactional, so this lock covers it.)
            connection.execute(select(func.pg_advisory_xact_lock(_PG_MIGRATION_LOCK)))
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    # Deleted rows (expired content, idempotent replies) are overwritten, not left in free pages.
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


def _close_locked_sqlite_connection(context: ExceptionContext) -> None:
    # Python 3.11's sqlite3 no longer resets unfinished statements on rollback, so a connection
    # whose write failed with "database is locked" can still hold an old read snapshot; back in
    # the pool it would fail every later write the same way. Close it instead (it alone).
    if "database is locked" in str(context.original_exception):
        context.is_disconnect = True
        context.invalidate_pool_on_disconnect = False
