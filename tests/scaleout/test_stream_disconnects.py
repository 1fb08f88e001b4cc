"""Acceptance: streams on the local engine (the bundled SmolLM2), 30% of whose clients leave
after a few chunks. Every request has exactly one usage record (found by the `x-request-id`
the client saw), the abandoned ones say `client_disconnected`, and the completion tokens the
ledger bills add up exactly to what the engine generated (its own token counter)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.scaleout.ledger_view import wait_for_rows
from tests.support.gateway import GatewayProcess

pytestmark = pytest.mark.model

STREAMS = 20
LEAVING = frozenset(range(2, STREAMS, 3))  # 6 of 20
CONCURRENCY = 4
CHUNKS_BEFORE_LEAVING = 3
DEPLOYMENT = {"deployment": "smollm2-local"}
STORY = [{"role": "user", "content": "Write a long story about a lighthouse keeper and a storm."}]


@dataclass(frozen=True)
class Stream:
    request_id: str
    left: bool
    content_chunks: int


@pytest.fixture(scope="module")
def local_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(tmp_path_factory.mktemp("local") / "data").start()
    yield gateway
    gateway.stop()


def generated_tokens(gateway: GatewayProcess) -> float:
    return gateway.metric("modelyard_local_completion_tokens_total", **DEPLOYMENT)


def wait_idle(gateway: GatewayProcess, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while gateway.metric("modelyard_local_busy", **DEPLOYMENT) or gateway.metric(
        "modelyard_local_queue_waiting", **DEPLOYMENT
    ):
        assert time.monotonic() < deadline, "the engine did not become idle"
        time.sleep(0.05)


async def stream_one(
    client: httpx.AsyncClient, gateway: GatewayProcess, index: int, slots: asyncio.Semaphore
) -> Stream:
    body = {
        "model": "smollm2",
        "messages": STORY,
        "max_tokens": 40,
        "temperature": 0.8,
        "seed": index,
        "stream": True,
    }
    leave = index in LEAVING
    chunks, finished = 0, False
    async with (
        slots,
        client.stream(
            "POST",
            f"{gateway.base_url}/v1/chat/completions",
            json=body,
            headers={"authorization": f"Bearer {gateway.admin_key}"},
        ) as response,
    ):
        assert response.status_code == 200, await response.aread()
        request_id = response.headers["x-request-id"]
        async for line in response.aiter_lines():
            if not line.startswith("data: {"):
                continue
            choices = json.loads(line.removeprefix("data: "))["choices"]
            if choices and choices[0]["delta"].get("content"):
                chunks += 1
            finished = finished or any(choice.get("finish_reason") for choice in choices)
            if leave and chunks >= CHUNKS_BEFORE_LEAVING:
                break  # leaving the block closes the connection mid-stream
    return Stream(request_id, leave and not finished, chunks)


async def run_streams(gateway: GatewayProcess) -> list[Stream]:
    slots = asyncio.Semaphore(CONCURRENCY)
    async with httpx.AsyncClient(timeout=120) as client:
        return await asyncio.gather(
            *(stream_one(client, gateway, index, slots) for index in range(STREAMS))
        )


def test_every_stream_is_billed_once_for_exactly_what_the_engine_generated(
    local_gateway: GatewayProcess,
) -> None:
    wait_idle(local_gateway)
    before = generated_tokens(local_gateway)
    streams = asyncio.run(run_streams(local_gateway))
    wait_idle(local_gateway)
    generated = generated_tokens(local_gateway) - before

    assert sum(s.left for s in streams) == len(LEAVING)
    database_url = f"sqlite:///{local_gateway.data_dir / 'modelyard.db'}"
    ids = [s.request_id for s in streams]
    rows = wait_for_rows(database_url, STREAMS, request_ids=ids)
    assert sorted(row["request_id"] for row in rows) == sorted(ids)
    by_id = {row["request_id"]: row for row in rows}
    for stream in streams:
        row = by_id[stream.request_id]
        if stream.left:
            assert (row["outcome"], row["client_disconnected"]) == ("client_disconnected", True)
        else:
            assert (row["outcome"], row["status"]) == ("completed", 200)
    billed = sum(row["completion_tokens"] for row in rows)
    print(
        f"\n[local engine] {STREAMS} streams, {len(LEAVING)} left early; billed {billed}"
        f" completion tokens, engine generated {generated:.0f}; left early:"
        f" {[by_id[s.request_id]['completion_tokens'] for s in streams if s.left]}"
    )
    assert billed == generated
