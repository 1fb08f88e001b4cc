"""The one way the gateway writes what it promised to keep, off the request path.

Usage records, audit events of refusals and opted-in content all go through a
`BackgroundWriter`, with one policy:

- **Nothing is dropped while the process lives.** A batch that fails (the database is slow,
  locked or away) is retried whole, with backoff, for as long as it takes.
- **Back-pressure instead of loss.** The backlog has a capacity. Work that will produce an item
  claims its place first (`claim`), before it is done; when no place is left the work is refused
  (the caller answers 503) and the refusal is counted. Nothing ever waits on the database, and
  no write falls back to the caller's thread (which would stall the event loop).
- **One lifecycle.** The application's lifespan starts the writer and stops it; stopping writes
  what is queued, within a deadline, and says what could not be written.

Writes run on the default executor's threads (`asyncio.to_thread`), a batch at a time, after a
short linger that gathers the items of concurrent requests into one transaction. `after_write`,
if given, runs for each committed batch (the ledger settles budget reservations there).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class BackgroundWriter(Generic[T]):
    def __init__(
        self,
        name: str,
        write: Callable[[Sequence[T]], object],
        *,
        capacity: int = 10_000,
        batch_size: int = 500,
        linger_s: float = 0.02,
        first_backoff_s: float = 0.05,
        max_backoff_s: float = 2.0,
        after_write: Callable[[Sequence[T]], Awaitable[None]] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.name = name
        self._write_batch = write
        self._after_write = after_write
        self._capacity = capacity
        self._batch_size = batch_size
        self._linger_s = linger_s
        self._first_backoff_s = first_backoff_s
        self._max_backoff_s = max_backoff_s
        # Waits out a failed write; a test passes a virtual clock to live through long outages.
        self._sleep = sleep
        self._claimed = 0
        self._queue: asyncio.Queue[T] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        # Counted for operators: work refused because the backlog was full, failed writes.
        self.refused = 0
        self.failures = 0
        # Told of every batch written, with the wall-clock nanoseconds its successful write
        # started and ended (metrics time it; traces draw it). They must not raise.
        self.write_observers: list[Callable[[Sequence[T], int, int], None]] = []

    # -- the request side: cheap, never waits ---------------------------------------------------

    def claim(self) -> bool:
        """Take a place in the backlog for an item to come; False (and counted) when full."""
        if self._claimed >= self._capacity:
            self.refused += 1
            return False
        self._claimed += 1
        return True

    def release(self) -> None:
        """Give back a claimed place that will not be used (the work was refused)."""
        self._claimed -= 1

    def submit(self, item: T) -> None:
        """Queue an item whose place was claimed."""
        self._queue.put_nowait(item)

    def offer(self, item: T) -> bool:
        """Claim and submit at once; False (counted) when the backlog is full."""
        if not self.claim():
            return False
        self.submit(item)
        return True

    def backlog(self) -> int:
        """Places claimed and not yet written."""
        return self._claimed

    @property
    def capacity(self) -> int:
        return self._capacity

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=self.name)

    async def stop(self, deadline_s: float = 30.0) -> int:
        """Write what is queued, waiting at most `deadline_s`; returns how many were not."""
        try:
            await asyncio.wait_for(self._queue.join(), deadline_s)
        except TimeoutError:
            log.error("%s: %d items not written at shutdown", self.name, self._queue.qsize())
        if self._task is not None:
            self._task.cancel()
            self._task = None
        return self._queue.qsize()

    # -- the writer's side ---------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            if self._linger_s:
                await asyncio.sleep(self._linger_s)
            while len(batch) < self._batch_size and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._write(batch)
            self._claimed -= len(batch)
            for _ in batch:
                self._queue.task_done()

    async def _write(self, batch: list[T]) -> None:
        backoff_s = self._first_backoff_s
        while True:
            try:
                started_ns = time.time_ns()
                await asyncio.to_thread(self._write_batch, batch)
                ended_ns = time.time_ns()
                break
            except Exception as exc:  # the database may be away for a while; keep the batch
                self.failures += 1
                log.warning(
                    "%s: writing %d items failed (%s); retrying in %.2f s",
                    self.name,
                    len(batch),
                    type(exc).__name__,
                    backoff_s,
                )
                await self._sleep(backoff_s)
                backoff_s = min(backoff_s * 2, self._max_backoff_s)
        for observe in self.write_observers:
            observe(batch, started_ns, ended_ns)
        if self._after_write is not None:
            try:
                await self._after_write(batch)
            except Exception as exc:  # what follows a write is retried by its own owner
                log.warning("%s: after writing (%s)", self.name, type(exc).__name__)
