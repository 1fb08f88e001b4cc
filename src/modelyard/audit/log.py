"""The `audit_events` table as a hash chain: appending, reading back, verifying.

Appends are serialized by the database, so they stay correct with several processes: on
PostgreSQL a transaction-scoped advisory lock, on SQLite its single write lock (taken with a
no-op UPDATE), each taken before the chain head is read and held until the transaction ends.
Two appends therefore never read the same head, and an append that rolls back with its caller
leaves no trace. On PostgreSQL this relies on READ COMMITTED (the default): a snapshot older
than the lock would show a stale head. The thread lock only makes this process's own writers
queue in turn rather than poll SQLite's busy handler.

`seq` is assigned as head + 1, never by the database, so a gap means a deleted record. `at` is
when the event happened (for events written off the request path, `stamped` when it was
queued); the chain's order is `seq`. Nothing here knows what an event means; callers decide
what to record. Events of refusals and failed logins reach `append_batch` through the app's
audit `BackgroundWriter` (`db/background_writer.py`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    RowMapping,
    String,
    false,
    func,
    insert,
    select,
    type_coerce,
    update,
)

from modelyard.audit.events import GENESIS_HASH, AuditEvent, chained_record, record_hash
from modelyard.db.schema import audit_events

# The advisory lock that guards the chain head on PostgreSQL ("myd_audt" as an integer).
_PG_HEAD_LOCK = 0x6D79645F61756474
MAX_READ_LIMIT = 1000
_VERIFY_BATCH = 5000

# An event with the time it happened, as it waits to be appended.
TimedEvent = tuple[AuditEvent, datetime]


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    # Records read; verification stops at the first bad one.
    records: int
    first_bad_seq: int | None
    problem: str | None
    # The hash of the last intact record (the genesis hash for an empty log).
    head_hash: str


@dataclass(frozen=True)
class AuditQuery:
    """Which records to read: every filter given must match; `newest_first` reads the page just
    before `before_seq` (or the newest page) instead of the one just after `after_seq`."""

    project_id: str | None = None
    actor: str | None = None
    action: str | None = None
    after_seq: int = 0
    before_seq: int | None = None
    limit: int = 100
    newest_first: bool = False


class AuditLog:
    def __init__(
        self, engine: Engine, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._lock = threading.Lock()

    def stamped(self, event: AuditEvent) -> TimedEvent:
        """The event with the time it happened, to append later."""
        return event, self._clock()

    def append_in(
        self, connection: Connection, event: AuditEvent, at: datetime | None = None
    ) -> int:
        """Append inside the caller's transaction; the record commits or rolls back with it.

        The chain head stays locked until that transaction ends, so keep it short, and do not
        call `append` (a second connection) from the same thread before it ends.
        """
        return _append_all(connection, [(event, at or self._clock())])[0]

    def append(self, event: AuditEvent, at: datetime | None = None) -> int:
        return self.append_batch([(event, at or self._clock())])[0]

    def read(
        self,
        *,
        project_id: str | None = None,
        actor: str | None = None,
        action: str | None = None,
        after_seq: int = 0,
        before_seq: int | None = None,
        limit: int = 100,
        newest_first: bool = False,
    ) -> list[dict[str, Any]]:
        """Records between `after_seq` and `before_seq` (both excluded) matching every filter
        given, oldest first (or newest first: the page before `before_seq`)."""
        if not 1 <= limit <= MAX_READ_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_READ_LIMIT}")
        table = audit_events.c
        query = select(audit_events).where(table.seq > after_seq)
        if before_seq is not None:
            query = query.where(table.seq < before_seq)
        for column, value in (
            (table.project_id, project_id),
            (table.actor, actor),
            (table.action, action),
        ):
            if value is not None:
                query = query.where(column == value)
        order = table.seq.desc() if newest_first else table.seq
        with self._engine.connect() as connection:
            rows = connection.execute(query.order_by(order).limit(limit))
            # Column keys are SQLAlchemy quoted_name (a str subclass); JSON encoders want str.
            return [{str(k): v for k, v in row._mapping.items()} for row in rows]

    def verify(self, expected_head: str | None = None) -> VerifyReport:
        """Recompute the chain in `seq` order, in batches, and report the first broken record.

        A modified record fails its own hash; a deleted one leaves a `seq` gap (or, renumbered, a
        `prev_hash` that does not match); a moved or forged one fails its `prev_hash` or `seq`.
        `expected_head`, a head kept elsewhere (`SEQ:HASH` as `verify` prints it, or the hash
        alone), must still be in the chain: records removed from the end, or all of them, leave
        no other trace. Whoever can rewrite the whole table can recompute the whole chain, so
        only such an outside copy of the head catches that.
        """
        checker = _ChainChecker(expected_head)
        with self._engine.connect() as connection:
            query = select(
                *(column for column in audit_events.c if column.name != "at"),
                # Read as stored: a tampered value that is no date must be reported, not raised.
                type_coerce(audit_events.c.at, String).label("at"),
            )
            last_seq: int | None = None
            while checker.problem is None:
                batch = query.order_by(audit_events.c.seq).limit(_VERIFY_BATCH)
                if last_seq is not None:
                    batch = batch.where(audit_events.c.seq > last_seq)
                rows = connection.execute(batch).all()
                if not rows:
                    break
                for row in rows:
                    if not checker.check(row._mapping):
                        break
                last_seq = rows[-1].seq
        return checker.report()

    def append_batch(self, events: Sequence[TimedEvent]) -> list[int]:
        """Append in one transaction, in order; returns their `seq`s."""
        with self._lock, self._engine.begin() as connection:
            return _append_all(connection, events)


class _ChainChecker:
    """Checks records fed in `seq` order; remembers the first problem."""

    def __init__(self, expected_head: str | None) -> None:
        self.problem: str | None = None
        seq, _, digest = (expected_head or "").rpartition(":")
        self._expected_seq = int(seq) if seq.isdigit() else None
        self._expected_head = digest or None
        self._head_seen = expected_head is None
        self._records = 0
        self._last_seq = 0
        self._last_hash = GENESIS_HASH
        self._bad_seq: int | None = None

    def check(self, row: RowMapping) -> bool:
        self._records += 1
        seq: int = row["seq"]
        expected = self._last_seq + 1
        if seq > expected:
            return self._fail(expected, f"record {expected} is missing (the next is {seq})")
        if seq < expected:
            return self._fail(seq, f"record {seq} is out of sequence (expected {expected})")
        if row["prev_hash"] != self._last_hash:
            return self._fail(seq, "its prev_hash is not the hash of the record before it")
        try:
            computed = record_hash({**row, "at": _stored_time(row["at"])})
        except (TypeError, ValueError) as error:
            return self._fail(seq, f"its fields cannot be read ({error})")
        if computed != row["hash"]:
            return self._fail(seq, "its hash does not match its contents")
        self._last_seq, self._last_hash = seq, computed
        if seq == self._expected_seq and computed != self._expected_head:
            return self._fail(seq, "it is not the record the expected head names")
        self._head_seen = self._head_seen or computed == self._expected_head
        return True

    def report(self) -> VerifyReport:
        if self.problem is None and not self._head_seen:
            assert self._expected_head is not None
            where = f"record {self._expected_seq}, " if self._expected_seq is not None else ""
            self._fail(
                self._last_seq + 1,
                f"the expected head ({where}{self._expected_head[:16]}) is not in the chain, "
                f"which ends at record {self._last_seq}: records were removed from its end"
                + (" or all of them" if self._last_seq == 0 else ""),
            )
        return VerifyReport(
            ok=self.problem is None,
            records=self._records,
            first_bad_seq=self._bad_seq,
            problem=self.problem,
            head_hash=self._last_hash,
        )

    def _fail(self, seq: int, problem: str) -> bool:
        self._bad_seq, self.problem = seq, problem
        return False


def _append_all(connection: Connection, events: Sequence[TimedEvent]) -> list[int]:
    _lock_head(connection)
    head = connection.execute(
        select(audit_events.c.seq, audit_events.c.hash).order_by(audit_events.c.seq.desc()).limit(1)
    ).first()
    seq, prev_hash = (head.seq, head.hash) if head is not None else (0, GENESIS_HASH)
    records = []
    for event, at in events:
        seq += 1
        record = chained_record(event, seq=seq, at=at, prev_hash=prev_hash)
        records.append(record)
        prev_hash = record["hash"]
    connection.execute(insert(audit_events), records)
    return [record["seq"] for record in records]


def _lock_head(connection: Connection) -> None:
    dialect = connection.dialect.name
    if dialect == "postgresql":
        connection.execute(select(func.pg_advisory_xact_lock(_PG_HEAD_LOCK)))
    elif dialect == "sqlite":
        # Any write statement, even one that matches no row, takes the database's write lock.
        connection.execute(update(audit_events).where(false()).values(seq=audit_events.c.seq))
    else:
        raise RuntimeError(f"the audit log cannot lock its chain head on {dialect}")


def _stored_time(value: object) -> datetime:
    # SQLite hands back the stored text; PostgreSQL drivers a datetime.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        raise TypeError(f"at is {type(value).__name__}, not a time")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
