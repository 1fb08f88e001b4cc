"""Upstream HTTP client candidates, side by side: the gateway's own pooled HTTP/1.1 client
(`modelyard.providers.http_client`), httpx (what the gateway used before), and aiohttp when it is
installed (it is not a dependency: `pip install aiohttp` to include it).

Owns one benchmark. The fast fake upstream of `bench/overhead` runs in its own process; this
process POSTs the same chat body to it with each client on uvloop, non-streamed and as
100-chunk streams, at concurrency 1 and 16, in alternating rounds. It prints requests/s and
this process's CPU microseconds per request (the client's cost, which is what the gateway
pays), median of the rounds, and each candidate's CPU ratio to the gateway's own client.

Run: `.venv/bin/python -m bench.upstream_clients [--seconds 2] [--rounds 3]`
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
from bench.overhead import fastloop
from bench.overhead.payloads import request_body

from modelyard.providers.http_client import ConnectionPool

ROOT = Path(__file__).resolve().parents[1]
HEADERS = {"content-type": "application/json", "authorization": "Bearer sk-bench"}

Call = Callable[[bool], Awaitable[int]]  # stream? -> bytes received


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Gateway:
    def __init__(self, url: str) -> None:
        self.url = url
        self.pool = ConnectionPool()

    async def __call__(self, stream: bool) -> int:
        response = await self.pool.post(
            self.url, HEADERS, request_body(stream), connect_timeout_s=5, read_timeout_s=30
        )
        loop = asyncio.get_running_loop()
        received = 0
        try:
            while (chunk := await response.next_chunk(loop.time() + 30)) is not None:
                received += len(chunk)
        finally:
            response.close()
        return received

    async def aclose(self) -> None:
        await self.pool.aclose()


class Httpx:
    def __init__(self, url: str) -> None:
        self.url = url
        limits = httpx.Limits(max_connections=512, max_keepalive_connections=128)
        self.client = httpx.AsyncClient(limits=limits, trust_env=False)

    async def __call__(self, stream: bool) -> int:
        received = 0
        async with self.client.stream(
            "POST", self.url, content=request_body(stream), headers=HEADERS
        ) as response:
            async for chunk in response.aiter_raw():
                received += len(chunk)
        return received

    async def aclose(self) -> None:
        await self.client.aclose()


class Aiohttp:
    def __init__(self, url: str) -> None:
        import aiohttp

        self.url = url
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=512), auto_decompress=False
        )

    async def __call__(self, stream: bool) -> int:
        received = 0
        async with self.session.post(self.url, data=request_body(stream), headers=HEADERS) as r:
            async for chunk in r.content.iter_any():
                received += len(chunk)
        return received

    async def aclose(self) -> None:
        await self.session.close()


CANDIDATES: dict[str, type[Gateway] | type[Httpx] | type[Aiohttp]] = {
    "modelyard http_client": Gateway,
    "httpx": Httpx,
}
if importlib.util.find_spec("aiohttp") is not None:
    CANDIDATES["aiohttp"] = Aiohttp


async def measure(
    call: Call, stream: bool, concurrency: int, seconds: float
) -> tuple[float, float]:
    """(requests/s, CPU µs per request) of `concurrency` loops calling for `seconds`."""
    for _ in range(20):
        await call(stream)  # connections opened and warm
    done = 0
    stop_at = time.monotonic() + seconds

    async def loop() -> None:
        nonlocal done
        while time.monotonic() < stop_at:
            if await call(stream) <= 0:
                raise RuntimeError("empty answer")
            done += 1

    cpu, wall = cpu_seconds(), time.monotonic()
    await asyncio.gather(*(loop() for _ in range(concurrency)))
    cpu, wall = cpu_seconds() - cpu, time.monotonic() - wall
    return done / wall, cpu / done * 1e6


async def run(url: str, seconds: float, rounds: int) -> None:
    clients = {name: kind(url) for name, kind in CANDIDATES.items()}
    try:
        for stream in (False, True):
            for concurrency in (1, 16):
                samples: dict[str, list[tuple[float, float]]] = {name: [] for name in clients}
                for _ in range(rounds):
                    for name, client in clients.items():
                        samples[name].append(await measure(client, stream, concurrency, seconds))
                report(stream, concurrency, samples)
    finally:
        for client in clients.values():
            await client.aclose()


def report(stream: bool, concurrency: int, samples: dict[str, list[tuple[float, float]]]) -> None:
    kind = "100-chunk streams" if stream else "non-streamed"
    print(f"\n{kind}, c={concurrency}")
    base = statistics.median(cpu for _, cpu in samples["modelyard http_client"])
    for name, rows in samples.items():
        rps = statistics.median(r for r, _ in rows)
        cpu = statistics.median(c for _, c in rows)
        spread = max(c for _, c in rows) - min(c for _, c in rows)
        print(
            f"  {name:16} {rps:9.0f} req/s  {cpu:8.1f} µs CPU/req (±{spread / 2:.1f})"
            f"  {cpu / base:5.2f}x the gateway client's CPU"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    command = [sys.executable, "-m", "bench.overhead.upstream", "--chunks", "100"]
    upstream = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert upstream.stdout is not None
        port = int(upstream.stdout.readline())
        print(f"candidates: {', '.join(CANDIDATES)}; event loop: {fastloop.name()}")
        fastloop.run(run(f"http://127.0.0.1:{port}/v1/chat/completions", args.seconds, args.rounds))
    finally:
        upstream.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            upstream.wait(10)


if __name__ == "__main__":
    main()
