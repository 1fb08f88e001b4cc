"""Running a route plan's attempts for one chat request, until one has output to give.

`open_next` goes down the plan: it skips a candidate whose circuit breaker refuses it or whose
own rate limit is reached, waits a jittered, growing pause between attempts (never past the
request's deadline), opens the generation, and reads its first event (an attempt with no
output by the deadline is abandoned: `DeadlineExceeded`). An attempt that fails
before any output (connect error, timeout, 429, 5xx, a stream that ends or breaks before its
first content) is recorded, billed for what it consumed, and the next candidate is tried when
the error is `retryable`; any other error is the answer. What reaches the caller has its first
event in hand, so nothing has gone to the client before an attempt is known to work.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from modelyard.catalog.cards import Deployment, ModelCard
from modelyard.errors import (
    ContextLengthExceeded,
    DeadlineExceeded,
    ModelyardError,
    NoHealthyDeployment,
    UpstreamStreamBroken,
)
from modelyard.protocol.chat import ChatCompletionRequest
from modelyard.protocol.generation import ChatEvent, Failed, Usage
from modelyard.providers.base import ChatProvider, ChatStream
from modelyard.routing.router import PlannedAttempt, RoutePlan
from modelyard.serving.lifecycle import Attempt, RequestLifecycle
from modelyard.streams import close_stream
from modelyard.structured.contract import OutputContract

FIRST_BACKOFF_S = 0.05
MAX_BACKOFF_S = 1.0


@dataclass
class OpenedAttempt:
    planned: PlannedAttempt
    attempt: Attempt
    stream: ChatStream

    @property
    def deployment(self) -> Deployment:
        return self.planned.deployment

    @property
    def card(self) -> ModelCard:
        return self.planned.card

    @property
    def provider(self) -> ChatProvider:
        return self.planned.provider


# Takes a place in a deployment's own rate-limit windows for one attempt; False when full.
AdmitDeployment = Callable[[Deployment, str], Awaitable[bool]]


class Attempts:
    def __init__(
        self,
        plan: RoutePlan,
        lifecycle: RequestLifecycle,
        request: ChatCompletionRequest,
        contract: OutputContract,
        caller: str,
        deadline: float,
        admit_deployment: AdmitDeployment,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self._plan = plan
        self._lifecycle = lifecycle
        self._request = request
        self._contract = contract
        self._caller = caller
        self._deadline = deadline
        self._admit_deployment = admit_deployment
        self._sleep = sleep
        self._draw = draw
        self._next = 0
        self._tried = 0
        self._last_error: ModelyardError | None = None
        self._skipped: list[str] = []

    def remaining(self) -> int:
        return len(self._plan.attempts) - self._next

    async def again(self, opened: OpenedAttempt) -> OpenedAttempt:
        """Another generation on the same deployment (the repair of an invalid output)."""
        planned, lifecycle = opened.planned, self._lifecycle
        attempt = lifecycle.begin_attempt(planned.deployment, planned.card.id)
        try:
            stream = await planned.provider.open_chat(
                self._request, planned.card, planned.deployment, self._contract, self._caller
            )
        except ModelyardError as error:
            lifecycle.attempt_failed(attempt, error, ended=True)
            raise
        except BaseException:
            lifecycle.attempt_reported(attempt, Usage(0, 0))
            raise
        return OpenedAttempt(planned, attempt, lifecycle.attach(attempt, stream))

    async def open_next(self, after: ModelyardError | None = None) -> OpenedAttempt:
        """The next candidate that opens with output in hand. `after`: why the previous one
        (already recorded) is being replaced. Raises the last error when none is left."""
        if after is not None:
            self._last_error = after
        while self._next < len(self._plan.attempts):
            planned = self._plan.attempts[self._next]
            self._next += 1
            if not await self._may_try(planned):
                continue
            opened = await self._try(planned)
            if opened is not None:
                return opened
        raise self._exhausted()

    async def _may_try(self, planned: PlannedAttempt) -> bool:
        deployment = planned.deployment
        if self._tried:
            pause = min(MAX_BACKOFF_S, FIRST_BACKOFF_S * 2 ** (self._tried - 1)) * self._draw()
            if time.monotonic() + pause >= self._deadline:
                self._next = len(self._plan.attempts)  # no attempt starts after the deadline
                return False
            await self._sleep(pause)
        if time.monotonic() >= self._deadline:
            self._next = len(self._plan.attempts)
            return False
        stats = self._lifecycle.recording.fleet.of(deployment.id)
        if not stats.breaker.admit():
            self._skipped.append(f"{deployment.id} (circuit breaker open)")
            return False
        if not await self._admit_deployment(
            deployment, f"{self._lifecycle.request_id}~{self._tried}"
        ):
            stats.breaker.released()
            self._skipped.append(f"{deployment.id} (its rate limit is reached)")
            return False
        return True

    async def _try(self, planned: PlannedAttempt) -> OpenedAttempt | None:
        self._tried += 1
        lifecycle = self._lifecycle
        attempt = lifecycle.begin_attempt(planned.deployment, planned.card.id, admitted=True)
        try:
            async with asyncio.timeout(self._deadline - time.monotonic()):
                stream = await planned.provider.open_chat(
                    self._request, planned.card, planned.deployment, self._contract, self._caller
                )
        except ModelyardError as error:
            lifecycle.attempt_failed(attempt, error, ended=True)
            self._fall_through(planned, error)
            return None
        except TimeoutError:
            passed = self._deadline_passed(planned)
            lifecycle.attempt_failed(attempt, passed, ended=True)
            self._fall_through(planned, passed)
            return None
        except BaseException:
            lifecycle.attempt_reported(attempt, Usage(0, 0))
            raise
        lifecycle.attach(attempt, stream)
        events = aiter(stream)
        try:
            first = await self._first_output(planned, events)
        except BaseException:
            stream.cancel()
            raise
        if isinstance(first, ModelyardError):
            lifecycle.attempt_failed(attempt, first, ended=False)
            stream.cancel()
            await close_stream(events)
            self._fall_through(planned, first)
            return None
        lifecycle.first_output(attempt)
        return OpenedAttempt(planned, attempt, _Replayed(stream, first, events))

    async def _first_output(
        self, planned: PlannedAttempt, events: AsyncIterator[ChatEvent]
    ) -> ChatEvent | ModelyardError:
        """The stream's first event, or why there is none before the deadline."""
        try:
            async with asyncio.timeout(self._deadline - time.monotonic()):
                first = await anext(events, None)
        except TimeoutError:
            return self._deadline_passed(planned)
        if isinstance(first, Failed):
            return first.error
        if first is None:
            return UpstreamStreamBroken(
                f"Deployment '{planned.deployment.id}' ended its answer before any output."
            )
        return first

    def _deadline_passed(self, planned: PlannedAttempt) -> DeadlineExceeded:
        self._next = len(self._plan.attempts)
        return DeadlineExceeded(
            f"The request's deadline passed while deployment '{planned.deployment.id}' had "
            "not answered yet."
        )

    def _fall_through(self, planned: PlannedAttempt, error: ModelyardError) -> None:
        """Record why this candidate failed and whether the next may be tried; raise if not."""
        self._last_error = error
        larger_window = isinstance(error, ContextLengthExceeded) and any(
            p.card.context_window > planned.card.context_window
            for p in self._plan.attempts[self._next :]
        )
        if not (error.retryable or larger_window):
            raise error

    def _exhausted(self) -> ModelyardError:
        if self._last_error is not None:
            return self._last_error
        if time.monotonic() >= self._deadline:
            return DeadlineExceeded("The request's deadline passed before any deployment answered.")
        return NoHealthyDeployment(
            "No deployment could take this request now: " + "; ".join(self._skipped) + ".",
            retry_after_s=5,
        )


class _Replayed:
    """A stream whose first event was read already: iterating gives it again, then the rest."""

    def __init__(
        self, stream: ChatStream, first: ChatEvent, rest: AsyncIterator[ChatEvent]
    ) -> None:
        self._stream = stream
        self._first = first
        self._rest = rest

    @property
    def prompt_tokens(self) -> int:
        return self._stream.prompt_tokens

    def cancel(self) -> None:
        self._stream.cancel()

    def on_usage(self, callback: Callable[[Usage], None]) -> None:
        self._stream.on_usage(callback)

    async def __aiter__(self) -> AsyncIterator[ChatEvent]:
        try:
            yield self._first
            async for event in self._rest:
                yield event
        finally:
            await close_stream(self._rest)
