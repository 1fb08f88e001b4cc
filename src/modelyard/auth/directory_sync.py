"""Keeps every replica's Directory in step with the database they share.

A configuration change made on one replica (a project, member, key or spending limit created,
changed or revoked) takes effect on every other replica within about `config_poll_s` (1 s by
default) plus one reload: a key revoked on replica A is refused by replica B a second later.

How: each admin mutation calls `bump_config_version` inside its own transaction, so the counter
moves exactly when a change commits, and never for one that rolls back. `DirectorySync` reads
the counter with one cheap SELECT per tick, off the event loop, and only when it moved reloads
the whole Directory and swaps it in. The counter is read before the reload, so the reloaded
view is at least that new; a change that lands during the reload moves the counter again and
is picked up on the next tick. A reload that raced a change made on this very replica is
dropped and retried rather than let it briefly undo that change.

Between ticks, a replica catches up on demand: a key or project it does not know may have been
created a moment ago through another replica (or another worker of the same server), so before
answering 401, 403 or 404 for one the caller asks `catch_up()`, which polls at once (one poll at
a time, however many requests are waiting on it) and says whether the view moved. So a key works
on every replica as soon as its creation returned, and only changes that take something away
(a revocation, a lowered limit) wait for the tick.

When the database cannot be reached the current view is kept and the poll retried every tick;
one warning per outage names the error's class only (messages may carry connection details).
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import Connection, Engine, select, update

from modelyard.auth.directory import Directory
from modelyard.db.schema import config_version

log = logging.getLogger(__name__)

# Reloads tried per tick while changes made here keep racing them.
_ATTEMPTS = 3


def bump_config_version(connection: Connection) -> None:
    """Mark configuration as changed; call it first in the transaction that changes it.

    The row lock it takes queues concurrent mutations until commit. Taken first, every
    mutation locks in one order (this row, then the audit chain head), so none deadlock.
    """
    connection.execute(update(config_version).values(version=config_version.c.version + 1))


def read_config_version(connection: Connection) -> int:
    return int(connection.execute(select(config_version.c.version)).scalar_one())


class DirectorySync:
    def __init__(self, engine: Engine, directory: Directory, interval_s: float) -> None:
        self._engine = engine
        self._directory = directory
        self._interval_s = interval_s
        # None until the first poll, which therefore always reloads: the view built at start
        # may already be older than the counter read after it.
        self._seen: int | None = None
        self._failing = False
        # Why the last poll failed (the error's class), while it keeps failing; readiness says it.
        self.database_problem: str | None = None
        self._catching_up: asyncio.Future[bool] | None = None

    @property
    def loaded_version(self) -> int | None:
        """The configuration version this replica's view was loaded at; None before the first
        poll."""
        return self._seen

    def poll(self) -> bool:
        """One tick (blocking): reload when the version moved. True when the view was replaced."""
        for _ in range(_ATTEMPTS):
            based_on = self._directory.revision
            with self._engine.connect() as connection:
                version = read_config_version(connection)
            if version == self._seen:
                return False
            fresh = Directory.load(self._engine)
            if self._directory.replace_with(fresh, based_on):
                self._seen = version
                return True
            # Changed here during the load: load again (`_seen` stays, so a later tick would).
        return False

    async def run(self) -> None:
        """Poll every `interval_s` until cancelled."""
        while True:
            await asyncio.sleep(self._interval_s)
            await self.poll_safely()

    async def catch_up(self) -> bool:
        """Poll now (joining a poll already under way); True when the view was replaced."""
        if self._catching_up is None:
            self._catching_up = asyncio.ensure_future(self.poll_safely())
            self._catching_up.add_done_callback(self._caught_up)
        return await asyncio.shield(self._catching_up)

    def _caught_up(self, _: asyncio.Future[bool]) -> None:
        self._catching_up = None

    async def poll_safely(self) -> bool:
        """One tick off the event loop; a database error is logged once per outage, not raised.
        True when the view was replaced."""
        try:
            replaced = await asyncio.to_thread(self.poll)
        except Exception as error:
            self.database_problem = _error_name(error)
            if not self._failing:
                log.warning(
                    "cannot refresh the configuration from the database (%s); keeping the "
                    "current view and retrying every %.1f s",
                    _error_name(error),
                    self._interval_s,
                )
            self._failing = True
            return False
        if self._failing:
            log.info("configuration refresh works again")
            self._failing = False
        self.database_problem = None
        return replaced


def _error_name(error: Exception) -> str:
    # SQLAlchemy wraps the driver's error; naming both is useful, their texts are not needed.
    cause = getattr(error, "orig", None)
    name = type(error).__name__
    return f"{name}: {type(cause).__module__}.{type(cause).__name__}" if cause else name
