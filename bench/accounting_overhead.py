"""What the usage ledger, budgets and rate limits cost on the hot path: gateway throughput with
accounting on versus off, side by side in one run.

Owns one benchmark. A fake OpenAI-compatible upstream runs in its own process; two gateways
stand in front of it, identical but for `MODELYARD_ACCOUNTING`. On the "on" gateway the key used
has a day, month and total budget, requests- and tokens-per-minute limits and a concurrency cap
on itself and its project (all far above what the run uses), so every request reserves, admits,
enters, records, settles and leaves. Load: `--concurrency` clients issuing non-streamed chat
completions for `--seconds`, alternating off, on, off, on ... `--rounds` times; medians and
spread per side, and the on/off ratio. Target (issue 6): at most 10% fewer requests/s with
accounting on.

Run: `.venv/bin/python bench/accounting_overhead.py [--seconds 5] [--rounds 3] [--concurrency 16]`
Optional: `--redis-url redis://127.0.0.1:6379/0` puts the counters of the "on" gateway in Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.remote.fixtures import remote_catalog
from tests.support.gateway import GatewayProcess

UPSTREAM = (
    "import time; from modelyard.testing.fake_upstream import FakeUpstream\n"
    "with FakeUpstream().running() as f:\n"
    "    print(f.base_url, flush=True)\n"
    "    time.sleep(10**6)\n"
)
BODY = {"model": "acme-small", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8}
TARGET = 0.90


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its threads, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def load(
    url: str, key: str, seconds: float, concurrency: int
) -> tuple[float, float, int, int]:
    """(requests/s, p50 latency ms, errors, requests) for `seconds` of closed-loop load."""
    latencies: list[float] = []
    errors = 0
    stop = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:

        async def worker() -> None:
            nonlocal errors
            headers = {"Authorization": f"Bearer {key}"}
            while time.monotonic() < stop:
                started = time.perf_counter()
                response = await client.post("/v1/chat/completions", json=BODY, headers=headers)
                latencies.append(time.perf_counter() - started)
                errors += response.status_code != 200

        began = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.monotonic() - began
    return len(latencies) / elapsed, statistics.median(latencies) * 1000, errors, len(latencies)


def project_key(gateway: GatewayProcess, limited: bool) -> str:
    admin = {"Authorization": f"Bearer {gateway.admin_key}"}
    url = gateway.base_url
    httpx.post(f"{url}/admin/projects", json={"id": "bench"}, headers=admin).raise_for_status()
    created = httpx.post(f"{url}/admin/projects/bench/keys", json={"name": "b"}, headers=admin)
    created.raise_for_status()
    key, key_id = created.json()["key"], created.json()["id"]
    if limited:
        limits = {
            "budgets_usd": {"day": "100000", "month": "1000000", "total": "10000000"},
            "requests_per_minute": 10_000_000,
            "tokens_per_minute": 1_000_000_000,
            "max_concurrent": 10_000,
        }
        project_limits = {k: v for k, v in limits.items() if k != "max_concurrent"}
        httpx.put(
            f"{url}/admin/projects/bench/limits", json=project_limits, headers=admin
        ).raise_for_status()
        httpx.put(
            f"{url}/admin/projects/bench/keys/{key_id}/limits", json=limits, headers=admin
        ).raise_for_status()
    return str(key)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--redis-url")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="modelyard-bench-"))
    upstream = subprocess.Popen([sys.executable, "-c", UPSTREAM], stdout=subprocess.PIPE, text=True)
    assert upstream.stdout is not None
    upstream_url = upstream.stdout.readline().strip()
    catalog = remote_catalog(work / "catalog.yaml", upstream_url)
    common = {"ACME_KEY": "sk-bench", "MODELYARD_LOG_LEVEL": "warning"}
    on_env = {**common, **({"MODELYARD_REDIS_URL": args.redis_url} if args.redis_url else {})}
    sides = {
        "off": GatewayProcess(
            work / "off",
            env={**common, "MODELYARD_ACCOUNTING": "false"},
            args=("--catalog", str(catalog)),
        ),
        "on": GatewayProcess(work / "on", env=on_env, args=("--catalog", str(catalog))),
    }
    try:
        keys = {}
        for name, gateway in sides.items():
            gateway.start()
            keys[name] = project_key(gateway, limited=name == "on")
            asyncio.run(load(gateway.base_url, keys[name], 1.0, args.concurrency))  # warm-up
        results: dict[str, list[tuple[float, float, int, int]]] = {"off": [], "on": []}
        cpu_ms: dict[str, list[float]] = {"off": [], "on": []}
        for _ in range(args.rounds):
            for name in ("off", "on"):
                process = sides[name].process
                assert process is not None
                before = cpu_seconds(process.pid)
                url = sides[name].base_url
                run = asyncio.run(load(url, keys[name], args.seconds, args.concurrency))
                cpu_ms[name].append((cpu_seconds(process.pid) - before) * 1000 / max(run[3], 1))
                results[name].append(run)
        counters = "redis" if args.redis_url else "in-process"
        print(
            f"concurrency {args.concurrency}, {args.seconds:.0f} s x {args.rounds} rounds per "
            f"side, counters: {counters}"
        )
        medians = {}
        for name, runs in results.items():
            rates = [r[0] for r in runs]
            medians[name] = statistics.median(rates)
            p50 = statistics.median(r[1] for r in runs)
            errors = sum(r[2] for r in runs)
            cpu = statistics.median(cpu_ms[name])
            print(
                f"  accounting {name:3s}: {medians[name]:7.1f} req/s "
                f"[{min(rates):.1f}..{max(rates):.1f}]  p50 {p50:5.1f} ms  "
                f"gateway CPU {cpu:.2f} ms/request  errors {errors}"
            )
        ratio = medians["on"] / medians["off"]
        verdict = "MET" if ratio >= TARGET else "NOT MET"
        print(f"on/off throughput: {ratio:.3f} (target >= {TARGET:.2f}): {verdict}")
    finally:
        for gateway in sides.values():
            gateway.stop()
        upstream.terminate()


if __name__ == "__main__":
    main()
