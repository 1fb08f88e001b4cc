"""Content logging for the projects that opted in: prompts and completions kept for a set number
of days, then deleted. Projects that did not opt in (the default) never reach this module.

Writes go through a background thread so requests never wait on the database; the same thread
deletes expired content at start and then every ten minutes.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, delete, insert

from modelyard.db.schema import content_log

log = logging.getLogger(__name__)

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
    def __init__(self, engine: Engine, queue_size: int = 10_000) -> None:
        self._engine = engine
        self._queue: queue.Queue[ContentRecord | None] = queue.Queue(queue_size)
        self._thread = threading.Thread(target=self._run, name="content-log", daemon=True)
        self._thread.start()

    def submit(self, record: ContentRecord) -> None:
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self._write([record])  # never drop what a project asked to keep

    def close(self, timeout: float = 10.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

    def purge_expired(self) -> int:
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

    def _run(self) -> None:
        next_purge = 0.0
        while True:
            if time.monotonic() >= next_purge:
                self._retrying(self.purge_expired, attempts=1)
                next_purge = time.monotonic() + PURGE_EVERY_S
            try:
                record = self._queue.get(timeout=5.0)
            except queue.Empty:
                continue
            if record is None:
                return
            self._retrying(functools.partial(self._write, [record]), attempts=30)

    def _write(self, records: list[ContentRecord]) -> None:
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

    @staticmethod
    def _retrying(work: Callable[[], object], attempts: int) -> None:
        for attempt in range(attempts):
            try:
                work()
                return
            except Exception as exc:  # the database may be briefly away; never log content
                log.warning("content log: %s (attempt %d)", type(exc).__name__, attempt + 1)
                time.sleep(min(2.0**attempt * 0.1, 5.0))
