"""What metrics and tracing cost a request: the same requests, through gateways that differ only
in what they observe, to the same fast upstream, measured side by side in one run.

Owns one benchmark, built from `bench/overhead`'s parts: its fast fake upstream (a process of
its own), its closed-loop load generator, its CPU readings from /proc and its reductions
(per-repeat ratios, then the median over repeats). Four `modelyard serve` processes, one worker
each, accounting on with a fully limited key (as in `bench/overhead`), in front of that one
upstream:

- `off`: metrics off (`MODELYARD_METRICS=false`) and tracing off (`OTEL_SDK_DISABLED=true`);
- `metrics`: Prometheus metrics on, tracing off;
- `tracing`: metrics on, and OpenTelemetry traces of every request exported over OTLP/HTTP to a
  receiver on loopback (a process of its own, started here, that decodes and counts the spans it
  gets, so the run shows that they were all exported);
- `sampled`: the same with the sampler the README suggests for production
  (`parentbased_traceidratio`, one trace in ten).

With `--access-log`, a fourth, `access-log`: metrics and tracing off, the JSON access log on
(level info), written to a file.

Cells: non-streamed c=1 and c=16, streamed c=16 (`--chunks` tokens). In every repeat each side
runs each cell back to back, the order rotating, so that drift hits all alike. Printed per cell:
req/s, p50, gateway CPU per request, and each side's CPU per request and req/s as ratios to the
side it adds one feature to (`COMPARED_WITH`: metrics to `off`, tracing to `metrics`), paired
per repeat, median over repeats. Targets: metrics' CPU per request <= 1.03 x off and req/s >=
0.97 x off; tracing's <= 1.10 x metrics and >= 0.90 x (req/s judged at c=16 only, where the
gateway's CPU bounds it).

A run during which other processes used more than 0.2 core is run again (twice at most,
`--patience` seconds in all); the quietest is kept. Run: `make bench-observability` or
`.venv/bin/python -m bench.observability [--quick] [--access-log]`, about 3 minutes on a quiet
machine (`--quick`: about one). Linux only.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import httpx
from bench.overhead import servers
from bench.overhead.aggregate import Results, throughput
from bench.overhead.cells import LoadRun, Measurement, load_spec
from bench.overhead.report import table
from bench.overhead.servers import ROOT, Server
from bench.overhead.targets import Verdict, at_least, at_most, judge, show
from bench.routing import Patience, load_line, quietness, scaled, shown

CELLS = (("plain", 1), ("plain", 16), ("stream", 16))
BASELINE = "off"
# What each side's cost is measured against: metrics against nothing observed, tracing against
# the same gateway with metrics on and tracing off, so each figure is its own feature's cost.
COMPARED_WITH = {"metrics": "off", "tracing": "metrics", "sampled": "metrics", "access-log": "off"}
# Upper bound on CPU per request and lower bound on req/s, each as a ratio to `off`.
TARGETS = {"metrics": (1.03, 0.97), "tracing": (1.10, 0.90), "sampled": (1.10, 0.90)}
# The production setting the README suggests: one trace in ten, the client's decision kept.
SAMPLED_RATIO = "0.1"
TRACING_OFF = {"OTEL_SDK_DISABLED": "true"}
# Longer than the batch span processor's schedule delay (OTEL_BSP_SCHEDULE_DELAY, 5 s).
EXPORT_DELAY_S = 6.0


@dataclass(frozen=True)
class Receiver:
    """The OTLP/HTTP receiver process: its port, its pid, and the spans it has decoded."""

    port: int
    pid: int

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/traces"

    def spans(self) -> int:
        return int(httpx.get(f"http://127.0.0.1:{self.port}/spans", timeout=10).text)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.observability", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--repeats", type=int, help="repeats per cell (5; quick: 1)")
    parser.add_argument("--seconds", type=float, help="seconds per cell (2.5; quick: 1)")
    parser.add_argument("--chunks", type=int, default=20, help="tokens per streamed answer (20)")
    parser.add_argument("--access-log", action="store_true", help="measure the JSON access log too")
    parser.add_argument(
        "--patience", type=float, help="seconds for running noisy runs again (60; quick: 10)"
    )
    parser.add_argument("--otlp-receiver", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.repeats = args.repeats or (1 if args.quick else 5)
    args.seconds = args.seconds or (1.0 if args.quick else 2.5)
    if args.patience is None:
        args.patience = 10.0 if args.quick else 60.0
    return args


# -- the OTLP receiver (a process of its own) ----------------------------------------------------


def serve_receiver() -> None:
    """Decode every `ExportTraceServiceRequest` posted to /v1/traces and count its spans; GET
    /spans answers the count. Prints its port once it listens."""
    import uvicorn
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
        ExportTraceServiceResponse,
    )
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, Response
    from starlette.routing import Route
    from tests.support.ports import free_port

    received = [0]
    empty = ExportTraceServiceResponse().SerializeToString()

    async def traces(request: Request) -> Response:
        export = ExportTraceServiceRequest.FromString(await request.body())
        for resource in export.resource_spans:
            for scope in resource.scope_spans:
                received[0] += len(scope.spans)
        return Response(empty, media_type="application/x-protobuf")

    async def spans(request: Request) -> Response:
        return PlainTextResponse(str(received[0]))

    app = Starlette(routes=[Route("/v1/traces", traces, methods=["POST"]), Route("/spans", spans)])
    port = free_port()
    print(port, flush=True)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")


def start_receiver(stack: contextlib.ExitStack) -> Receiver:
    command = [sys.executable, "-m", "bench.observability", "--otlp-receiver"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    stack.callback(servers.terminate, process)
    assert process.stdout is not None
    receiver = Receiver(int(process.stdout.readline()), process.pid)
    for _ in range(100):
        with contextlib.suppress(httpx.TransportError):
            receiver.spans()
            return receiver
        time.sleep(0.1)
    raise RuntimeError("the OTLP receiver did not start")


# -- the gateways ----------------------------------------------------------------------------------


def side_env(side: str, receiver: Receiver) -> dict[str, str]:
    if side == "off":
        return {"MODELYARD_METRICS": "false", **TRACING_OFF}
    if side == "metrics":
        return {"MODELYARD_METRICS": "true", **TRACING_OFF}
    if side in ("tracing", "sampled"):
        traced = {
            "MODELYARD_METRICS": "true",
            "OTEL_SDK_DISABLED": "false",
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.endpoint,
            "OTEL_TRACES_SAMPLER": "parentbased_always_on",
        }
        if side == "sampled":
            traced["OTEL_TRACES_SAMPLER"] = "parentbased_traceidratio"
            traced["OTEL_TRACES_SAMPLER_ARG"] = SAMPLED_RATIO
        return traced
    if side == "access-log":
        return {
            "MODELYARD_METRICS": "false",
            **TRACING_OFF,
            "MODELYARD_LOG_LEVEL": "info",
            "MODELYARD_LOG_FORMAT": "json",
        }
    raise ValueError(side)


def run_load(
    served: Counter[str],
    server: Server,
    watched: list[int],
    side: str,
    kind: str,
    concurrency: int,
    repeat: int,
    seconds: float,
    chunks: int,
) -> Measurement:
    spec = load_spec(server, kind, concurrency, seconds, chunks=chunks)
    run = LoadRun(spec, [server.pid, *watched])
    measurement = run.measurement(side, f"{kind} c={concurrency}", repeat, server.pid, watched)
    served[side] += measurement.requests
    return measurement


def measure(
    gateways: dict[str, Server],
    watched: list[int],
    args: argparse.Namespace,
    patience: Patience,
    served: Counter[str],
) -> Results:
    sides = list(gateways)
    print(f"{args.repeats} repeat(s) x {args.seconds:g} s per cell, sides {sides}", flush=True)
    for side, server in gateways.items():  # unmeasured: connections, caches
        for kind in ("plain", "stream"):
            run_load(served, server, watched, side, kind, 16, 0, 1.0, args.chunks)
    measurements = []
    for repeat in range(args.repeats):
        for kind, concurrency in CELLS:
            shift = repeat % len(sides)
            for side in sides[shift:] + sides[:shift]:
                load = partial(
                    run_load,
                    served,
                    gateways[side],
                    watched,
                    side,
                    kind,
                    concurrency,
                    repeat,
                    args.seconds,
                    args.chunks,
                )
                measurements.append(patience.quietest(load))
    return Results(measurements)


# -- the report ------------------------------------------------------------------------------------


def server_cpu(m: Measurement) -> float:
    return m.server_cpu_ms


def report(results: Results, sides: list[str]) -> list[Verdict]:
    rows, verdicts = [], []
    for kind, concurrency in CELLS:
        cell = f"{kind} c={concurrency}"
        for side in sides:
            s = results.summary(side, cell)
            assert s is not None
            base = COMPARED_WITH.get(side)
            cpu = results.ratio(side, base, cell, server_cpu) if base else None
            rps = results.ratio(side, base, cell, throughput) if base else None
            rows.append(
                [
                    side,
                    base or "-",
                    cell,
                    shown(s.rps, 0),
                    shown(s.p50),
                    shown(scaled(s.server_cpu_ms, 1000), 0),
                    shown(cpu, 3),
                    shown(rps, 3),
                    str(s.errors),
                    f"{s.others_cores_max:.2f}",
                ]
            )
            if side in TARGETS:
                most_cpu, least_rps = TARGETS[side]
                verdicts.append(
                    judge(
                        f"{side}: CPU/req <= {most_cpu} x {base}, {cell}",
                        cpu,
                        at_most(cpu, most_cpu),
                        "x",
                    )
                )
                if concurrency > 1:
                    verdicts.append(
                        judge(
                            f"{side}: req/s >= {least_rps} x {base}, {cell}",
                            rps,
                            at_least(rps, least_rps),
                            "x",
                        )
                    )
    header = ["side", "against", "cell", "req/s", "p50 ms", "gateway CPU µs/req", "CPU ÷ against"]
    header += ["req/s ÷ against"]
    header += ["errors", "others max (cores)"]
    print("\n## Observability (median [min..max] over repeats; ratios paired per repeat)\n")
    print(table(header, rows))
    return verdicts


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.otlp_receiver:
        with contextlib.suppress(KeyboardInterrupt):
            serve_receiver()
        return 0
    sides = ["off", "metrics", "tracing", "sampled"] + (["access-log"] if args.access_log else [])
    print(load_line(f"{os.cpu_count()} cores; before", []), flush=True)
    work = Path(tempfile.mkdtemp(prefix="modelyard-observability-"))
    with contextlib.ExitStack() as stack:
        upstream = servers.start_upstream(stack, chunks=args.chunks)
        receiver = start_receiver(stack)
        gateways = {
            side: servers.start_modelyard(
                stack, upstream, work / side, env=side_env(side, receiver)
            )
            for side in sides
        }
        patience = Patience(args.patience)
        served: Counter[str] = Counter()
        results = measure(gateways, [upstream.pid, receiver.pid], args, patience, served)
        time.sleep(EXPORT_DELAY_S)  # the last batch of spans
        spans = receiver.spans()
    shutil.rmtree(work, ignore_errors=True)
    verdicts = report(results, sides)
    print("\n## Targets\n")
    print(show(verdicts))
    traced, sampled = served["tracing"], served["sampled"]
    expected = traced + sampled * float(SAMPLED_RATIO)
    print(
        f"\nThe OTLP receiver decoded {spans:,} spans for the {traced:,} requests the tracing "
        f"gateway served and the {sampled:,} of the sampled one (ratio {SAMPLED_RATIO}): "
        f"{spans / max(expected, 1):.2f} per traced request."
    )
    print(quietness(patience, [m.others_cores for m in results.measurements]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
