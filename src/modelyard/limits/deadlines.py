"""Deadlines by name, popped in order once due: the in-memory store's stand-in for Redis TTLs.

A heap with lazy deletion: setting a new deadline for a name leaves the old heap entry behind,
and it is skipped when popped, so each operation stays O(log n).
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
        if self._at.get(name) != at:
            self._at[name] = at
            heapq.heappush(self._heap, (at, name))

    def discard(self, name: str) -> None:
        self._at.pop(name, None)

    def pop_due(self, now: int) -> list[str]:
        """Forget and return every name whose deadline is at or before `now`."""
        due = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            at, name = heapq.heappop(heap)
            if self._at.get(name) == at:
                del self._at[name]
                due.append(name)
        return due
