"""Run the overhead benchmark: `python -m bench.overhead [--quick] [--out DIR] [--no-litellm]
[--no-portkey]`, or the soak: `python -m bench.overhead --soak [N] [--soak-seconds S]`.

Owns the order of a run: start the fake upstream, pick the faster load-generator client against
it, start the bare app, Modelyard and the peers that install and start (LiteLLM's proxy,
Portkey's gateway), read their idle RSS, warm each up, then measure every cell repeat by repeat,
each repeat running every server back to back in the same cell so that comparisons are made
between neighbours. A peer that cannot be installed, started or warmed up is left out with the
reason in the report. Exits non-zero only when the benchmark could not run, never for a missed
target.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.overhead import fastloop, litellm_venv, portkey_gateway, report, servers
from bench.overhead.aggregate import Results
from bench.overhead.cells import CELLS, LoadRun, Measurement, load_spec, measure
from bench.overhead.payloads import DEFAULT_CHUNKS
from bench.overhead.procstat import tree_rss_bytes
from bench.overhead.servers import LABELS, Server
from bench.overhead.soak import MIB, soak
from bench.overhead.targets import show, soak_verdict, verdicts

DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.overhead", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1 repeat x 2 s per cell")
    parser.add_argument("--repeats", type=int, help="repeats per cell (default 3)")
    parser.add_argument("--seconds", type=float, help="seconds per cell (default 5)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--chunks", type=int, default=DEFAULT_CHUNKS, help="content chunks/stream")
    parser.add_argument("--no-litellm", action="store_true", help="skip LiteLLM's proxy")
    parser.add_argument("--no-portkey", action="store_true", help="skip Portkey's gateway")
    parser.add_argument(
        "--soak", type=int, nargs="?", const=100_000, help="soak Modelyard with N requests instead"
    )
    parser.add_argument("--soak-seconds", type=float, default=900.0)
    parser.add_argument("--soak-concurrency", type=int, default=16)
    args = parser.parse_args(argv)
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.seconds = args.seconds or (2.0 if args.quick else 5.0)
    return args


def calibrate(upstream: Server, seconds: float, chunks: int) -> dict[str, float]:
    """Requests/s of each client kind against the bare upstream, plain, c=16."""
    rates = {}
    for client in ("raw", "httpx"):
        spec = load_spec(upstream, "plain", 16, seconds, client=client, chunks=chunks)
        rates[client] = LoadRun(spec, []).result()["rps"]
    return rates


def warm_up(server: Server, seconds: float, client: str, chunks: int) -> str | None:
    """Unmeasured load; returns why the server cannot be measured, if it answered only errors."""
    for kind, concurrency in (("plain", 16), ("stream", 1)):
        spec = load_spec(server, kind, concurrency, seconds, client=client, chunks=chunks)
        result = LoadRun(spec, []).result()
        if result["errors"] and result["errors"] >= result["requests"]:
            return f"every warm-up request failed: {result['error_samples'][:1]}"
    return None


def rss_mib(server: Server) -> float:
    return tree_rss_bytes(server.pid) / MIB


def start_litellm(
    stack: contextlib.ExitStack, upstream: Server, work: Path
) -> tuple[Server | None, str]:
    try:
        executable = litellm_venv.ensure_installed()
        server = servers.start_litellm(stack, executable, upstream, work)
    except (litellm_venv.LiteLLMUnavailable, RuntimeError, OSError) as exc:
        return None, f"unavailable ({exc})"
    return server, f"ran (litellm {litellm_venv.version()}, 1 worker, master key, no database)"


def start_portkey(
    stack: contextlib.ExitStack, upstream: Server, work: Path
) -> tuple[Server | None, str]:
    try:
        entry = portkey_gateway.ensure_installed()
        server = servers.start_portkey(stack, entry, upstream, work)
    except (portkey_gateway.PortkeyUnavailable, RuntimeError, OSError) as exc:
        return None, f"unavailable ({exc})"
    return server, (
        f"ran (@portkey-ai/gateway {portkey_gateway.version()}, one process, "
        "provider openai with a custom host)"
    )


def run_cells(args: argparse.Namespace, stack: contextlib.ExitStack, work: Path) -> int:
    started = datetime.datetime.now().isoformat(timespec="seconds")
    upstream = servers.start_upstream(stack, args.chunks)
    calibration = calibrate(upstream, 1.0 if args.quick else 2.0, args.chunks)
    client = max(calibration, key=lambda name: calibration[name])
    print(f"generator calibration (plain c=16 on the bare upstream): {calibration}", flush=True)
    measured = [
        upstream,
        servers.start_bare(stack, args.chunks, work),
        servers.start_modelyard(stack, upstream, work),
    ]
    peers = {"litellm": "skipped (--no-litellm)", "portkey": "skipped (--no-portkey)"}
    for name, skip, start in (
        ("litellm", args.no_litellm, start_litellm),
        ("portkey", args.no_portkey, start_portkey),
    ):
        if skip:
            continue
        peer, peers[name] = start(stack, upstream, work)
        if peer is not None:
            measured.append(peer)
    print(f"LiteLLM: {peers['litellm']}\nPortkey: {peers['portkey']}", flush=True)
    time.sleep(1.0)
    info = {s.name: report.ServerInfo(s.name, rss_mib(s)) for s in measured}
    for server in list(measured):
        problem = warm_up(server, 0.5 if args.quick else 2.0, client, args.chunks)
        if problem is None:
            continue
        if server.name not in peers:
            print(f"{server.label} cannot be measured: {problem}", file=sys.stderr)
            return 1
        peers[server.name] = f"unavailable ({problem})"
        print(f"{server.label}: {peers[server.name]}", flush=True)
        measured.remove(server)
        info.pop(server.name)
    measurements: list[Measurement] = []
    for repeat in range(args.repeats):
        for cell in CELLS:
            for server in measured:
                m = measure(server, upstream, cell, args.seconds, repeat, client, args.chunks)
                measurements.append(m)
                print(progress_line(m), flush=True)
    for server in measured:
        info[server.name].rss_after_mib = rss_mib(server)
    info["modelyard"].note = "idle: started, key created, no request served yet"
    results = Results(measurements)
    record = report.RunRecord(
        settings={
            "repeats": args.repeats,
            "seconds": args.seconds,
            "chunks": args.chunks,
            "cores": os.cpu_count(),
            "started": started,
            "quick": args.quick,
        },
        generator={"client": client, "calibration": calibration, "loop": fastloop.name()},
        servers=info,
        peers=peers,
        results=results,
    )
    ran = {server.name for server in measured}
    record.verdicts = verdicts(results, info["modelyard"].rss_idle_mib, peers, ran, args.chunks)
    json_path, md_path = report.write(args.out, record)
    print()
    print(report.markdown(record))
    print(f"written: {json_path} and {md_path}")
    print("\nTargets (issues 7 and 19):")
    print(show(record.verdicts))
    return 0


def progress_line(m: Measurement) -> str:
    p50, p99 = m.latency_ms["p50"], m.latency_ms["p99"]
    ttft = f"  TTFT p50 {m.ttft_ms['p50']:6.2f}" if m.ttft_ms else ""
    return (
        f"[{m.repeat + 1}] {m.cell:12s} {LABELS[m.server]:18s} {m.rps:9,.0f}/s  "
        f"p50 {p50:6.2f} p99 {p99:6.2f} ms{ttft}  CPU {m.server_cpu_ms:.3f} ms/req  "
        f"errors {m.errors}  others {m.others_cores:.2f} core"
    )


def run_soak(args: argparse.Namespace, stack: contextlib.ExitStack, work: Path) -> int:
    upstream = servers.start_upstream(stack, args.chunks)
    modelyard = servers.start_modelyard(stack, upstream, work)
    outcome = soak(
        modelyard, upstream, args.soak, args.soak_seconds, args.soak_concurrency, args.chunks
    )
    verdict = soak_verdict(outcome["growth_percent"])
    text = report.soak_markdown(outcome) + "\n\n```\n" + show([verdict]) + "\n```\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "soak.json").write_text(json.dumps(outcome, indent=2))
    (args.out / "soak.md").write_text("# Soak (`python -m bench.overhead --soak`)\n\n" + text)
    print(text)
    print(f"written: {args.out / 'soak.json'} and {args.out / 'soak.md'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="modelyard-overhead-"))
    try:
        with contextlib.ExitStack() as stack:
            run = run_soak if args.soak is not None else run_cells
            code = run(args, stack, work)
    except BaseException:
        print(f"servers' data and logs kept in {work}", file=sys.stderr)
        raise
    if code == 0:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"servers' data and logs kept in {work}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
