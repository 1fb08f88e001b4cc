"""Two replicas, each a process with its own RedisCounterStore, race for one budget."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from uuid import uuid4

import pytest
from tests.limits.conftest import RedisServer

from modelyard.limits.redis_store import RedisCounterStore
from modelyard.limits.values import BudgetState

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]


async def test_two_replicas_never_overspend_a_shared_budget(redis_server: RedisServer) -> None:
    prefix = f"test:{uuid4().hex}:"
    worst, limit = 10_000, 50 * 10_000
    start_at = time.time() + 2.0
    replicas = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.limits.race_worker",
            f"--url={redis_server.url}",
            f"--prefix={prefix}",
            f"--name=replica-{name}",
            f"--start-at={start_at}",
            "--count=100",
            f"--worst={worst}",
            f"--limit={limit}",
            cwd=ROOT,
            stdout=subprocess.PIPE,
        )
        for name in "ab"
    ]
    admitted: dict[str, int] = {}
    for replica in replicas:
        async with asyncio.timeout(30):
            out, _ = await replica.communicate()
        assert replica.returncode == 0
        admitted.update(json.loads(out))
    assert {request_id.split("-")[1] for request_id in admitted} == {"a", "b"}

    store = RedisCounterStore(redis_server.url, prefix=prefix)
    try:
        state = await store.budget_state("shared")
        assert state == BudgetState(sum(admitted.values()), 0)
        assert state.spent_micros <= limit
        assert await store.open_reservations() == []
    finally:
        await store.aclose()
    # Costs are 98-100% of the worst case: a serial ledger would admit exactly 50.
    assert 48 <= len(admitted) <= 52
