"""Grammar-constrained decoding in the engine, with llguidance.

The gateway sends each constrained request's grammar (see `providers/llamacpp/grammar.py` for how
an output contract becomes one). Here it is compiled against the model's tokenizer, once per
distinct grammar, and every sequence gets its own copy of the matcher. Before a sequence samples,
its matcher's token mask forbids, in the logits, every token that would break the grammar; so
every sampled token keeps the output valid.

Near the end of its token budget a JSON-only sequence is steered to close its structure: of
the tokens the grammar allows, only those that end what is open stay allowed (inside a string a
closing quote; outside one a closing bracket, or, when none may come next, a comma). A number
that runs on digit after digit or a string that loops is then ended while there are still tokens
left to finish the JSON, instead of being cut off by `max_tokens` as invalid JSON (see
`json_shape.py` for when the steer starts).
"""

from __future__ import annotations

import enum
import threading
from collections import OrderedDict
from typing import Any

import llguidance
import llguidance.llamacpp
import numpy as np
from numpy.typing import NDArray

MAX_COMPILED = 256


class Closing(enum.Enum):
    """Which tokens the closing steer keeps: what ends a string, or what ends a value outside
    one (a closing bracket first, then a comma)."""

    STRING = (b'"',)
    VALUE = (b"}]", b",")


class GrammarRejected(Exception):
    """The grammar does not compile (the schema uses something llguidance cannot enforce)."""


class GrammarCompiler:
    """Per model: the tokenizer llguidance needs (about a second to build, so built once, on a
    thread of its own after start) and a compiled matcher per grammar."""

    def __init__(self, vocab: Any, n_vocab: int, pieces: list[bytes]) -> None:
        self._vocab = vocab
        self._n_vocab = n_vocab
        starts = {
            tier: np.array([p[:1] != b"" and p[:1] in tier for p in pieces], dtype=np.bool_)
            for closing in Closing
            for tier in closing.value
        }
        self._closing = {closing: [starts[tier] for tier in closing.value] for closing in Closing}
        self._tokenizer: Any = None
        self._built = threading.Event()
        self._compiled: OrderedDict[str, llguidance.LLMatcher] = OrderedDict()
        self._lock = threading.Lock()

    def build_tokenizer(self) -> None:
        self._tokenizer = llguidance.llamacpp.lltokenizer_from_vocab(self._vocab)
        self._built.set()

    def constraint(self, grammar: str) -> GrammarConstraint:
        """A fresh constraint for one sequence; compilation is cached."""
        self._built.wait()
        with self._lock:
            matcher = self._compiled.get(grammar)
            if matcher is None:
                matcher = llguidance.LLMatcher(self._tokenizer, grammar, log_level=0)
                if matcher.is_error():
                    raise GrammarRejected(f"The schema cannot be compiled: {matcher.get_error()}")
                # Some grammars compile and then fail building the first token's lexer (a
                # pattern like ^(a{1000}){1000}$ exceeds llguidance's limits): found now, such a
                # schema is a 400 rather than a failure mid-generation.
                probe = matcher.deep_copy()
                probe.compute_bitmask()
                forced = probe.compute_ff_tokens()
                if forced:
                    probe.consume_tokens(forced)
                if probe.is_error():
                    raise GrammarRejected(f"The schema cannot be enforced: {first_line(probe)}")
                if len(self._compiled) >= MAX_COMPILED:
                    self._compiled.popitem(last=False)
                self._compiled[grammar] = matcher
            else:
                self._compiled.move_to_end(grammar)
            return GrammarConstraint(matcher.deep_copy(), self._n_vocab, self._closing)


class GrammarConstraint:
    """One sequence's grammar state, driven by the decode loop."""

    def __init__(
        self,
        matcher: llguidance.LLMatcher,
        n_vocab: int,
        closing: dict[Closing, list[NDArray[np.bool_]]] | None = None,
    ) -> None:
        self._matcher = matcher
        self._n_vocab = n_vocab
        self._closing = closing or {}
        self._bits = np.zeros((n_vocab + 31) // 32, dtype=np.int32)

    def mask(
        self,
        logits: NDArray[np.float32],
        closing: Closing | None = None,
        avoid: int | None = None,
    ) -> None:
        """Set the logit of every token the grammar does not allow next to -inf, in place; when
        `closing`, also of every allowed token that does not end what is open; and of `avoid`
        (a loop's next token) when anything else is allowed."""
        self._matcher.unsafe_compute_mask_ptr(self._bits.ctypes.data, self._bits.nbytes)
        bits = np.unpackbits(self._bits.view(np.uint8), bitorder="little")[: self._n_vocab]
        allowed = bits.view(np.bool_)
        if closing is not None:
            for tier in self._closing.get(closing, []):
                ending = allowed & tier
                if ending.any():
                    allowed = ending
                    break
        if avoid is not None and allowed[avoid] and np.count_nonzero(allowed) > 1:
            allowed = allowed.copy()
            allowed[avoid] = False
        logits[~allowed] = -np.inf

    def consume(self, token: int) -> bool:
        return bool(self._matcher.consume_token(token))

    def finished(self) -> bool:
        """True once the output is complete and nothing but end-of-text may follow."""
        return bool(self._matcher.is_stopped())

    def error(self) -> str:
        """What went wrong, without the tokens llguidance quotes after it (output content)."""
        return first_line(self._matcher)


def first_line(matcher: llguidance.LLMatcher) -> str:
    return str(matcher.get_error()).split("\n", 1)[0][:200]
