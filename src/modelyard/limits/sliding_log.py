"""One in-memory sliding log: (time, request id, amount) entries in time order, with their sum.

The same arithmetic as the Redis store's admission script, on a deque: an entry logged at `t`
counts until `t + window` (it is pruned once `t <= now - window`). Appends never go back in
time, so the deque stays sorted and pruning pops from the left. Times are integer microseconds.
"""

from __future__ import annotations

from collections import deque


class SlidingLog:
    # Times and ids in two deques rather than one of pairs: a log holds every request of the
    # last window, and a pair per request was a third of its memory.
    __slots__ = ("_ids", "_times", "amounts", "total")

    def __init__(self) -> None:
        self._times: deque[int] = deque()
        self._ids: deque[str] = deque()
        self.amounts: dict[str, int] = {}
        self.total = 0

    @property
    def newest(self) -> int | None:
        return self._times[-1] if self._times else None

    def prune(self, cutoff: int) -> None:
        """Drop the entries logged at or before `cutoff`."""
        times, ids, amounts = self._times, self._ids, self.amounts
        while times and times[0] <= cutoff:
            times.popleft()
            self.total -= amounts.pop(ids.popleft())

    def append(self, at: int, request_id: str, amount: int) -> int:
        """Log the request at `at`, or at the newest time logged if the clock stepped back."""
        newest = self.newest
        if newest is not None and newest > at:
            at = newest
        self._times.append(at)
        self._ids.append(request_id)
        self.amounts[request_id] = amount
        self.total += amount
        return at

    def adjust(self, request_id: str, amount: int) -> bool:
        old = self.amounts.get(request_id)
        if old is None:
            return False
        self.amounts[request_id] = amount
        self.total += amount - old
        return True

    def retry_after_us(self, amount: int, limit: int, window_us: int, now: int) -> int | None:
        """How long until `amount` fits, if nothing else is logged meanwhile; None if never."""
        if amount > limit:
            return None
        excess = self.total + amount - limit
        freed = 0
        for at, request_id in zip(self._times, self._ids, strict=True):
            freed += self.amounts[request_id]
            if freed >= excess:
                return at + window_us - now
        return 0
