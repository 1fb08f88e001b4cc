"""Stored Responses API responses: what `GET /v1/responses/{id}` returns, the input items it
lists, and the conversation a later `previous_response_id` continues, scoped to the project that
made them and kept until they expire.

Only projects that keep content (`content_retention_days` set) store anything, and only when the
request did not say `store: false`. A row expires `min(the project's retention, the
MODELYARD_RESPONSES_TTL_DAYS setting)` after it was written; expired rows are invisible at once
and deleted by the app's periodic purge. A response of another project reads as missing, never
as forbidden, so that its existence does not leak.

This is the one database write a request waits on (every other goes through a background
writer): a client may name the response in its very next call, possibly on another replica, so
it is committed before the answer (or `response.completed`) is sent. The documents are stored
as compact JSON (orjson bytes) and never logged. SQL runs on a thread, never on the event loop;
it works on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import orjson
from sqlalchemy import Engine, delete, insert, select
from sqlalchemy.exc import SQLAlchemyError

from modelyard.db.schema import stored_responses
from modelyard.errors import ServiceUnavailable

log = logging.getLogger(__name__)

JsonObject = dict[str, Any]
T = TypeVar("T")


@dataclass(frozen=True)
class StoredResponse:
    id: str
    project_id: str
    # The response object, as GET returns it.
    response: JsonObject
    # The request's input, as items with ids (input_items).
    input_items: list[JsonObject]
    # Canonical chat messages a later turn continues from (no instructions).
    conversation: list[JsonObject]
    retention_days: int


class StoredResponses:
    def __init__(self, engine: Engine, ttl_days: float) -> None:
        self._engine = engine
        # The longest any response is kept, whatever its project's retention.
        self._ttl = timedelta(days=ttl_days)

    async def put(self, stored: StoredResponse) -> None:
        """Commit `stored`; returns once another replica could read it."""
        await self._run(self._put, stored)

    async def response(self, project_id: str, response_id: str) -> JsonObject | None:
        found = await self._run(self._read, "response", project_id, response_id)
        return orjson.loads(found) if found is not None else None

    async def conversation(self, project_id: str, response_id: str) -> list[JsonObject] | None:
        found = await self._run(self._read, "conversation", project_id, response_id)
        return orjson.loads(found) if found is not None else None

    async def input_items(self, project_id: str, response_id: str) -> list[JsonObject] | None:
        found = await self._run(self._read, "input_items", project_id, response_id)
        return orjson.loads(found) if found is not None else None

    async def delete(self, project_id: str, response_id: str) -> bool:
        """Whether a live response of the project was deleted."""
        return await self._run(self._delete, project_id, response_id)

    def purge_expired(self) -> int:
        """Delete expired responses, and on SQLite their old page images; returns rows deleted."""
        with self._engine.begin() as connection:
            result = connection.execute(
                delete(stored_responses).where(stored_responses.c.expires_at <= _now())
            )
        deleted = result.rowcount or 0
        if deleted and self._engine.dialect.name == "sqlite":
            # The WAL still holds the deleted pages' old images until a checkpoint resets it.
            with self._engine.connect() as connection:
                connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        return deleted

    async def _run(self, work: Callable[..., T], *args: object) -> T:
        try:
            return await asyncio.to_thread(work, *args)
        except SQLAlchemyError as exc:
            log.warning("stored responses: database call failed (%s)", type(exc).__name__)
            raise ServiceUnavailable(
                "The gateway cannot reach its stored responses right now (the database is "
                "slow or away). Retry shortly.",
                retry_after_s=2,
            ) from None

    def _put(self, stored: StoredResponse) -> None:
        now = _now()
        keep = min(timedelta(days=stored.retention_days), self._ttl)
        with self._engine.begin() as connection:
            connection.execute(
                insert(stored_responses).values(
                    id=stored.id,
                    project_id=stored.project_id,
                    created_at=now,
                    expires_at=now + keep,
                    response=orjson.dumps(stored.response),
                    input_items=orjson.dumps(stored.input_items),
                    conversation=orjson.dumps(stored.conversation),
                )
            )

    def _read(self, column: str, project_id: str, response_id: str) -> bytes | None:
        query = select(stored_responses.c[column]).where(
            stored_responses.c.id == response_id,
            stored_responses.c.project_id == project_id,
            stored_responses.c.expires_at > _now(),
        )
        with self._engine.connect() as connection:
            found: bytes | None = connection.execute(query).scalar_one_or_none()
        return found

    def _delete(self, project_id: str, response_id: str) -> bool:
        with self._engine.begin() as connection:
            result = connection.execute(
                delete(stored_responses).where(
                    stored_responses.c.id == response_id,
                    stored_responses.c.project_id == project_id,
                    stored_responses.c.expires_at > _now(),
                )
            )
        return bool(result.rowcount)


def _now() -> datetime:
    return datetime.now(UTC)
