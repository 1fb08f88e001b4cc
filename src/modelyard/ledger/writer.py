"""The background writer of usage records: requests never wait on the database, and no record is
ever dropped.

Every admitted request first claims a slot (`claim_slot`); a request that cannot get one is
refused with a clean 503 before any work, so the queue can never overflow with records that
must be kept. Records are written in batches, retried with backoff for as long as the database
is away, and flushed on shutdown. After a batch commits, `on_written` runs for it (the gateway
settles budget reservations there, so counters only ever count what the ledger holds).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from modelyard.ledger.records import UsageRecord
from modelyard.ledger.store import LedgerStore

log = logging.getLogger(__name__)

OnWritten = Callable[[Sequence[UsageRecord]], Awaitable[None]]


class LedgerWriter:
    def __init__(
        self,
        store: LedgerStore,
        on_written: OnWritten,
        *,
        capacity: int = 10_000,
        batch_size: int = 500,
        max_backoff_s: float = 2.0,
        linger_s: float = 0.02,
    ) -> None:
        self._linger_s = linger_s
        self._store = store
        self._on_written = on_written
        self._capacity = capacity
        self._batch_size = batch_size
        self._max_backoff_s = max_backoff_s
        self._claimed = 0
        self._queue: asyncio.Queue[UsageRecord] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.failures = 0

    def claim_slot(self) -> bool:
        if self._claimed >= self._capacity:
            return False
        self._claimed += 1
        return True

    def release_slot(self) -> None:
        """Give back a slot when the request was refused before it could produce a record."""
        self._claimed -= 1

    def pending(self) -> int:
        return self._claimed

    def submit(self, record: UsageRecord) -> None:
        """Queue the record of a request that claimed a slot; never blocks, never drops."""
        self._queue.put_nowait(record)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="ledger-writer")

    async def close(self, deadline_s: float = 30.0) -> int:
        """Write everything queued (waiting up to `deadline_s`); returns what could not be."""
        try:
            await asyncio.wait_for(self._queue.join(), deadline_s)
        except TimeoutError:
            log.error("ledger: %d usage records not written at shutdown", self._queue.qsize())
        if self._task is not None:
            self._task.cancel()
        return self._queue.qsize()

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            # A moment's wait gathers the records of concurrent requests into one transaction.
            await asyncio.sleep(self._linger_s)
            while len(batch) < self._batch_size and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._write(batch)
            self._claimed -= len(batch)
            for _ in batch:
                self._queue.task_done()

    async def _write(self, batch: list[UsageRecord]) -> None:
        backoff = 0.05
        while True:
            try:
                await asyncio.to_thread(self._store.write, batch)
                break
            except Exception as exc:  # the database may be away for a while; keep the records
                self.failures += 1
                log.warning("ledger: write failed (%s); retrying", type(exc).__name__)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff_s)
        try:
            await self._on_written(batch)
        except Exception as exc:  # settling is retried by reconciliation, never lost
            log.warning("ledger: settling after write failed (%s)", type(exc).__name__)
