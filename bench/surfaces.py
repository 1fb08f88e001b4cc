"""What the Responses and Anthropic Messages surfaces cost next to chat completions: the same
request, through the same gateway, to the same fast upstream, measured side by side in one run.

Owns one benchmark, built from `bench/overhead`'s parts: its fast fake upstream (a process of
its own, answering every request with the same completion or a stream of `--chunks` tokens),
its closed-loop load generator (a process of its own), its CPU readings from /proc and its
reductions (per-repeat ratios, then the median). One `modelyard serve` with one worker and
accounting on with a fully limited key (as in `bench/overhead`), so every request is admitted,
recorded and settled.

Sides: `chat` (`POST /v1/chat/completions`), `responses` (`POST /v1/responses`) and `messages`
(`POST /v1/messages`), each asking model `acme-small` for at most 8 tokens of the same one-line
prompt. Cells: non-streamed and streamed, c=1 and c=16; every side back to back in each repeat,
the order rotating. Printed per cell: req/s, p50, p99, gateway CPU per request, and each new
surface's CPU per request as a ratio to chat's, paired per repeat. Target: <= 1.10 (at most 10%
more CPU per request than chat completions).

A run during which other processes used more than 0.2 core is run again (twice at most,
`--patience` seconds in all); the quietest is kept. Run: `.venv/bin/python -m bench.surfaces
[--quick]`, about 2 minutes on a quiet machine (`--quick`: under one). Linux only.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import orjson
from bench.overhead import servers
from bench.overhead.aggregate import Results, throughput
from bench.overhead.cells import LoadRun, Measurement, load_spec
from bench.overhead.payloads import MODEL
from bench.overhead.report import table
from bench.overhead.servers import Server
from bench.overhead.sse import SURFACES
from bench.overhead.targets import Verdict, at_most, judge, show
from bench.routing import Patience, load_line, quietness, scaled, shown

SIDES = ("chat", "responses", "messages")
PROMPT = "Hi"
MAX_TOKENS = 8


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.surfaces", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--repeats", type=int, help="repeats per cell (4)")
    parser.add_argument("--seconds", type=float, help="seconds per cell (2.5)")
    parser.add_argument("--chunks", type=int, default=20, help="tokens per streamed answer (20)")
    parser.add_argument(
        "--patience", type=float, help="seconds for running noisy runs again (60; quick: 10)"
    )
    args = parser.parse_args(argv)
    args.repeats = args.repeats or (1 if args.quick else 4)
    args.seconds = args.seconds or (1.0 if args.quick else 2.5)
    if args.patience is None:
        args.patience = 10.0 if args.quick else 60.0
    return args


def request_body(side: str, stream: bool) -> bytes:
    """The same request in each surface's own shape (chat's and Anthropic's coincide here)."""
    body: dict[str, Any]
    if side == "responses":
        body = {"model": MODEL, "input": PROMPT, "max_output_tokens": MAX_TOKENS}
    else:
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": PROMPT}],
            "max_tokens": MAX_TOKENS,
        }
    if stream:
        body["stream"] = True
    return orjson.dumps(body)


def run_load(
    server: Server,
    upstream: Server,
    side: str,
    kind: str,
    concurrency: int,
    repeat: int,
    seconds: float,
    chunks: int,
) -> Measurement:
    spec = load_spec(server, kind, concurrency, seconds, chunks=chunks)
    headers = dict(server.headers)
    if side == "messages":
        headers["anthropic-version"] = "2023-06-01"
    spec = replace(
        spec,
        path=SURFACES[side].path,
        headers=headers,
        plain_body=request_body(side, stream=False).decode(),
        stream_body=request_body(side, stream=True).decode(),
        surface=side,
    )
    run = LoadRun(spec, [server.pid, upstream.pid])
    return run.measurement(side, f"{kind} c={concurrency}", repeat, server.pid, [upstream.pid])


CELLS = (("plain", 1), ("plain", 16), ("stream", 1), ("stream", 16))


def measure(
    server: Server, upstream: Server, args: argparse.Namespace, patience: Patience
) -> Results:
    print(f"{args.repeats} repeat(s) x {args.seconds:g} s per cell", flush=True)
    for side in SIDES:  # unmeasured: connections, caches
        for kind in ("plain", "stream"):
            run_load(server, upstream, side, kind, 16, 0, 1.0, args.chunks)
    measurements = []
    for repeat in range(args.repeats):
        for kind, concurrency in CELLS:
            shift = repeat % len(SIDES)
            for side in SIDES[shift:] + SIDES[:shift]:
                measurements.append(
                    patience.quietest(
                        partial(
                            run_load,
                            server,
                            upstream,
                            side,
                            kind,
                            concurrency,
                            repeat,
                            args.seconds,
                            args.chunks,
                        )
                    )
                )
    return Results(measurements)


def server_cpu(m: Measurement) -> float:
    return m.server_cpu_ms


def report(results: Results) -> list[Verdict]:
    rows, verdicts = [], []
    for kind, concurrency in CELLS:
        cell = f"{kind} c={concurrency}"
        for side in SIDES:
            s = results.summary(side, cell)
            assert s is not None
            new = side != "chat"
            cpu_ratio = results.ratio(side, "chat", cell, server_cpu) if new else None
            rps_ratio = results.ratio(side, "chat", cell, throughput) if new else None
            rows.append(
                [
                    side,
                    cell,
                    shown(s.rps, 0),
                    shown(s.p50),
                    shown(s.p99),
                    shown(scaled(s.server_cpu_ms, 1000), 0),
                    shown(cpu_ratio, 3),
                    shown(rps_ratio, 3),
                    str(s.errors),
                    f"{s.others_cores_max:.2f}",
                ]
            )
            if new:
                verdicts.append(
                    judge(
                        f"{side}: CPU per request <= 1.10 x chat, {cell}",
                        cpu_ratio,
                        at_most(cpu_ratio, 1.10),
                        "x",
                    )
                )
    header = ["surface", "cell", "req/s", "p50 ms", "p99 ms", "gateway CPU µs/req"]
    header += ["CPU ÷ chat", "req/s ÷ chat", "errors", "others max (cores)"]
    print("\n## Surfaces (median [min..max] over repeats; ratios paired per repeat)\n")
    print(table(header, rows))
    return verdicts


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(load_line(f"{os.cpu_count()} cores; before", []), flush=True)
    work = Path(tempfile.mkdtemp(prefix="modelyard-surfaces-"))
    with contextlib.ExitStack() as stack:
        upstream = servers.start_upstream(stack, chunks=args.chunks)
        server = servers.start_modelyard(stack, upstream, work)
        patience = Patience(args.patience)
        results = measure(server, upstream, args, patience)
    shutil.rmtree(work, ignore_errors=True)
    verdicts = report(results)
    print("\n## Targets\n")
    print(show(verdicts))
    print()
    print(quietness(patience, [m.others_cores for m in results.measurements]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
