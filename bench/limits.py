"""Counter-store throughput: budget reserve+settle and rate-limit admission, memory and Redis.

Owns one benchmark. For each store it measures, on one client and on 16 concurrent tasks:

- **reserve+settle**: one reservation on three budgets (key day, project day, project month),
  then its settlement, as one request pays (two calls; the Redis store makes three round trips);
- **admit**: one admission on three windows (key RPM, key TPM, project RPM) with limits no run
  reaches, so every call logs its request in all three.

It prints operations per second, wall microseconds per operation, and CPU microseconds per
operation in this process and, for Redis, in redis-server (from `INFO cpu`). The Redis store
talks to a redis-server this script starts on a free loopback port (`--save ''`), or to
`--redis-url`; without redis-server installed it measures the memory store only. There are no
targets; the exit status is non-zero only when the benchmark could not run.

Run: `.venv/bin/python bench/limits.py [--ops 20000] [--redis-ops 5000] [--redis-url URL]`
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from uuid import uuid4

import redis

from modelyard.limits.memory_store import MemoryCounterStore
from modelyard.limits.redis_store import RedisCounterStore
from modelyard.limits.store import CounterStore
from modelyard.limits.values import BudgetLimit, RateWindow

BUDGETS = [
    BudgetLimit("budget:key:k1:day", 10**15),
    BudgetLimit("budget:project:p1:day", 10**15),
    BudgetLimit("budget:project:p1:month", 10**15),
]


def windows(tokens: int) -> list[RateWindow]:
    return [
        RateWindow("rpm:key:k1", 10**9, 1),
        RateWindow("tpm:key:k1", 10**12, tokens),
        RateWindow("rpm:project:p1", 10**9, 1),
    ]


@dataclass(frozen=True)
class Result:
    ops: int
    wall_s: float
    cpu_s: float
    server_cpu_s: float | None


async def measure(
    operation: Callable[[str], Awaitable[object]],
    ops: int,
    concurrency: int,
    server_cpu: Callable[[], float] | None,
) -> Result:
    run = uuid4().hex[:8]

    async def worker(first: int) -> None:
        for n in range(first, ops, concurrency):
            await operation(f"{run}-{n}")

    server_before = server_cpu() if server_cpu else 0.0
    cpu_before, wall_before = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    wall, cpu = time.perf_counter() - wall_before, time.process_time() - cpu_before
    server = server_cpu() - server_before if server_cpu else None
    return Result(ops, wall, cpu, server)


async def bench_store(
    name: str, store: CounterStore, ops: int, server_cpu: Callable[[], float] | None
) -> None:
    async def reserve_settle(request_id: str) -> None:
        await store.reserve(request_id, BUDGETS, 5_000, "bench")
        await store.settle(request_id, 4_321)

    async def admit(request_id: str) -> None:
        await store.admit(request_id, windows(800 + len(request_id) * 7))

    # A short warm-up loads the scripts and fills the connection pool.
    await measure(reserve_settle, 200, 16, None)
    for label, operation in (("reserve+settle", reserve_settle), ("admit", admit)):
        for concurrency in (1, 16):
            result = await measure(operation, ops, concurrency, server_cpu)
            server = (
                f"{result.server_cpu_s / ops * 1e6:8.1f}" if result.server_cpu_s is not None else ""
            )
            print(
                f"{name:<7}{label:<16}{concurrency:>3} {ops / result.wall_s:>10,.0f} "
                f"{result.wall_s / ops * 1e6:>9.1f} {result.cpu_s / ops * 1e6:>9.1f} {server:>9}"
            )
    await store.aclose()


def start_redis(directory: str) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise FileNotFoundError("redis-server")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=directory,
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    for _ in range(500):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.01)
    client.close()
    return process, url


def redis_cpu(url: str) -> Callable[[], float]:
    client = redis.Redis.from_url(url)

    def read() -> float:
        info = client.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    return read


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ops", type=int, default=20_000, help="operations per memory run")
    parser.add_argument("--redis-ops", type=int, default=5_000, help="operations per Redis run")
    parser.add_argument("--redis-url", help="an existing Redis to use (keys under a new prefix)")
    args = parser.parse_args()

    print(
        f"{'store':<7}{'operation':<16}{'tasks':>3} {'ops/s':>10} {'µs/op':>9} {'cpu µs':>9}",
        end="",
    )
    print(f" {'redis µs':>9}")
    await bench_store("memory", MemoryCounterStore(), args.ops, None)

    process = None
    url = args.redis_url
    with tempfile.TemporaryDirectory() as directory:
        if url is None:
            try:
                process, url = start_redis(directory)
            except FileNotFoundError:
                print("redis-server is not installed: the Redis store was not measured")
                return
        try:
            store = RedisCounterStore(url, prefix=f"bench:{uuid4().hex[:8]}:")
            await bench_store("redis", store, args.redis_ops, redis_cpu(url))
        finally:
            if process is not None:
                process.terminate()
                process.wait(timeout=10)


if __name__ == "__main__":
    asyncio.run(main())
