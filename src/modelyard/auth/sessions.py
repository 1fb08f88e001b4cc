"""Web console sign-ins, kept server-side.

The browser holds only a random token in an `HttpOnly` cookie; the table keeps its SHA-256, so a
copy of the database signs nobody in. A session remembers how its person signed in (a
`SessionCredential`), never the key itself, and every page re-checks that credential with the
`Authenticator`: a revoked or rotated key, a changed admin key or an expired token ends the
session at once. A session also ends after `IDLE` without a page, after `LIFETIME` in any case,
and when its person signs out (the row is deleted).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, delete, insert, select, update

from modelyard.auth.principal import PrincipalKind
from modelyard.db.schema import console_sessions
from modelyard.policy.rbac import Role

LIFETIME = timedelta(hours=12)
IDLE = timedelta(hours=2)
# A page refreshes `last_seen_at` at most this often: most pages cost a read, not a write.
_TOUCH_EVERY = timedelta(minutes=1)


@dataclass(frozen=True)
class SessionCredential:
    """How the person signed in, enough to check on each page that they still may."""

    kind: PrincipalKind
    subject: str
    # What may be shown of the credential (a key's hint), never the credential.
    hint: str
    # key: the key's keyed digest as the directory stores it; admin: the admin key's digest.
    digest: str | None = None
    key_id: str | None = None
    # token: the roles the identity provider's claims granted at sign-in.
    grants: Mapping[str, Role] = field(default_factory=dict)
    expires_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "subject": self.subject,
            "hint": self.hint,
            "digest": self.digest,
            "key_id": self.key_id,
            "grants": {project: role.value for project, role in self.grants.items()},
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SessionCredential:
        expires = data.get("expires_at")
        return cls(
            kind=data["kind"],
            subject=data["subject"],
            hint=data["hint"],
            digest=data.get("digest"),
            key_id=data.get("key_id"),
            grants={project: Role(role) for project, role in (data.get("grants") or {}).items()},
            expires_at=datetime.fromisoformat(expires) if expires else None,
        )


@dataclass(frozen=True)
class ConsoleSession:
    token_sha256: str
    credential: SessionCredential
    # The synchronizer token every state-changing console request must carry.
    csrf_token: str
    created_at: datetime
    expires_at: datetime


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class SessionStore:
    def __init__(
        self, engine: Engine, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self._engine = engine
        self._clock = clock

    def open(self, credential: SessionCredential) -> tuple[str, ConsoleSession]:
        """A new session for `credential`; returns the cookie's token (shown nowhere else)."""
        now = self._clock()
        token = secrets.token_urlsafe(32)
        expires = now + LIFETIME
        if credential.expires_at is not None:
            expires = min(expires, credential.expires_at)
        session = ConsoleSession(
            token_sha256(token), credential, secrets.token_urlsafe(32), now, expires
        )
        with self._engine.begin() as connection:
            connection.execute(
                insert(console_sessions).values(
                    token_sha256=session.token_sha256,
                    credential=credential.to_json(),
                    csrf_token=session.csrf_token,
                    created_at=now,
                    last_seen_at=now,
                    expires_at=expires,
                )
            )
        return token, session

    def find(self, token: str) -> ConsoleSession | None:
        """The live session of `token`; None (and the row gone) when it has expired or idled."""
        digest = token_sha256(token)
        with self._engine.connect() as connection:
            row = (
                connection.execute(
                    select(console_sessions).where(console_sessions.c.token_sha256 == digest)
                )
                .mappings()
                .first()
            )
        if row is None:
            return None
        now = self._clock()
        if row["expires_at"] <= now or row["last_seen_at"] + IDLE <= now:
            self.close(token)
            return None
        if now - row["last_seen_at"] >= _TOUCH_EVERY:
            with self._engine.begin() as connection:
                connection.execute(
                    update(console_sessions)
                    .where(console_sessions.c.token_sha256 == digest)
                    .values(last_seen_at=now)
                )
        return ConsoleSession(
            digest,
            SessionCredential.from_json(row["credential"]),
            row["csrf_token"],
            row["created_at"],
            row["expires_at"],
        )

    def close(self, token: str) -> bool:
        """End the session (sign-out); whether there was one."""
        with self._engine.begin() as connection:
            deleted = connection.execute(
                delete(console_sessions).where(
                    console_sessions.c.token_sha256 == token_sha256(token)
                )
            )
        return bool(deleted.rowcount)

    def sweep(self) -> int:
        """Delete sessions past their end; returns how many."""
        now = self._clock()
        with self._engine.begin() as connection:
            deleted = connection.execute(
                delete(console_sessions).where(
                    (console_sessions.c.expires_at <= now)
                    | (console_sessions.c.last_seen_at <= now - IDLE)
                )
            )
        return int(deleted.rowcount)
