"""Fixtures for the counter-store tests: real redis-server processes, and each store behind a
clock the test can move.

`counters` runs a test on both stores. The memory store reads a fake clock that `advance` moves
at once; the Redis store reads Redis `TIME`, so `advance` really sleeps (keep windows short).
Each Redis store gets its own key prefix on one shared server; the fail-closed tests start a
server of their own, to stop it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from uuid import uuid4

import pytest
import redis
from tests.support.ports import free_port

from modelyard.limits.memory_store import MemoryCounterStore
from modelyard.limits.redis_store import RedisCounterStore
from modelyard.limits.store import CounterStore


def redis_binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        message = "redis-server is not installed (apt-get install -y redis-server)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return binary


class RedisServer:
    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._directory = directory
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        self._process = subprocess.Popen(
            [
                redis_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self._directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.02)
        client.close()
        return self

    def pause(self) -> None:
        """Keep the socket open but answer nothing, as a hung server does."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        self._process.send_signal(signal.SIGCONT)
        self._process.kill()
        self._process.wait(timeout=10)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture()
def own_redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()


class FakeClock:
    """Seconds since the epoch for the store; kept in whole microseconds, as the store counts."""

    def __init__(self, us: int = 1_800_000_000_000_000) -> None:
        self.us = us

    def __call__(self) -> float:
        return self.us / 1_000_000

    async def advance(self, seconds: float) -> None:
        self.us += round(seconds * 1_000_000)


@dataclass
class Counters:
    kind: str
    store: CounterStore
    # Lets the store's clock move on by that many seconds.
    advance: Callable[[float], Awaitable[None]]
    # Another store over the same counters, as a restarted replica would open.
    reopen: Callable[[], CounterStore]


@pytest.fixture(params=["memory", "redis"])
async def counters(request: pytest.FixtureRequest, anyio_backend: str) -> AsyncIterator[Counters]:
    opened: list[CounterStore] = []

    def opening(store: CounterStore) -> CounterStore:
        opened.append(store)
        return store

    if request.param == "memory":
        clock = FakeClock()
        memory = MemoryCounterStore(clock)
        yield Counters("memory", memory, clock.advance, lambda: memory)
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        prefix = f"test:{uuid4().hex}:"

        def reopen() -> CounterStore:
            return opening(RedisCounterStore(server.url, prefix=prefix))

        yield Counters("redis", reopen(), asyncio.sleep, reopen)
    for store in opened:
        await store.aclose()
