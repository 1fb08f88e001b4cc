"""Content logging for the projects that opted in: prompts and completions kept for a set number
of days, then deleted. Projects that did not opt in (the default) never reach this module.

`ContentLog` is the table's store. Records reach `write` through the app's content
`BackgroundWriter` (never on the request path; a request of an opted-in project claims its
place in that writer's backlog when it is admitted), and the app's lifespan calls
`purge_expired` at start and every `PURGE_EVERY_S`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, delete, insert

from modelyard.db.schema import content_log

PURGE_EVERY_S = 600.0


@dataclass(frozen=True)
class ContentRecord:
    project_id: str
    request_id: str
    model: str
    prompt: Any
    completion: Any
    retention_days: int


class ContentLog:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def write(self, records: Sequence[ContentRecord]) -> None:
        """Insert in one transaction; each record expires `retention_days` after now."""
        now = datetime.now(UTC)
        with self._engine.begin() as connection:
            connection.execute(
                insert(content_log),
                [
                    {
                        "project_id": r.project_id,
                        "request_id": r.request_id,
                        "model": r.model,
                        "prompt": r.prompt,
                        "completion": r.completion,
                        "created_at": now,
                        "expires_at": now + timedelta(days=r.retention_days),
                    }
                    for r in records
                ],
            )

    def purge_expired(self) -> int:
        """Delete expired content, and on SQLite its old page images too; returns rows deleted."""
        with self._engine.begin() as connection:
            result = connection.execute(
                delete(content_log).where(content_log.c.expires_at <= datetime.now(UTC))
            )
        deleted = result.rowcount or 0
        if deleted and self._engine.dialect.name == "sqlite":
            # The WAL still holds the deleted pages' old images until a checkpoint resets it.
            with self._engine.connect() as connection:
                connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        return deleted
