"""Deadlines by name, popped in order once due: the in-memory store's stand-in for Redis TTLs.

A heap with lazy updates, holding about one entry per name however often its deadline moves:
a later deadline only changes the name's time (the heap entry, found early, is pushed again at
the new time when it comes up), an earlier one pushes a new entry and leaves the old one to be
skipped. So a log whose deadline moves on every request costs nothing more per request.
"""

from __future__ import annotations

import heapq


class Deadlines:
    def __init__(self) -> None:
        self._at: dict[str, int] = {}
        self._heap: list[tuple[int, str]] = []

    def __len__(self) -> int:
        return len(self._at)

    def __contains__(self, name: str) -> bool:
        return name in self._at

    def get(self, name: str) -> int | None:
        return self._at.get(name)

    def set(self, name: str, at: int) -> None:
        current = self._at.get(name)
        self._at[name] = at
        if current is None or at < current:
            heapq.heappush(self._heap, (at, name))

    def discard(self, name: str) -> None:
        self._at.pop(name, None)

    def pop_due(self, now: int) -> list[str]:
        """Forget and return every name whose deadline is at or before `now`."""
        due = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            at, name = heapq.heappop(heap)
            current = self._at.get(name)
            if current is None or current < at:
                continue  # discarded, or moved earlier: another entry stands for it
            if current <= now:
                del self._at[name]
                due.append(name)
            else:  # moved later: wait for the new time
                heapq.heappush(heap, (current, name))
        return due
