"""What routing costs on the hot path, and how a route rides out failing deployments: one gateway,
measured side by side in one run.

Owns one benchmark, built from `bench/overhead`'s parts: its fast fake upstream (one process per
deployment), its closed-loop load generator (a process of its own), its CPU readings from /proc
and its reductions (per-repeat differences and ratios, then the median). One `modelyard serve`
with one worker (breakers, requests in flight and latency averages are per process), default
breaker settings, and accounting on with a fully limited key (as in `bench/overhead`):

1. **Routing cost.** `route-priority`, `route-weighted` and `route-least-latency` each have three
   fast deployments as candidates; `direct` names model `alpha`, whose only deployment is the
   routes' first candidate (a plan of one, no route). Non-streamed, c=1 and c=16, every side
   back to back in each repeat, the order rotating: req/s, p50, p99, gateway CPU per request;
   added CPU and the req/s ratio are taken per repeat against `direct`. Targets: <= 20 µs,
   >= 95%.
2. **Resilience.** `resilient` is a priority route over `refusing` (a closed port), `flaky` (the
   fast upstream answering 503 to calls 2, 5 and 8 of every ten: 30%, never two in a row) and
   `healthy`. Each round sends `--round-requests` at c=16 to it, to `route-priority` (three
   healthy candidates) and to `dead-first` (`refusing` then two healthy ones), then runs each of
   them and `flaky-first` (`flaky` then `healthy`) for `--seconds` at c=1. The first requests
   open `refusing`'s breaker; later it is probed after each cool-down. Printed: the success rate
   at c=16 (target >= 99.9%), p50 against `route-priority` per round (target: <= 1 ms more), and
   every request's attempts as its usage record lists them (`x-modelyard-attempts` counts them).
   The two controls split the added p50 between the dead candidate and the flaky one.

A time-bounded run during which other processes used more than 0.2 core is run again (twice at
most, `--patience` seconds in all); the quietest is kept. The machine's load is printed before
and after. Run: `.venv/bin/python -m bench.routing [--quick]`, about 3 minutes on a quiet
machine (`--quick`: under one). Linux only. Exits non-zero only when it could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import orjson
from bench.overhead import fastloop, servers
from bench.overhead.aggregate import Results, latency, throughput
from bench.overhead.cells import LoadRun, Measurement, load_spec
from bench.overhead.payloads import request_body
from bench.overhead.report import table
from bench.overhead.servers import ROOT, Server
from bench.overhead.summary import Spread
from bench.overhead.targets import Verdict, at_least, at_most, judge, show
from bench.overhead.upstream import Answers, UpstreamProtocol
from tests.routing.world import UPSTREAM_KEY, Deployment, write_catalog
from tests.support.gateway import GatewayProcess
from tests.support.network_faults import closed_port

SIDES = {
    "direct": "alpha",
    "priority": "route-priority",
    "weighted": "route-weighted",
    "least_latency": "route-least-latency",
}
RESILIENT, HEALTHY = "resilient", "route-priority"
# Controls that split the resilient route's added latency: the dead candidate alone in front of
# healthy ones, and the flaky one alone in front of a healthy one.
DEAD_FIRST, FLAKY_FIRST = "dead-first", "flaky-first"
ROUNDS_C16 = [RESILIENT, HEALTHY, DEAD_FIRST]
ROUNDS_C1 = [RESILIENT, HEALTHY, DEAD_FIRST, FLAKY_FIRST]
CONTROLS = {RESILIENT: HEALTHY, DEAD_FIRST: HEALTHY, FLAKY_FIRST: HEALTHY}
# A run during which other processes used more than this is run again (see `Patience`).
NOISY_CORES = 0.2
FAILING_SLOTS = frozenset({2, 5, 8})  # of every ten calls to `flaky`
_UNAVAILABLE = orjson.dumps({"error": {"message": "flaky: unavailable", "type": "server_error"}})
UNAVAILABLE = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
    b"content-length: %d\r\n\r\n%s" % (len(_UNAVAILABLE), _UNAVAILABLE)
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.routing", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--repeats", type=int, help="routing cost: repeats per cell (4)")
    parser.add_argument("--seconds", type=float, help="seconds per cell, c=1 rounds too (2.5)")
    parser.add_argument("--rounds", type=int, help="resilience: rounds (4)")
    parser.add_argument("--round-requests", type=int, help="resilience: c=16 requests (2500)")
    parser.add_argument(
        "--patience", type=float, help="seconds for running noisy runs again (60; quick: 10)"
    )
    parser.add_argument("--flaky-upstream", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    quick = args.quick
    args.repeats = args.repeats or (1 if quick else 4)
    args.seconds = args.seconds or (1.0 if quick else 2.5)
    args.rounds = args.rounds or (2 if quick else 4)
    args.round_requests = args.round_requests or (500 if quick else 2500)
    if args.patience is None:
        args.patience = 10.0 if quick else 60.0
    return args


# -- the servers ----------------------------------------------------------------------------------


class FlakyProtocol(UpstreamProtocol):
    """The fast upstream, but calls whose number (across connections) ends in a failing slot
    get a 503."""

    def __init__(self, answers: Answers, calls: itertools.count[int]) -> None:
        super().__init__(answers)
        self._calls = calls

    def _answer(self, head: bytes, body: bytes) -> None:
        if next(self._calls) % 10 in FAILING_SLOTS and self._transport is not None:
            self._transport.write(UNAVAILABLE)
            return
        super()._answer(head, body)


async def serve_flaky() -> None:
    answers, calls = Answers(chunks=1), itertools.count()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: FlakyProtocol(answers, calls), "127.0.0.1", 0, backlog=1024
    )
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


def start_flaky(stack: contextlib.ExitStack) -> Server:
    command = [sys.executable, "-m", "bench.routing", "--flaky-upstream"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    stack.callback(servers.terminate, process)
    assert process.stdout is not None
    return Server("direct", int(process.stdout.readline()), process.pid)


def write_bench_catalog(path: Path, fast: list[int], flaky: int) -> Path:
    def url(port: int) -> str:
        return f"http://127.0.0.1:{port}/v1"

    # `alpha` has one deployment only, so naming it is the direct call of `fast-a`.
    deployments = [
        Deployment("fast-a", "alpha", url(fast[0])),
        Deployment("fast-b", "beta", url(fast[1])),
        Deployment("fast-c", "gamma", url(fast[2])),
        Deployment("refusing", "beta", url(closed_port())),
        Deployment("flaky", "gamma", url(flaky)),
        Deployment("healthy", "gamma", url(fast[2])),
    ]
    routes = [
        {"id": route, "strategy": strategy, "candidates": [{"deployment": d} for d in arms]}
        for route, strategy, arms in (
            ("route-priority", "priority", ("fast-a", "fast-b", "fast-c")),
            ("route-weighted", "weighted", ("fast-a", "fast-b", "fast-c")),
            ("route-least-latency", "least_latency", ("fast-a", "fast-b", "fast-c")),
            (RESILIENT, "priority", ("refusing", "flaky", "healthy")),
            (DEAD_FIRST, "priority", ("refusing", "fast-b", "fast-c")),
            (FLAKY_FIRST, "priority", ("flaky", "healthy")),
        )
    ]
    return write_catalog(path, deployments, routes)


@dataclass(frozen=True)
class Stand:
    """The gateway under test, and every upstream behind it (whose CPU is not "others")."""

    gateway: GatewayProcess
    server: Server
    upstream_pids: list[int]


def start_stand(stack: contextlib.ExitStack, work: Path) -> Stand:
    fast = [servers.start_upstream(stack, chunks=1) for _ in range(3)]
    flaky = start_flaky(stack)
    catalog = write_bench_catalog(work / "catalog.yaml", [u.port for u in fast], flaky.port)
    gateway = GatewayProcess(
        work / "modelyard",
        env={"ROUTING_KEY": UPSTREAM_KEY, "MODELYARD_LOG_LEVEL": "warning"},
        args=("--catalog", str(catalog), "--workers", "1"),
    )
    stack.callback(gateway.stop)
    gateway.start()
    assert gateway.process is not None
    key = servers.project_key(gateway, limited=True)
    server = Server(
        "modelyard", gateway.port, gateway.process.pid, {"authorization": f"Bearer {key}"}
    )
    return Stand(gateway, server, [u.pid for u in (*fast, flaky)])


# -- measuring ------------------------------------------------------------------------------------


def run_load(
    stand: Stand, side: str, model: str, concurrency: int, repeat: int, **limits: Any
) -> Measurement:
    """One closed-loop run naming `model`; `limits`: `seconds`, and `max_requests` or not."""
    server = stand.server
    body = orjson.loads(request_body(stream=False)) | {"model": model}
    spec = load_spec(server, "plain", concurrency, limits.pop("seconds"), **limits)
    spec = replace(spec, plain_body=orjson.dumps(body).decode())
    run = LoadRun(spec, [server.pid, *stand.upstream_pids])
    # The load generator reports no TTFT for non-streamed requests: its `ttft_ms` is None.
    return run.measurement(side, f"plain c={concurrency}", repeat, server.pid, stand.upstream_pids)


def progress(m: Measurement, note: str = "") -> None:
    print(
        f"  [{m.repeat + 1}] {m.cell:10s} {m.server:14s} {m.rps:7,.0f}/s  "
        f"p50 {m.latency_ms['p50']:6.2f} p99 {m.latency_ms['p99']:6.2f} ms  "
        f"CPU {m.server_cpu_ms * 1000:4.0f} µs/req  errors {m.errors}  "
        f"generator {m.generator_cores:.2f}, others {m.others_cores:.2f} core{note}",
        flush=True,
    )


class Patience:
    """Time-bounded runs during which other processes used more than `NOISY_CORES` are run
    again (twice at most, within `seconds` in all); the quietest run is kept."""

    def __init__(self, seconds: float) -> None:
        self.left = seconds
        self.redone = 0

    def quietest(self, measure: Callable[[], Measurement]) -> Measurement:
        kept = measure()
        for _ in range(2):
            if kept.others_cores <= NOISY_CORES or self.left <= 0:
                break
            progress(kept, "  (noisy: again)")
            started = time.monotonic()
            again = measure()
            self.left -= time.monotonic() - started
            self.redone += 1
            kept = again if again.others_cores < kept.others_cores else kept
        progress(kept)
        return kept


def routing_cost(stand: Stand, repeats: int, seconds: float, patience: Patience) -> Results:
    print(f"Routing cost: {repeats} repeat(s) x {seconds:g} s per cell", flush=True)
    for model in SIDES.values():  # unmeasured: connections, caches, latency averages
        run_load(stand, "warm-up", model, 16, 0, seconds=1.0)
    names = list(SIDES)
    measurements = []
    for repeat in range(repeats):
        for concurrency in (1, 16):
            shift = repeat % len(names)
            for side in names[shift:] + names[:shift]:
                measurements.append(
                    patience.quietest(
                        partial(
                            run_load, stand, side, SIDES[side], concurrency, repeat, seconds=seconds
                        )
                    )
                )
    return Results(measurements)


def resilience(
    stand: Stand, rounds: int, per_round: int, seconds: float, patience: Patience
) -> Results:
    print(
        f"Resilience: {rounds} round(s); each {per_round:,} requests per route at c=16, "
        f"then {seconds:g} s per route at c=1",
        flush=True,
    )
    measurements = []
    for round_ in range(rounds):
        for concurrency, routes in ((16, ROUNDS_C16), (1, ROUNDS_C1)):
            shift = round_ % len(routes)
            for route in routes[shift:] + routes[:shift]:
                if concurrency == 16:  # counted, so never run again
                    m = run_load(
                        stand, route, route, 16, round_, seconds=600, max_requests=per_round
                    )
                    progress(m)
                else:
                    m = patience.quietest(
                        partial(run_load, stand, route, route, 1, round_, seconds=seconds)
                    )
                measurements.append(m)
            if round_ == 0 and concurrency == 16:
                print(f"  breakers after round 1 at c=16: {breakers(stand.gateway)}", flush=True)
    return Results(measurements)


def breakers(gateway: GatewayProcess) -> str:
    listed = gateway.admin("GET", "/admin/deployments").json()["data"]
    shown = []
    for entry in listed:
        if entry["id"] in ("refusing", "flaky", "healthy"):
            b = entry["breaker"]
            retry = f", probe in {b['retry_in_s']:.1f} s" if b["retry_in_s"] else ""
            shown.append(
                f"{entry['id']} {b['state']} ({b['recent_failures']}/{b['recent_attempts']} "
                f"recent failed{retry})"
            )
    return "; ".join(shown)


def ledger_paths(database: Path, expected: int, timeout_s: float = 30.0) -> Counter[str]:
    """What each request to `resilient` tried, as its usage record keeps it, once the ledger
    holds `expected` of them (or after `timeout_s`)."""
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
            rows = db.execute(
                "SELECT attempts FROM usage_records WHERE route = ?", (RESILIENT,)
            ).fetchall()
        if len(rows) >= expected or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    return Counter(
        " -> ".join(f"{a['deployment']} {a['outcome']}" for a in json.loads(row[0])) for row in rows
    )


# -- the report -----------------------------------------------------------------------------------


def scaled(value: Spread | None, factor: float) -> Spread | None:
    if value is None:
        return None
    return Spread(value.median * factor, value.low * factor, value.high * factor)


def shown(value: Spread | None, digits: int = 2) -> str:
    return "-" if value is None else value.show(digits)


def server_cpu(m: Measurement) -> float:
    return m.server_cpu_ms


def cost_report(results: Results) -> list[Verdict]:
    rows, verdicts = [], []
    for concurrency in (1, 16):
        cell = f"plain c={concurrency}"
        for side in SIDES:
            s = results.summary(side, cell)
            assert s is not None
            added = scaled(results.difference(side, "direct", cell, server_cpu), 1000)
            ratio = results.ratio(side, "direct", cell, throughput)
            routed = side != "direct"
            rows.append(
                [
                    side, str(concurrency), shown(s.rps, 0), shown(s.p50), shown(s.p99),
                    shown(scaled(s.server_cpu_ms, 1000), 0),
                    shown(added, 1) if routed else "-", shown(ratio, 3) if routed else "-",
                    str(s.errors), f"{s.others_cores_max:.2f}",
                ]
            )  # fmt: skip
            if side == "priority":
                verdicts += [
                    judge(
                        f"priority route adds <= 20 µs CPU/request, c={concurrency}",
                        added, at_most(added, 20.0), " µs",
                    ),
                    judge(
                        f"priority route keeps >= 95% of direct req/s, c={concurrency}",
                        scaled(ratio, 100), at_least(ratio, 0.95), "%",
                    ),
                ]  # fmt: skip
    header = ["side", "c", "req/s", "p50 ms", "p99 ms", "gateway CPU µs/req"]
    header += ["added CPU µs/req", "req/s ÷ direct", "errors", "others max (cores)"]
    print("\n## Routing cost (median [min..max] over repeats; added and ÷ paired per repeat)\n")
    print(table(header, rows))
    return verdicts


def resilience_report(results: Results, paths: Counter[str], breaker_line: str) -> list[Verdict]:
    rows = []
    for concurrency, routes in ((16, ROUNDS_C16), (1, ROUNDS_C1)):
        cell = f"plain c={concurrency}"
        for route in routes:
            s = results.summary(route, cell)
            assert s is not None
            control = CONTROLS.get(route)
            added = results.difference(route, control, cell, latency("p50")) if control else None
            requests = sum(m.requests for m in results.of(route, cell))
            rows.append(
                [
                    route, str(concurrency), f"{requests:,}",
                    shown(s.rps, 0), shown(s.p50), shown(s.p90), shown(s.p99),
                    f"{shown(added)} (vs {control})" if control else "-", str(s.errors),
                ]
            )  # fmt: skip
    print("\n## Resilience (median [min..max] over rounds; added p50 paired per round)\n")
    header = ["route", "c", "requests", "req/s", "p50 ms", "p90 ms", "p99 ms", "added p50 ms"]
    print(table([*header, "errors"], rows))
    runs = results.of(RESILIENT, "plain c=16")
    requests = sum(m.requests for m in runs)
    failed = sum(m.errors for m in runs)
    success = 100 * (requests - failed) / max(requests, 1)
    print(
        f"\n{RESILIENT} at c=16: {requests:,} requests, {failed} failed: {success:.3f}% succeeded"
    )
    for sample in sorted({s for m in runs for s in m.error_samples})[:3]:
        print(f"  {sample}")
    total = sum(paths.values())
    by_count: Counter[int] = Counter()
    for path, count in paths.items():
        by_count[path.count(" -> ") + 1] += count
    shares = ", ".join(
        f"{n}: {c:,} ({100 * c / max(total, 1):.2f}%)" for n, c in sorted(by_count.items())
    )
    print(f"Attempts per request to {RESILIENT}, from the usage ledger (every request sent to it):")
    print(f"  {shares}")
    for path, count in paths.most_common():
        print(f"  {count:>7,}  {path}")
    print(f"Breakers at the end: {breaker_line}")
    rate = Spread.of([success])
    verdicts = [judge("resilient route, c=16: >= 99.9% succeed", rate, at_least(rate, 99.9), "%")]
    for concurrency in (16, 1):
        added = results.difference(RESILIENT, HEALTHY, f"plain c={concurrency}", latency("p50"))
        verdicts.append(
            judge(
                f"resilient route, c={concurrency}: added p50 vs a healthy route <= 1 ms",
                added, at_most(added, 1.0), " ms",
            )
        )  # fmt: skip
    return verdicts


def load_line(label: str, others: list[float]) -> str:
    one, five, _ = os.getloadavg()
    busy = f"; other processes used at most {max(others):.2f} core in a run" if others else ""
    return f"{label}: loadavg {one:.2f} (1 min) {five:.2f} (5 min){busy}"


def quietness(patience: Patience, others: list[float]) -> str:
    """How quiet the machine was: runs redone, kept runs that were noisy, the load after."""
    noisy = sum(1 for o in others if o > NOISY_CORES)
    return (
        f"{patience.redone} noisy run(s) run again; {noisy} of {len(others)} kept runs had "
        f"other processes above {NOISY_CORES} core.\n{load_line('After', others)}"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.flaky_upstream:
        with contextlib.suppress(KeyboardInterrupt):
            fastloop.run(serve_flaky())
        return 0
    print(load_line(f"{os.cpu_count()} cores; before", []), flush=True)
    work = Path(tempfile.mkdtemp(prefix="modelyard-routing-"))
    with contextlib.ExitStack() as stack:
        stand = start_stand(stack, work)
        patience = Patience(args.patience)
        cost = routing_cost(stand, args.repeats, args.seconds, patience)
        resilient = resilience(stand, args.rounds, args.round_requests, args.seconds, patience)
        breaker_line = breakers(stand.gateway)
        # Each load run first sends one unmeasured request per connection.
        expected = sum(
            m.requests + int(m.cell.split("=")[1]) for m in resilient.of(RESILIENT, "plain c=16")
        )
        expected += sum(m.requests + 1 for m in resilient.of(RESILIENT, "plain c=1"))
        paths = ledger_paths(stand.gateway.data_dir / "modelyard.db", expected)
    shutil.rmtree(work, ignore_errors=True)
    others = [m.others_cores for r in (cost, resilient) for m in r.measurements]
    verdicts = cost_report(cost) + resilience_report(resilient, paths, breaker_line)
    print("\n## Targets\n")
    print(show(verdicts))
    print()
    print(quietness(patience, others))
    return 0


if __name__ == "__main__":
    sys.exit(main())
