"""One local deployment's engine process, as the gateway sees it: started, supervised, restarted.

The model runs in a child process (`python -m modelyard.engine`, see `modelyard/engine/`), so a
native crash, an out-of-memory kill or a corrupt GGUF ends that process and never the gateway.
This object owns the child: it starts it, waits for its self-tested `ready`, sends it requests and
cancellations over a socket pair, and hands each event to the request's `EngineStream`.

When the child dies, every request it held ends at once: one that had started generating with a
502 `engine_failed` (billed for what was generated), one still waiting with a 503
`engine_unavailable` (billed nothing). The child is started again after a backoff (0.1 s, then
0.5 s doubling to 30 s, reset once it has served for a minute); until its self-test passes again the
deployment is unhealthy and new requests get 503. A child that crashes before it is ready
(loading or self-testing) is started next time without the CPU backend build it was using, when
a slower build exists: a fast path that this CPU or hypervisor mishandles costs a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from modelyard.engine.wire import (
    CountCommand,
    EngineConfig,
    EngineInfo,
    GenerateCommand,
    cancel_command,
    decode_length,
    encode_frame,
)
from modelyard.errors import (
    ContextLengthExceeded,
    EngineBusy,
    EngineUnavailable,
    InternalError,
    InvalidRequest,
    LocalEngineFailed,
    ModelyardError,
    UnsupportedSchema,
)
from modelyard.providers.llamacpp.engine_stream import EngineStream

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 300.0
BACKOFF_S = (0.1, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
# numpy's BLAS threads (the engine imports numpy for grammar masks) would spin beside llama.cpp's.
ENGINE_ENVIRONMENT = {"OPENBLAS_NUM_THREADS": "1"}
# A child that served this long before dying counts as healthy: its restart starts the backoff anew.
STABLE_AFTER_S = 60.0
STOP_GRACE_S = 5.0


class EngineStatus(enum.StrEnum):
    STARTING = "starting"
    READY = "ready"
    RESTARTING = "restarting"
    FAILED = "failed"


ENGINE_COMMAND = (sys.executable, "-m", "modelyard.engine")


@dataclass(frozen=True)
class EngineSpec:
    """What to run: one GGUF file for one deployment."""

    deployment: str
    gguf: Path
    context_window: int
    parallel: int
    threads: int
    # Faster batched decoding, but a token may then depend on what shares the batch.
    flash_attention: bool = False
    # The program, given the engine configuration as its last argument (tests start wrappers).
    command: tuple[str, ...] = ENGINE_COMMAND


@dataclass
class EngineCounters:
    """For /metrics; written on the event loop only."""

    completed: int = 0
    cancelled: int = 0
    failed: int = 0
    completion_tokens: int = 0
    prompt_tokens: int = 0
    restarts: int = 0
    mean_request_s: float = 1.0


@dataclass
class _Exit:
    """How one child's life ended."""

    was_ready: bool
    served_s: float
    reason: str
    crashed_before_ready: bool = False
    variant: str | None = None


@dataclass
class _ChildState:
    """What one child said about itself before it ended."""

    ready_at: float | None = None
    variant: str | None = None
    load_failed: str | None = None


@dataclass
class _Tracked:
    stream: EngineStream
    opened: float = field(default_factory=time.monotonic)


