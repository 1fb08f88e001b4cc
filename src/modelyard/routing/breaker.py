"""The circuit breaker of one deployment: whether attempts may go to it now, from the verdicts of
the attempts it admitted.

CLOSED admits everything and counts verdicts. A run of failures, or a high share of failures
among the attempts of a sliding window, opens it. OPEN refuses everything for a cool-down, then
turns HALF_OPEN and lets one real attempt through as a probe: the probe's success closes the
breaker, its failure opens it again for twice the cool-down (up to a maximum).

Verdicts are not tied to admissions. In HALF_OPEN any verdict is taken as the probe's, so an
attempt admitted before the breaker opened that ends during the probe decides like a probe
would; in OPEN verdicts change nothing (the cool-down runs its course).

Time comes from an injected clock (monotonic seconds). Not thread-safe: meant for one asyncio
event loop, where no call yields, so no lock is needed.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

# The window keeps at most this many attempts: under heavy traffic the error rate is that of
# the latest ones, and memory stays bounded.
WINDOW_CAP = 1000


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


_CLOSED = BreakerState.CLOSED
_OPEN = BreakerState.OPEN
_HALF_OPEN = BreakerState.HALF_OPEN


@dataclass(frozen=True)
class BreakerPolicy:
    consecutive_failures: int = 5  # this many failures in a row open it
    error_rate: float = 0.5  # or at least this share of failures ...
    window_s: float = 30.0  # ... among the attempts of the last window_s seconds
    min_requests: int = 10  # ... once at least this many attempts are in the window
    cooldown_s: float = 5.0  # open this long before one probe is let through
    max_cooldown_s: float = 60.0  # a failed probe doubles the cool-down up to this
    enabled: bool = True  # False: the breaker never opens (the operator turned breakers off)

    def __post_init__(self) -> None:
        if self.consecutive_failures < 1:
            raise ValueError("consecutive_failures must be at least 1")
        if not 0.0 < self.error_rate <= 1.0:
            raise ValueError("error_rate must be in (0, 1]")
        if not (math.isfinite(self.window_s) and self.window_s > 0.0):
            raise ValueError("window_s must be a positive number of seconds")
        if self.min_requests < 1:
            raise ValueError("min_requests must be at least 1")
        if not (math.isfinite(self.cooldown_s) and self.cooldown_s > 0.0):
            raise ValueError("cooldown_s must be a positive number of seconds")
        if not (math.isfinite(self.max_cooldown_s) and self.max_cooldown_s >= self.cooldown_s):
            raise ValueError("max_cooldown_s must be at least cooldown_s")


DEFAULT_POLICY = BreakerPolicy()


@dataclass(frozen=True)
class BreakerSnapshot:
    state: BreakerState
    consecutive_failures: int
    recent_attempts: int
    recent_failures: int
    retry_in_s: float | None  # while open: seconds until a probe may go; otherwise None


class CircuitBreaker:
    """Admits attempts to one deployment and hears how they ended.

    Every attempt `admit()` allowed must end with exactly one of `succeeded()`, `failed()` or
    `released()`.
    """

    def __init__(
        self,
        policy: BreakerPolicy = DEFAULT_POLICY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._policy = policy
        self._clock = clock
        self._state = _CLOSED
        self._consecutive = 0
        self._recent: deque[tuple[float, bool]] = deque()  # (clock(), succeeded), oldest first
        self._recent_failures = 0
        self._cooldown_s = policy.cooldown_s
        self._probe_at = 0.0  # while OPEN: when the cool-down ends
        self._probing = False  # while HALF_OPEN: a probe is in flight

    @property
    def policy(self) -> BreakerPolicy:
        return self._policy

    @property
    def state(self) -> BreakerState:
        """The state now; OPEN whose cool-down has passed reads HALF_OPEN (no probe is taken)."""
        if self._state is _OPEN and self._clock() >= self._probe_at:
            return _HALF_OPEN
        return self._state

    def admit(self) -> bool:
        """May an attempt go to this deployment now? CLOSED: yes. OPEN: no until the cool-down
        has passed, then the breaker turns HALF_OPEN and this call is the probe (yes). HALF_OPEN:
        yes only when no probe is in flight (one probe at a time, with real traffic). A disabled
        breaker stays CLOSED: `failed` never opens it."""
        if self._state is _CLOSED:
            return True
        if self._state is _OPEN:
            if self._clock() < self._probe_at:
                return False
            self._state = _HALF_OPEN
        if self._probing:
            return False
        self._probing = True
        return True

    def succeeded(self) -> None:
        """An admitted attempt succeeded. A probe's success closes the breaker and resets the
        counts and the cool-down."""
        state = self._state
        if state is _CLOSED:
            self._consecutive = 0
            self._record(self._clock(), True)
        elif state is _HALF_OPEN:
            self._state = _CLOSED
            self._probing = False
            self._consecutive = 0
            self._recent.clear()
            self._recent_failures = 0
            self._cooldown_s = self._policy.cooldown_s

    def failed(self) -> None:
        """An admitted attempt failed. In CLOSED it counts and may open the breaker; a probe's
        failure opens it again with the cool-down doubled, up to `max_cooldown_s`."""
        if not self._policy.enabled:
            return
        state = self._state
        if state is _OPEN:
            return
        now = self._clock()
        self._consecutive += 1
        self._record(now, False)
        if state is _HALF_OPEN:
            self._probing = False
            self._cooldown_s = min(self._cooldown_s * 2.0, self._policy.max_cooldown_s)
            self._open(now)
        elif self._trips():
            self._open(now)

    def released(self) -> None:
        """An admitted attempt ended with no verdict (the client left): it frees the probe slot
        and counts nothing."""
        if self._state is _HALF_OPEN:
            self._probing = False

    def snapshot(self) -> BreakerSnapshot:
        now = self._clock()
        self._prune(now)
        state = self._state
        retry_in_s: float | None = None
        if state is _OPEN:
            if now >= self._probe_at:
                state = _HALF_OPEN
            else:
                retry_in_s = self._probe_at - now
        return BreakerSnapshot(
            state=state,
            consecutive_failures=self._consecutive,
            recent_attempts=len(self._recent),
            recent_failures=self._recent_failures,
            retry_in_s=retry_in_s,
        )

    def _record(self, now: float, ok: bool) -> None:
        recent = self._recent
        if len(recent) >= WINDOW_CAP and not recent.popleft()[1]:
            self._recent_failures -= 1
        recent.append((now, ok))
        if not ok:
            self._recent_failures += 1
        self._prune(now)

    def _prune(self, now: float) -> None:
        recent = self._recent
        cutoff = now - self._policy.window_s
        while recent and recent[0][0] <= cutoff:
            if not recent.popleft()[1]:
                self._recent_failures -= 1

    def _trips(self) -> bool:
        policy = self._policy
        if self._consecutive >= policy.consecutive_failures:
            return True
        attempts = len(self._recent)
        # Divided, not multiplied: 7 / 25 >= 0.28 holds, 7 >= 0.28 * 25 does not in floats.
        return (
            attempts >= policy.min_requests
            and self._recent_failures / attempts >= policy.error_rate
        )

    def _open(self, now: float) -> None:
        self._state = _OPEN
        self._probe_at = now + self._cooldown_s
