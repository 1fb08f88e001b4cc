"""What the usage ledger, budgets and rate limits cost on the hot path: gateway throughput with
accounting on versus off, side by side in one run.

Owns one benchmark, built from `bench/overhead`'s parts: its fast fake upstream, its gateway
start-up (`servers.start_modelyard`) and its raw-asyncio load generator (in a process of its own;
an httpx client topped out near the gateway's own rate). Two gateways stand in front of the
upstream, identical but for `MODELYARD_ACCOUNTING`; on the "on" one the key has every limit on
(`servers.project_key(limited=True)`). Load: `--concurrency` clients issuing non-streamed chat
completions for `--seconds`, alternating off, on, off, on ... `--rounds` times; medians and
spread per side, gateway CPU per request, and the on/off ratio. Target (issue 6): at most 10%
fewer requests/s with accounting on.

With `--redis-url`, a third gateway keeps its counters in that Redis (`redis`), measured in the
same rounds, and the run also gives redis/on, the throughput of shared counters against
in-process ones. Target (issue 19): at least 0.8.

Run: `.venv/bin/python -m bench.accounting_overhead [--seconds 5] [--rounds 3] [--concurrency 16]
[--redis-url redis://127.0.0.1:6379/0]`
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
from pathlib import Path

from bench.overhead import servers
from bench.overhead.cells import LoadRun, load_spec
from bench.overhead.procstat import cpu_seconds

TARGET = 0.90
REDIS_TARGET = 0.80


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--redis-url")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="modelyard-bench-"))
    with contextlib.ExitStack() as stack:
        upstream = servers.start_upstream(stack, chunks=10)
        sides = {
            "off": servers.start_modelyard(stack, upstream, work / "off", accounting=False),
            "on": servers.start_modelyard(stack, upstream, work / "on"),
        }
        if args.redis_url:
            redis = {"MODELYARD_REDIS_URL": args.redis_url}
            sides["redis"] = servers.start_modelyard(stack, upstream, work / "redis", env=redis)
        for side in sides.values():
            LoadRun(load_spec(side, "plain", args.concurrency, 1.0), []).result()  # warm-up
        rates: dict[str, list[float]] = {name: [] for name in sides}
        p50s: dict[str, list[float]] = {name: [] for name in sides}
        cpu_ms: dict[str, list[float]] = {name: [] for name in sides}
        errors = dict.fromkeys(sides, 0)
        for _ in range(args.rounds):
            for name, side in sides.items():
                before = cpu_seconds(side.pid)
                run = LoadRun(load_spec(side, "plain", args.concurrency, args.seconds), []).result()
                spent = cpu_seconds(side.pid) - before
                rates[name].append(run["rps"])
                p50s[name].append(run["latency_ms"]["p50"])
                cpu_ms[name].append(spent * 1000 / max(run["requests"], 1))
                errors[name] += run["errors"]
    print(f"concurrency {args.concurrency}, {args.seconds:.0f} s x {args.rounds} rounds per side")
    medians = {}
    for name in rates:
        medians[name] = statistics.median(rates[name])
        print(
            f"  accounting {name:5s}: {medians[name]:7.1f} req/s "
            f"[{min(rates[name]):.1f}..{max(rates[name]):.1f}]  "
            f"p50 {statistics.median(p50s[name]):5.2f} ms  "
            f"gateway CPU {statistics.median(cpu_ms[name]):.3f} ms/request  errors {errors[name]}"
        )
    ratio = medians["on"] / medians["off"]
    verdict = "MET" if ratio >= TARGET else "NOT MET"
    print(f"on/off throughput: {ratio:.3f} (target >= {TARGET:.2f}): {verdict}")
    if "redis" in medians:
        shared = medians["redis"] / medians["on"]
        verdict = "MET" if shared >= REDIS_TARGET else "NOT MET"
        print(
            f"redis/in-process counters throughput: {shared:.3f} "
            f"(target >= {REDIS_TARGET:.2f}): {verdict}"
        )


if __name__ == "__main__":
    main()