class EngineProcess:
    def __init__(self, spec: EngineSpec, queue_depth: int) -> None:
        self.spec = spec
        self.status = EngineStatus.STARTING
        self.reason = "loading"
        self.info: EngineInfo | None = None
        self.counters = EngineCounters()
        # Requests that may wait for a slot; one more is refused.
        self.queue_capacity = queue_depth
        self._excluded_variants: list[str] = []
        self._tracked: dict[int, _Tracked] = {}
        # Token counts asked of the engine (`count`), by request id, until it answers.
        self._counting: dict[int, asyncio.Future[int]] = {}
        self._next_id = 1
        self._waiting = 0
        self._running = 0
        self._writer: asyncio.StreamWriter | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise())

    async def wait_ready(self) -> None:
        await self._ready.wait()

    async def stop(self) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        self._end_all(EngineUnavailable("the gateway is shutting down"))
        self._fail_counts(EngineUnavailable("the gateway is shutting down"))

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def queue_state(self) -> tuple[int, int]:
        """(requests waiting for a slot, sequences generating)."""
        return self._waiting, self._running

    async def _supervise(self) -> None:
        failures = 0
        while True:
            try:
                ended = await self._run_child()
            except asyncio.CancelledError:
                await self._kill_child()
                raise
            except Exception as exc:  # spawning itself failed (no python, no fd)
                ended = _Exit(False, 0.0, f"could not start: {type(exc).__name__}: {exc}")
            self._ready.clear()
            self.info = None
            self._end_all_lost(ended.reason)
            self._fail_counts(
                EngineUnavailable(
                    f"The local engine of deployment '{self.spec.deployment}' stopped "
                    f"({ended.reason}) before it counted; it is being restarted.",
                    retry_after_s=2,
                )
            )
            if ended.crashed_before_ready and ended.variant not in (None, "built-in"):
                self._excluded_variants.append(str(ended.variant))
            failures = 0 if ended.was_ready and ended.served_s >= STABLE_AFTER_S else failures + 1
            self.counters.restarts += 1
            self.status = EngineStatus.RESTARTING if ended.was_ready else EngineStatus.FAILED
            self.reason = ended.reason
            delay = BACKOFF_S[min(max(failures, 1), len(BACKOFF_S)) - 1]
            log.error(
                "local deployment %s: engine %s; restarting in %.1fs",
                self.spec.deployment,
                ended.reason,
                delay,
            )
            await asyncio.sleep(delay)

    async def _run_child(self) -> _Exit:
        parent, child = socket.socketpair()
        config = EngineConfig(
            deployment=self.spec.deployment,
            gguf=self.spec.gguf,
            context_window=self.spec.context_window,
            parallel=self.spec.parallel,
            threads=self.spec.threads,
            fd=child.fileno(),
            excluded_variants=tuple(self._excluded_variants),
            flash_attention=self.spec.flash_attention,
        )
        try:
            self._process = await asyncio.create_subprocess_exec(
                *self.spec.command,
                config.to_json(),
                pass_fds=(child.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
                env={**os.environ, **ENGINE_ENVIRONMENT},
            )
        finally:
            child.close()
        reader, writer = await asyncio.open_unix_connection(sock=parent)
        self._writer = writer
        state = _ChildState()
        try:
            await self._read_events(reader, state)
        finally:
            self._writer = None
            writer.close()
        returncode = await self._reap()
        if state.load_failed is not None:
            return _Exit(False, 0.0, f"failed to load: {state.load_failed}")
        reason = _describe_exit(returncode)
        if state.ready_at is None:
            crashed = returncode is not None and returncode < 0
            return _Exit(False, 0.0, f"{reason} before it was ready", crashed, state.variant)
        return _Exit(True, time.monotonic() - state.ready_at, reason)

    async def _read_events(self, reader: asyncio.StreamReader, state: _ChildState) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            try:
                if state.ready_at is None:
                    remaining = max(0.1, deadline - time.monotonic())
                    header = await asyncio.wait_for(reader.readexactly(4), remaining)
                else:
                    header = await reader.readexactly(4)
                body = await reader.readexactly(decode_length(header))
            except TimeoutError:
                log.error("local deployment %s: no ready after %.0fs", self.spec.deployment,
                          READY_TIMEOUT_S)  # fmt: skip
                await self._kill_child()
                return
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            for event in orjson.loads(body):
                self._dispatch(event, state)

    def _dispatch(self, event: list[Any], state: _ChildState) -> None:
        kind = event[0]
        if kind == "ready":
            self.info = EngineInfo.from_wire(event[1])
            state.ready_at = time.monotonic()
            self.status = EngineStatus.READY
            self.reason = "ready"
            self._ready.set()
            log.info(
                "local deployment %s ready: %d slots of %d tokens, CPU backend %s, "
                "self-test %.0f ms",
                self.spec.deployment,
                self.info.parallel,
                self.info.context_window,
                self.info.cpu_variant,
                self.info.self_test_ms,
            )
            return
        if kind == "loading":
            state.variant = event[1]
            return
        if kind == "load_failed":
            state.load_failed = event[1]
            return
        if kind == "counted" or (kind == "rejected" and event[1] in self._counting):
            self._answer_count(event)
            return
        tracked = self._tracked.get(event[1])
        if tracked is None:
            return
        stream = tracked.stream
        if kind == "text":
            stream.text(event[2], event[3], event[4])
        elif kind == "admitted":
            stream.admitted(event[2])
        elif kind == "started":
            stream.slot_taken()
            self._waiting -= 1
            self._running += 1
        elif kind == "choice":
            stream.choice_finished(event[2], event[3])
        elif kind == "finished":
            self._forget(tracked)
            self.counters.prompt_tokens += event[2]
            self.counters.completion_tokens += event[3]
            if stream.cancelled:
                self.counters.cancelled += 1
            else:
                self.counters.completed += 1
                elapsed = time.monotonic() - tracked.opened
                self.counters.mean_request_s = 0.8 * self.counters.mean_request_s + 0.2 * elapsed
            stream.finished(event[2], event[3], event[4])
        elif kind == "failed":
            self._forget(tracked)
            self.counters.failed += 1
            error: ModelyardError = (
                UnsupportedSchema(event[3])
                if event[2] == "unsupported_schema"
                else InternalError(f"local generation failed: {event[3]}")
            )
            stream.failed(error, event[4], event[5])
        elif kind == "rejected":
            self._forget(tracked)
            stream.rejected(_rejection_error(event[2], event[3], event[4]))

    # -- requests --------------------------------------------------------------------------------

    def _ready_writer(self) -> asyncio.StreamWriter:
        """Where requests go, or EngineUnavailable while the engine does not serve."""
        if self.status != EngineStatus.READY or self._writer is None:
            raise EngineUnavailable(
                f"The local model deployment '{self.spec.deployment}' is not available: "
                f"{self._unavailable_reason()}.",
                retry_after_s=2,
            )
        return self._writer

    async def open(self, command_fields: dict[str, Any]) -> EngineStream:
        """Send a request (all of `GenerateCommand` but its id) and wait for its admission."""
        writer = self._ready_writer()
        if self._waiting >= self.queue_capacity:
            raise EngineBusy(
                f"The local model deployment '{self.spec.deployment}' is busy: its request "
                "queue is full; retry shortly.",
                retry_after_s=self._retry_after_s(),
            )
        request_id = self._next_id
        self._next_id += 1
        stream = EngineStream(request_id, self)
        self._tracked[request_id] = _Tracked(stream)
        self._waiting += 1
        command = GenerateCommand(id=request_id, **command_fields)
        writer.write(encode_frame(command.to_wire()))
        try:
            await stream.admission
        except asyncio.CancelledError:
            stream.cancel()
            raise
        return stream

    async def count(self, pieces: list[tuple[str, bool]]) -> int:
        """The tokens the engine would evaluate for this rendered prompt (what a generation's
        usage reports), counted beside generations without waiting for a slot."""
        writer = self._ready_writer()
        request_id = self._next_id
        self._next_id += 1
        counted: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._counting[request_id] = counted
        writer.write(encode_frame(CountCommand(request_id, pieces).to_wire()))
        try:
            return await counted
        finally:
            self._counting.pop(request_id, None)

    def _answer_count(self, event: list[Any]) -> None:
        counted = self._counting.pop(event[1], None)
        if counted is None or counted.done():
            return  # the asker gave up waiting
        if event[0] == "counted":
            counted.set_result(event[2])
        else:
            counted.set_exception(_rejection_error(event[2], event[3], event[4]))

    def _fail_counts(self, error: ModelyardError) -> None:
        for counted in self._counting.values():
            if not counted.done():
                counted.set_exception(error)
        self._counting.clear()

    def cancel(self, request_id: int) -> None:
        if request_id in self._tracked and self._writer is not None:
            self._writer.write(encode_frame(cancel_command(request_id)))

    def _forget(self, tracked: _Tracked) -> None:
        if self._tracked.pop(tracked.stream.request_id, None) is None:
            return
        if tracked.stream.started:
            self._running -= 1
        else:
            self._waiting -= 1

    def _end_all_lost(self, reason: str) -> None:
        """The child is gone: every request it held ends now."""
        for tracked in list(self._tracked.values()):
            started = tracked.stream.started
            self._forget(tracked)
            if started:
                self.counters.failed += 1
                tracked.stream.lost(
                    LocalEngineFailed(
                        f"The local engine of deployment '{self.spec.deployment}' stopped "
                        f"({reason}) while generating this answer; it is being restarted."
                    )
                )
            else:
                tracked.stream.lost(
                    EngineUnavailable(
                        f"The local engine of deployment '{self.spec.deployment}' stopped "
                        f"({reason}) before this request started; it is being restarted.",
                        retry_after_s=2,
                    )
                )

    def _end_all(self, error: ModelyardError) -> None:
        for tracked in list(self._tracked.values()):
            self._forget(tracked)
            tracked.stream.lost(error)

    def _retry_after_s(self) -> int:
        parallel = self.info.parallel if self.info is not None else 1
        rounds = self._waiting / parallel + 1
        return max(1, min(60, round(rounds * self.counters.mean_request_s)))

    def _unavailable_reason(self) -> str:
        if self.status == EngineStatus.STARTING:
            return "it is still loading"
        if self.status == EngineStatus.RESTARTING:
            return f"its engine is restarting ({self.reason})"
        return f"its engine {self.reason}"

    # -- the child process -------------------------------------------------------------------------

    async def _reap(self) -> int | None:
        process = self._process
        if process is None:
            return None
        try:
            return await asyncio.wait_for(process.wait(), STOP_GRACE_S)
        except TimeoutError:
            await self._kill_child()
            return process.returncode

    async def _kill_child(self) -> None:
        process = self._process
        if process is None or process.returncode is not None:
            return
        if self._writer is not None:
            self._writer.close()
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), STOP_GRACE_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()


def _describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "stopped"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"was killed by {name}"
    return f"exited with status {returncode}"


def _rejection_error(code: str, message: str, detail: dict[str, Any]) -> ModelyardError:
    if code == "context_length_exceeded":
        prompt, completion, window = (
            detail["prompt_tokens"],
            detail["completion_tokens"],
            detail["window"],
        )
        return ContextLengthExceeded(
            f"This model's maximum context length is {window} tokens. However, you requested "
            f"{prompt + completion} tokens ({prompt} in the messages, {completion} in the "
            "completion). Please reduce the length of the messages or the completion.",
            param="messages",
        )
    if code == "unsupported_schema":
        return UnsupportedSchema(message)
    if code == "invalid_request":
        return InvalidRequest(message, param="messages")
    return InternalError("the local engine could not admit the request")
