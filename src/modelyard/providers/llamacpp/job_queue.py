"""A bounded first-in, first-out queue of generation jobs for one model's worker thread.

Admission is decided here, on the event loop, without blocking: a job is admitted while fewer
than `depth` jobs wait behind the one being generated. Jobs run to completion in arrival order;
nobody's generation is cut short to serve someone else.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class JobQueue(Generic[T]):
    def __init__(self, depth: int) -> None:
        self._depth = depth
        self._waiting: deque[T] = deque()
        self._busy = False
        self._closed = False
        self._changed = threading.Condition()

    def offer(self, job: T) -> bool:
        """Admit `job` unless the queue is full or closed; never blocks."""
        with self._changed:
            if self._closed or len(self._waiting) >= self._depth + (0 if self._busy else 1):
                return False
            self._waiting.append(job)
            self._changed.notify()
            return True

    def take(self) -> T | None:
        """Block until a job arrives (and mark the worker busy), or return None once closed."""
        with self._changed:
            self._busy = False
            while not self._waiting and not self._closed:
                self._changed.wait()
            if self._closed:
                return None
            self._busy = True
            return self._waiting.popleft()

    def close(self) -> list[T]:
        """Refuse new jobs, wake the worker, and hand back the jobs that never started."""
        with self._changed:
            self._closed = True
            abandoned = list(self._waiting)
            self._waiting.clear()
            self._changed.notify_all()
            return abandoned

    def waiting(self) -> int:
        with self._changed:
            return len(self._waiting)

    def busy(self) -> bool:
        with self._changed:
            return self._busy
