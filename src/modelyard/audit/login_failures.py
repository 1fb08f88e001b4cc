"""Failed logins in the audit log, bounded: unauthenticated traffic cannot grow it without limit.

The first `per_source` failed logins from a source (the client's address) in a minute are
recorded as they happen, each with its request; the further ones from that source in the same
minute are counted, and once the minute is over one record says how many there were. At most
`max_sources` sources are told apart per minute; failures from more are counted under one shared
source. So the log grows by at most `per_source` + 1 records per source and minute, whatever the
rate of attempts, and keeps the signal: who tried, from where, how often.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from modelyard.audit.events import AuditEvent

OTHER_SOURCES = "(other sources)"


class LoginFailures:
    def __init__(
        self,
        per_source: int = 10,
        max_sources: int = 1_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._per_source = per_source
        self._max_sources = max_sources
        self._clock = clock
        self._minute = self._now_minute()
        # Per source this minute: failures recorded in full, and failures counted beyond them.
        self._recorded: dict[str, int] = {}
        self._further: dict[str, int] = {}
        # Records of minutes that are over, waiting for `summaries`.
        self._done: list[AuditEvent] = []

    def should_record(self, source: str) -> bool:
        """Count a failed login; True when it is to be recorded in full."""
        self._roll()
        if source not in self._recorded and len(self._recorded) >= self._max_sources:
            source = OTHER_SOURCES
        recorded = self._recorded.get(source, 0)
        if recorded < self._per_source and source != OTHER_SOURCES:
            self._recorded[source] = recorded + 1
            return True
        self._recorded.setdefault(source, recorded)
        self._further[source] = self._further.get(source, 0) + 1
        return False

    def summaries(self, include_current: bool = False) -> list[AuditEvent]:
        """One record per source with further failures, for the minutes that are over (and the
        current one, at shutdown)."""
        self._roll(force=include_current)
        done, self._done = self._done, []
        return done

    def _roll(self, force: bool = False) -> None:
        minute = self._now_minute()
        if minute == self._minute and not force:
            return
        ended, counts = self._minute, self._further
        self._minute, self._recorded, self._further = minute, {}, {}
        started = datetime.fromtimestamp(ended * 60, UTC).strftime("%Y-%m-%d %H:%M")
        self._done += [
            AuditEvent(
                actor="anonymous",
                action="auth.login",
                object=f"{count} failed logins",
                outcome="failed",
                reason=f"{count} more failed logins from {source} in the minute from "
                f"{started} UTC, after those recorded; counted, not recorded one by one",
                client_ip=None if source == OTHER_SOURCES else source,
            )
            for source, count in counts.items()
            if count
        ]

    def _now_minute(self) -> int:
        return int(self._clock() // 60)
