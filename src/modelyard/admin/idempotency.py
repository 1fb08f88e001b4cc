"""`Idempotency-Key` on admin mutations: a retried request gets the first answer, not a second
effect.

The first response is stored per (caller, key) with a hash of the request; the same key with a
different request is refused with 422. Bodies are sealed (Fernet under a key derived from the
server secret) because a key-creation reply carries a new API key in clear. Records expire after
24 hours. One in-process lock per key makes concurrent retries wait for the first to finish.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from cryptography.fernet import Fernet
from sqlalchemy import Engine, delete, insert, select
from sqlalchemy.exc import IntegrityError

from modelyard.db.schema import idempotency_records
from modelyard.errors import IdempotencyKeyReused, InvalidParameter

HEADER = "idempotency-key"
LIFETIME = timedelta(hours=24)
MAX_KEY_LENGTH = 200


class IdempotencyStore:
    def __init__(self, engine: Engine, seal_key: bytes) -> None:
        self._engine = engine
        self._fernet = Fernet(base64.urlsafe_b64encode(seal_key))
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def run(
        self,
        subject: str,
        key: str | None,
        request_fingerprint: bytes,
        act: Callable[[], Awaitable[tuple[int, bytes]]],
    ) -> tuple[int, bytes, bool]:
        """(status, body, replayed): the stored answer for a known key, else `act()`'s."""
        if key is None:
            status, body = await act()
            return status, body, False
        if not key or len(key) > MAX_KEY_LENGTH:
            raise InvalidParameter(
                f"The Idempotency-Key header must be 1 to {MAX_KEY_LENGTH} characters.",
                param=HEADER,
            )
        request_hash = hashlib.sha256(request_fingerprint).hexdigest()
        # Clients sometimes put meaningful text in keys; only a digest of it is stored.
        key = hashlib.sha256(key.encode("utf-8")).hexdigest()
        lock = self._locks.setdefault((subject, key), asyncio.Lock())
        try:
            async with lock:
                stored = await asyncio.to_thread(self._load, subject, key)
                if stored is not None:
                    stored_hash, status, sealed = stored
                    if stored_hash != request_hash:
                        raise IdempotencyKeyReused(
                            "This Idempotency-Key was already used with a different request.",
                            param=HEADER,
                        )
                    return status, self._fernet.decrypt(sealed), True
                status, body = await act()
                if status < 500:
                    await asyncio.to_thread(self._save, subject, key, request_hash, status, body)
                return status, body, False
        finally:
            if not lock.locked():
                self._locks.pop((subject, key), None)

    def _load(self, subject: str, key: str) -> tuple[str, int, bytes] | None:
        oldest = datetime.now(UTC) - LIFETIME
        with self._engine.begin() as connection:
            connection.execute(
                delete(idempotency_records).where(idempotency_records.c.created_at < oldest)
            )
            row = (
                connection.execute(
                    select(idempotency_records).where(
                        idempotency_records.c.subject == subject, idempotency_records.c.key == key
                    )
                )
                .mappings()
                .first()
            )
        if row is None:
            return None
        return row["request_hash"], row["status"], row["sealed_body"]

    def _save(self, subject: str, key: str, request_hash: str, status: int, body: bytes) -> None:
        try:
            with self._engine.begin() as connection:
                connection.execute(
                    insert(idempotency_records).values(
                        subject=subject,
                        key=key,
                        request_hash=request_hash,
                        status=status,
                        sealed_body=self._fernet.encrypt(body),
                        created_at=datetime.now(UTC),
                    )
                )
        except IntegrityError:
            pass  # another replica stored the same key first; its answer stands
