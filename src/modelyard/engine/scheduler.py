"""Continuous batching: one model decodes up to `parallel` sequences together, step by step.

Each step builds one llama.cpp batch from the next token of every generating sequence and
chunks of prompts still being evaluated (at most `STEP_TOKENS` in all, and smaller prompt chunks
while others generate, so a long prompt delays them by little), decodes it, and samples each
sequence that produced logits with its own sampler and grammar. Requests join between steps:
the waiting queue is served round-robin across fairness keys (one key cannot hold the engine),
and a sequence reuses the cells of the slot whose cached tokens share the longest prefix with
its prompt. A cancelled request leaves at the next step boundary, waiting or running, and always
ends with a `finished` event that counts what was evaluated and generated.

Only the loop's thread touches the model and the sequences; other threads hand over requests and
cancellations through `submit` and `cancel`.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import llama_cpp

from modelyard.engine.constraint import Closing, GrammarConstraint
from modelyard.engine.json_shape import JsonShape
from modelyard.engine.model import STEP_TOKENS, LoadedModel
from modelyard.engine.sampler import Sampler
from modelyard.engine.text_assembly import TextAssembler
from modelyard.engine.wire import GenerateCommand

log = logging.getLogger(__name__)

# Prompt tokens a step takes while other sequences are generating: their next token waits for
# the whole step, so a long prompt is evaluated in slices.
SHARED_STEP_PROMPT_TOKENS = 128

Event = list[Any]


@dataclass
class Admitted:
    """A request that passed admission: tokenized, checked, with its grammar compiled."""

    command: GenerateCommand
    prompt: list[int]
    # Completion tokens each choice may generate.
    budget: int
    # Makes each choice's grammar state; None for free text.
    new_constraint: Callable[[], GrammarConstraint] | None
    cancelled: bool = False


@dataclass
class Slot:
    seq_id: int
    # The tokens whose cells this slot holds, in position order.
    cached: list[int] = field(default_factory=list)


@dataclass
class Sequence:
    """A request while it owns a slot."""

    request: Admitted
    slot: Slot
    reused: int
    to_evaluate: list[int]
    choice: int = 0
    sampler: Sampler | None = None
    constraint: GrammarConstraint | None = None
    assembler: TextAssembler | None = None
    # Followed for JSON-only answers, to steer them closed in time; None otherwise.
    shape: JsonShape | None = None
    choice_tokens: int = 0
    generated: int = 0
    next_token: int | None = None

    @property
    def id(self) -> int:
        return self.request.command.id

    @property
    def position(self) -> int:
        return len(self.slot.cached)

    def prompt_evaluated(self) -> int:
        return min(self.position, len(self.request.prompt))


class Scheduler:
    def __init__(self, model: LoadedModel, emit: Callable[[list[Event]], None]) -> None:
        self._model = model
        self._emit = emit
        self._slots = [Slot(seq_id) for seq_id in range(model.parallel)]
        self._free: list[Slot] = list(self._slots)
        self._running: list[Sequence] = []
        self._waiting: OrderedDict[str, deque[Admitted]] = OrderedDict()
        self._by_id: dict[int, Admitted] = {}
        self._inbox: list[Admitted] = []
        # Cancelled ids, kept until their request is known here (it may still be in admission).
        self._cancelled_ids: set[int] = set()
        self._cancel_arrived = False
        self._closing = False
        self._wake = threading.Condition()
        self._batch = llama_cpp.llama_batch_init(STEP_TOKENS, 0, 1)

    # -- called from other threads -----------------------------------------------------------

    def submit(self, request: Admitted) -> None:
        with self._wake:
            self._inbox.append(request)
            self._wake.notify()

    def cancel(self, request_id: int) -> None:
        with self._wake:
            self._cancelled_ids.add(request_id)
            self._cancel_arrived = True
            self._wake.notify()

    def forget_cancel(self, request_id: int) -> None:
        """The request was never admitted: a cancellation for it has nothing to find."""
        with self._wake:
            self._cancelled_ids.discard(request_id)

    def set_emit(self, emit: Callable[[list[Event]], None]) -> None:
        self._emit = emit

    def close(self) -> None:
        with self._wake:
            self._closing = True
            self._wake.notify()

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> None:
        while self._take_inbox():
            events: list[Event] = []
            try:
                self._apply_cancels(events)
                self._fill_slots(events)
                if self._running:
                    self._step(events)
            except Exception:
                # A bug, not a request's fault: the requests under way end with an error rather
                # than wait forever, and the engine keeps serving.
                log.exception("a decode step failed")
                for sequence in list(self._running):
                    self._fail(sequence, "internal_error", "the local engine failed", events)
            if events:
                self._emit(events)

    def run_until_idle(self) -> None:
        """Serve what was submitted until nothing is left (the start-up self-test)."""
        while True:
            with self._wake:
                self._receive()
            events: list[Event] = []
            self._fill_slots(events)
            if not self._running:
                return
            self._step(events)
            self._emit(events)

    def _take_inbox(self) -> bool:
        """Wait for work; False once closing."""
        with self._wake:
            while (
                not self._closing
                and not self._inbox
                and not self._cancel_arrived
                and not self._running
                and not (self._waiting and self._free)
            ):
                self._wake.wait()
            if self._closing:
                return False
            self._receive()
            return True

    def _receive(self) -> None:
        for request in self._inbox:
            self._by_id[request.command.id] = request
            queue = self._waiting.setdefault(request.command.fairness_key, deque())
            queue.append(request)
        self._inbox.clear()
        for request_id in list(self._cancelled_ids):
            known = self._by_id.get(request_id)
            if known is not None:
                known.cancelled = True
                self._cancelled_ids.discard(request_id)
        self._cancel_arrived = False

    def _apply_cancels(self, events: list[Event]) -> None:
        for key in list(self._waiting):
            queue = self._waiting[key]
            for request in [r for r in queue if r.cancelled]:
                queue.remove(request)
                del self._by_id[request.command.id]
                events.append(["finished", request.command.id, 0, 0, 0])
            if not queue:
                del self._waiting[key]
        for sequence in [s for s in self._running if s.request.cancelled]:
            self._end(sequence, events)

    def _fill_slots(self, events: list[Event]) -> None:
        while self._free and self._waiting:
            key, queue = next(iter(self._waiting.items()))
            request = queue.popleft()
            # Round-robin: this key goes to the back of the line.
            del self._waiting[key]
            if queue:
                self._waiting[key] = queue
            self._start(request, events)

    def _start(self, request: Admitted, events: list[Event]) -> None:
        prompt = request.prompt
        slot = max(self._free, key=lambda s: _common_prefix(s.cached, prompt))
        self._free.remove(slot)
        # At least the last prompt token is evaluated again: its logits give the first token.
        reused = min(_common_prefix(slot.cached, prompt), len(prompt) - 1)
        self._model.forget(slot.seq_id, reused)
        del slot.cached[reused:]
        sequence = Sequence(request, slot, reused, prompt[reused:])
        self._running.append(sequence)
        events.append(["started", request.command.id])
        self._begin_choice(sequence)

    def _begin_choice(self, sequence: Sequence) -> None:
        command = sequence.request.command
        if sequence.sampler is not None:
            sequence.sampler.close()
        sequence.sampler = Sampler(
            command.sampling, command.sampling.seed + sequence.choice, self._model.n_vocab
        )
        new_constraint = sequence.request.new_constraint
        sequence.constraint = new_constraint() if new_constraint is not None else None
        sequence.assembler = TextAssembler(tuple(command.stops))
        sequence.shape = JsonShape() if command.close_within_budget else None
        sequence.choice_tokens = 0

    def _step(self, events: list[Event]) -> None:
        batch = self._batch
        batch.n_tokens = 0
        outputs: list[tuple[Sequence, int]] = []
        generating = [s for s in self._running if s.next_token is not None]
        for sequence in generating:
            assert sequence.next_token is not None
            outputs.append((sequence, self._add(sequence, sequence.next_token, True)))
            sequence.next_token = None
        room = STEP_TOKENS - len(generating)
        if generating:
            room = min(room, SHARED_STEP_PROMPT_TOKENS)
        for sequence in self._running:
            if not sequence.to_evaluate or room <= 0:
                continue
            chunk = sequence.to_evaluate[:room]
            del sequence.to_evaluate[:room]
            room -= len(chunk)
            for offset, token in enumerate(chunk):
                last = not sequence.to_evaluate and offset == len(chunk) - 1
                index = self._add(sequence, token, last)
            if not sequence.to_evaluate:
                outputs.append((sequence, index))
        status = llama_cpp.llama_decode(self._model.context, batch)
        if status != 0:
            log.error("llama_decode returned %d for a batch of %d tokens", status, batch.n_tokens)
            for sequence in {id(s): s for s, _ in outputs}.values():
                self._fail(sequence, "internal_error", "the local engine could not decode", events)
            return
        for sequence, index in outputs:
            self._sampled(sequence, index, events)

    def _add(self, sequence: Sequence, token: int, logits: bool) -> int:
        batch = self._batch
        index = int(batch.n_tokens)
        batch.token[index] = token
        batch.pos[index] = sequence.position
        batch.n_seq_id[index] = 1
        batch.seq_id[index][0] = sequence.slot.seq_id
        batch.logits[index] = logits
        batch.n_tokens = index + 1
        sequence.slot.cached.append(token)
        return index

    def _sampled(self, sequence: Sequence, index: int, events: list[Event]) -> None:
        assert sequence.sampler is not None and sequence.assembler is not None
        constraint = sequence.constraint
        closing, avoid = _steer(sequence)
        token = sequence.sampler.sample(self._model.context, index, constraint, closing, avoid)
        request_id = sequence.id
        if constraint is not None and not constraint.consume(token):
            # The mask allowed the token, so the grammar itself failed: past llguidance's limits
            # (a schema too costly to enforce), or a bug. Its error names no content.
            log.error("request %d: the grammar failed (%s)", request_id, constraint.error())
            self._fail(
                sequence,
                "unsupported_schema",
                f"The schema cannot be enforced: {constraint.error()}",
                events,
            )
            return
        if self._model.is_end_of_generation(token):
            self._end_choice(sequence, "stop", events)
            return
        sequence.choice_tokens += 1
        sequence.generated += 1
        piece = self._model.piece(token)
        if sequence.shape is not None:
            sequence.shape.push(token, piece.decode("utf-8", "ignore"))
        text = sequence.assembler.push(piece)
        events.append(["text", request_id, sequence.choice, text, 1])
        if sequence.assembler.stopped or (constraint is not None and constraint.finished()):
            self._end_choice(sequence, "stop", events)
        elif sequence.choice_tokens >= sequence.request.budget:
            self._end_choice(sequence, "length", events)
        else:
            sequence.next_token = token

    def _end_choice(self, sequence: Sequence, finish_reason: str, events: list[Event]) -> None:
        assert sequence.assembler is not None
        request_id = sequence.id
        if not sequence.assembler.stopped:
            tail = sequence.assembler.flush()
            if tail:
                events.append(["text", request_id, sequence.choice, tail, 0])
        events.append(["choice", request_id, sequence.choice, finish_reason])
        sequence.choice += 1
        if sequence.choice == sequence.request.command.choices:
            self._end(sequence, events)
            return
        # The next choice starts again from the prompt: drop what this one generated.
        prompt = sequence.request.prompt
        self._model.forget(sequence.slot.seq_id, len(prompt) - 1)
        del sequence.slot.cached[len(prompt) - 1 :]
        sequence.to_evaluate = [prompt[-1]]
        self._begin_choice(sequence)

    def _end(self, sequence: Sequence, events: list[Event]) -> None:
        events.append(
            [
                "finished",
                sequence.id,
                sequence.prompt_evaluated(),
                sequence.generated,
                min(sequence.reused, sequence.prompt_evaluated()),
            ]
        )
        self._release(sequence)

    def _fail(self, sequence: Sequence, code: str, message: str, events: list[Event]) -> None:
        events.append(
            ["failed", sequence.id, code, message, sequence.prompt_evaluated(), sequence.generated]
        )
        # Its cells may be half-written: the slot starts empty next time.
        self._model.forget(sequence.slot.seq_id, 0)
        sequence.slot.cached.clear()
        self._release(sequence)

    def _release(self, sequence: Sequence) -> None:
        if sequence.sampler is not None:
            sequence.sampler.close()
        self._running.remove(sequence)
        self._free.append(sequence.slot)
        self._by_id.pop(sequence.id, None)

    def reset(self) -> None:
        """Empty every slot (after the self-test, before serving)."""
        for slot in self._slots:
            self._model.forget(slot.seq_id, 0)
            slot.cached.clear()

    def state(self) -> tuple[int, int]:
        """(waiting, running), as the loop's thread last left them."""
        return sum(len(q) for q in self._waiting.values()), len(self._running)


def _steer(sequence: Sequence) -> tuple[Closing | None, int | None]:
    """How to steer a JSON answer now: towards its end near the end of its budget or inside a
    string that loops, and away from the token that would go on with the loop."""
    shape = sequence.shape
    if shape is None:
        return None, None
    loop = shape.loop_continuation() if shape.in_string else None
    left = sequence.request.budget - sequence.choice_tokens
    if loop is None and left > shape.reserve(sequence.request.budget):
        return None, None
    return (Closing.STRING if shape.in_string else Closing.VALUE), loop


def _common_prefix(cached: list[int], prompt: list[int]) -> int:
    length = min(len(cached), len(prompt))
    for index in range(length):
        if cached[index] != prompt[index]:
            return index
    return length
