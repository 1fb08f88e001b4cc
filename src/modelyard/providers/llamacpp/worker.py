"""One loaded model and the one thread that drives it.

llama.cpp runs about a third slower when several OS threads drive the same model, so each model
gets a single dedicated thread that loads it and then generates for one job at a time, in arrival
order (see `job_queue.py`). Events go back to the job's event loop with `call_soon_threadsafe`.
A cancelled job stops before its next token is computed, so at most one token is wasted.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import llama_cpp

from modelyard.errors import InternalError, NotReady
from modelyard.providers.base import ChatEvent, ChoiceFinished, Failed, Finished, TextDelta, Usage
from modelyard.providers.llamacpp.grammar import GrammarConstraint
from modelyard.providers.llamacpp.job_queue import JobQueue
from modelyard.providers.llamacpp.text_assembly import TextAssembler

log = logging.getLogger(__name__)


class GrammarViolation(Exception):
    """A sampled token broke the grammar whose mask was applied: a bug, never the model's fault."""


@dataclass(frozen=True)
class Sampling:
    temperature: float
    top_p: float
    presence_penalty: float
    frequency_penalty: float
    seed: int | None


@dataclass
class GenerationJob:
    prompt_tokens: list[int]
    sampling: Sampling
    max_tokens: int
    stops: tuple[str, ...]
    choices: int
    emit: Callable[[ChatEvent], None]
    cancelled: threading.Event = field(default_factory=threading.Event)
    # Makes a fresh grammar state for each choice; None for free text.
    new_constraint: Callable[[], GrammarConstraint] | None = None


@dataclass
class WorkerStats:
    """Counters for /metrics; written by the worker thread only."""

    jobs_completed: int = 0
    jobs_cancelled: int = 0
    tokens_generated: int = 0
    prompt_tokens: int = 0
    mean_job_seconds: float = 1.0


class ModelWorker:
    def __init__(self, name: str, load: Callable[[], Any], queue_depth: int) -> None:
        self.name = name
        self.stats = WorkerStats()
        self._load = load
        self._queue: JobQueue[GenerationJob] = JobQueue(queue_depth)
        self._loaded = threading.Event()
        self._load_error: BaseException | None = None
        self._llama: Any = None
        self._thread = threading.Thread(target=self._run, name=f"llamacpp:{name}", daemon=True)

    # -- event-loop side -------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def wait_loaded(self, timeout: float | None = None) -> Any:
        """Block until the model is loaded; returns the Llama object or raises the load error."""
        self._loaded.wait(timeout)
        if self._load_error is not None:
            raise self._load_error
        if self._llama is None:
            raise NotReady(f"local model '{self.name}' is still loading")
        return self._llama

    def ready(self) -> bool:
        return self._loaded.is_set() and self._load_error is None

    def submit(self, job: GenerationJob) -> bool:
        """Queue a job; False when the queue is full (the caller answers 503)."""
        return self._queue.offer(job)

    def retry_after_s(self) -> int:
        """An estimate of when a slot frees up, for Retry-After on a full queue."""
        waiting = self._queue.waiting() + 1
        return max(1, min(60, round(waiting * self.stats.mean_job_seconds)))

    def queue_state(self) -> tuple[int, bool]:
        return self._queue.waiting(), self._queue.busy()

    def stop(self, timeout: float = 10.0) -> None:
        for job in self._queue.close():
            job.emit(Failed(NotReady("the gateway is shutting down")))
        self._thread.join(timeout)

    # -- worker-thread side ----------------------------------------------------------------

    def _run(self) -> None:
        _yield_cpu_to_event_loop()
        try:
            self._llama = self._load()
        except BaseException as exc:
            log.error("local model %s failed to load: %s", self.name, exc)
            self._load_error = exc
            self._loaded.set()
            for abandoned in self._queue.close():
                abandoned.emit(Failed(NotReady(f"local model '{self.name}' failed to load")))
            return
        self._loaded.set()
        while (job := self._queue.take()) is not None:
            if job.cancelled.is_set():
                self.stats.jobs_cancelled += 1
                continue
            started = time.monotonic()
            try:
                self._generate(job)
            except Exception:
                log.exception("local generation failed on %s", self.name)
                job.emit(Failed(InternalError("local generation failed")))
            elapsed = time.monotonic() - started
            self.stats.mean_job_seconds = 0.8 * self.stats.mean_job_seconds + 0.2 * elapsed

    def _generate(self, job: GenerationJob) -> None:
        llama = self._llama
        prompt = job.prompt_tokens
        budget = min(job.max_tokens, llama.n_ctx() - len(prompt))
        base_seed = job.sampling.seed if job.sampling.seed is not None else random.getrandbits(31)
        generated = 0
        for choice in range(job.choices):
            llama.set_seed((base_seed + choice) & 0x7FFFFFFF)
            assembler = TextAssembler(job.stops)
            constraint = job.new_constraint() if job.new_constraint is not None else None
            finish_reason = "length"
            count = 0
            for token in llama.generate(
                prompt,
                temp=job.sampling.temperature,
                top_p=job.sampling.top_p,
                top_k=0,
                min_p=0.0,
                repeat_penalty=1.0,
                presence_penalty=job.sampling.presence_penalty,
                frequency_penalty=job.sampling.frequency_penalty,
                logits_processor=[constraint.mask_logits] if constraint is not None else None,
            ):
                if job.cancelled.is_set():
                    break
                if constraint is not None and not constraint.consume(token):
                    raise GrammarViolation(constraint.error())
                if self._is_end_of_generation(token):
                    finish_reason = "stop"
                    break
                count += 1
                text = assembler.push(llama.detokenize([token]))
                if text:
                    job.emit(TextDelta(choice, text))
                if assembler.stopped or (constraint is not None and constraint.finished()):
                    finish_reason = "stop"
                    break
                if count >= budget:
                    break
            generated += count
            self.stats.tokens_generated += count
            if job.cancelled.is_set():
                # Nobody reads this any more, but the stream keeps the usage for billing.
                self.stats.jobs_cancelled += 1
                job.emit(Finished(Usage(prompt_tokens=len(prompt), completion_tokens=generated)))
                return
            if not assembler.stopped:
                tail = assembler.flush()
                if tail:
                    job.emit(TextDelta(choice, tail))
            job.emit(ChoiceFinished(choice, finish_reason))
        self.stats.jobs_completed += 1
        self.stats.prompt_tokens += len(prompt)
        job.emit(Finished(Usage(prompt_tokens=len(prompt), completion_tokens=generated)))

    def _is_end_of_generation(self, token: int) -> bool:
        return bool(llama_cpp.llama_vocab_is_eog(self._llama._model.vocab, token))


def _yield_cpu_to_event_loop(niceness: int = 5) -> None:
    """Lower this thread's CPU priority, and with it that of llama.cpp's OpenMP threads, which
    are created from it and inherit it. The OpenMP threads spin while they wait, so on a small
    machine they keep every core busy; at normal priority the event loop then waits a whole
    scheduler slice (~4 ms) to deliver each token. Only lowering is allowed without privileges."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)
