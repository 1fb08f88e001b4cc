"""Acceptance: faults under load on two replicas sharing PostgreSQL and Redis.

Database outage: 8 clients keep sending short requests to both replicas for 25 s while
PostgreSQL is stopped for 10 s in the middle. Requests during the outage succeed (their usage
records wait in the replicas' writers) or get a clean 503; none gets a 500 or outlives its 30 s
client timeout; once the database is back every 200 has exactly one record, and the key's
counters equal the ledger.

kill -9: a replica is killed while slow streams on a budgeted key are in flight, then restarted
under the same replica id. It settles what it left open at start: no reservation of it remains,
each killed request has exactly one `interrupted` record charged its reservation, and the key's
counters equal the ledger with nothing reserved.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx

from modelyard.ledger.cost import worst_case_micros
from modelyard.protocol.chat import ChatCompletionRequest
from modelyard.serving.chat import chat_prompt_bound
from modelyard.testing.fake_upstream import FakeUpstream, StreamReply, stream_events
from tests.scaleout.conftest import REPLICA_IDS
from tests.scaleout.counters_view import open_reservations, settled_key_budget_states
from tests.scaleout.ledger_view import usage_rows, wait_for_rows
from tests.scaleout.postgres_outage import start_postgres, stop_postgres
from tests.scaleout.topology import PRICE, Key, Topology, new_key
from tests.scaleout.traffic import CLIENT_TIMEOUT_S, Reply, async_client, post_chat
from tests.support.gateway import GatewayProcess
from tests.support.services import PostgresServer

CLIENTS = 8
RUN_S = 25.0
OUTAGE_AT_S = 7.5
OUTAGE_S = 10.0
PAUSE_S = 0.1
CHAT: dict[str, Any] = {
    "model": "acme-small",
    "messages": [{"role": "user", "content": "Still there?"}],
    "max_tokens": 8,
}
STREAMS = 3
STREAM_CHAT: dict[str, Any] = {
    "model": "acme-large",
    "messages": [{"role": "user", "content": "Tell me a slow story."}],
    "max_tokens": 200,
    "stream": True,
}


async def keep_asking(
    client: httpx.AsyncClient, topology: Topology, index: int, key: Key, stop_at: float
) -> list[Reply]:
    replies = []
    while time.monotonic() < stop_at:
        reply = await post_chat(client, topology.gateway(index), key.secret, CHAT)
        replies.append(reply)
        await asyncio.sleep(max(PAUSE_S, reply.retry_after_s if reply.status != 200 else 0))
    return replies


async def load_through_outage(
    topology: Topology, key: Key, postgres: PostgresServer
) -> tuple[list[Reply], tuple[float, float]]:
    stop_at = time.monotonic() + RUN_S
    async with async_client(CLIENTS) as client:
        load = asyncio.gather(
            *(keep_asking(client, topology, i, key, stop_at) for i in range(CLIENTS))
        )
        await asyncio.sleep(OUTAGE_AT_S)
        try:
            await asyncio.to_thread(stop_postgres, postgres)
            down_at = time.monotonic()
            await asyncio.sleep(OUTAGE_S)
        finally:
            await asyncio.to_thread(start_postgres, postgres)
        up_at = time.monotonic()
        per_client = await load
    return [r for replies in per_client for r in replies], (down_at, up_at)


def test_a_database_outage_loses_and_duplicates_no_usage_record(
    replicas: Topology, postgres_server: PostgresServer
) -> None:
    key = new_key(replicas, "outage", {})
    replies, (down_at, up_at) = asyncio.run(load_through_outage(replicas, key, postgres_server))

    statuses = Counter((r.status, r.code or r.transport_error) for r in replies)
    during = Counter(r.status for r in replies if down_at <= r.sent_at < up_at)
    slowest = max(r.elapsed_s for r in replies)
    print(
        f"\n[outage] {len(replies)} requests: {dict(statuses)}; sent while the database was"
        f" down: {dict(during)}; slowest {slowest:.2f} s"
    )
    assert set(statuses) <= {(200, ""), (503, "service_unavailable"), (503, "backlog_full")}, (
        statuses
    )
    assert during[200] + during[503] > 0
    for gateway in replicas.gateways:  # the outage really reached the ledger writers
        assert "usage ledger: writing" in gateway.log()
    assert slowest < CLIENT_TIMEOUT_S
    ok = {r.request_id for r in replies if r.status == 200}
    rows = wait_for_rows(replicas.database_url, len(ok), key_id=key.id, timeout_s=60)
    assert sorted(row["request_id"] for row in rows) == sorted(ok)
    spent = sum(row["cost_micros"] for row in rows)
    states = settled_key_budget_states(replicas.shared_counters, key.id, datetime.now(UTC))
    for state in states.values():
        assert (state.spent_micros, state.reserved_micros) == (spent, 0)


@contextlib.asynccontextmanager
async def slow_stream(
    client: httpx.AsyncClient, gateway: GatewayProcess, key: Key
) -> AsyncIterator[tuple[str, AsyncIterator[str]]]:
    """A stream whose first chunks have arrived: its request id and the rest of its lines."""
    async with client.stream(
        "POST",
        f"{gateway.base_url}/v1/chat/completions",
        json=STREAM_CHAT,
        headers={"authorization": f"Bearer {key.secret}"},
    ) as response:
        assert response.status_code == 200, await response.aread()
        lines = response.aiter_lines()
        chunks = 0
        async for line in lines:
            chunks += line.startswith("data: {")
            if chunks == 3:
                break
        yield response.headers["x-request-id"], lines


async def kill_mid_stream(gateway: GatewayProcess, key: Key) -> list[str]:
    async with async_client(STREAMS) as client, contextlib.AsyncExitStack() as streams:
        opened = await asyncio.gather(
            *(
                streams.enter_async_context(slow_stream(client, gateway, key))
                for _ in range(STREAMS)
            )
        )
        assert gateway.process is not None
        gateway.process.kill()
        gateway.process.wait(10)
        for _, lines in opened:
            with contextlib.suppress(httpx.HTTPError):
                async for _ in lines:
                    pass
    return [request_id for request_id, _ in opened]


def test_a_replica_killed_mid_stream_settles_what_it_left_open_when_it_restarts(
    replicas: Topology, upstream: FakeUpstream
) -> None:
    victim, owner = replicas.gateways[1], REPLICA_IDS[1]
    key = new_key(replicas, "killed", {"budgets_usd": {"day": "1.00"}})
    finished = [
        httpx.post(
            f"{victim.base_url}/v1/chat/completions",
            json=CHAT,
            headers={"authorization": f"Bearer {key.secret}"},
            timeout=CLIENT_TIMEOUT_S,
        )
        for _ in range(2)
    ]
    assert [r.status_code for r in finished] == [200, 200]
    wait_for_rows(replicas.database_url, 2, key_id=key.id)
    pieces = [f" word{i}" for i in range(100)]
    upstream.enqueue(*[StreamReply(stream_events(pieces), delay_s=0.2)] * STREAMS)

    killed = asyncio.run(kill_mid_stream(victim, key))
    left_open = {r.reservation_id for r in open_reservations(replicas.shared_counters, owner)}
    assert set(killed) <= left_open
    victim.start()

    assert open_reservations(replicas.shared_counters, owner) == []
    worst = worst_case_micros(
        PRICE, chat_prompt_bound(ChatCompletionRequest.model_validate(STREAM_CHAT)), 200
    )
    interrupted = usage_rows(replicas.database_url, request_ids=killed)
    assert sorted(row["request_id"] for row in interrupted) == sorted(killed)
    for row in interrupted:
        assert (row["outcome"], row["cost_micros"], row["reserved_micros"]) == (
            "interrupted",
            worst,
            worst,
        )
    rows = usage_rows(replicas.database_url, key_id=key.id)
    spent = sum(row["cost_micros"] for row in rows)
    states = settled_key_budget_states(replicas.shared_counters, key.id, rows[0]["created_at"])
    print(
        f"\n[kill -9] {len(killed)} streams killed; key's records {len(rows)}, {spent} µ$; {states}"
    )
    for state in states.values():
        assert (state.spent_micros, state.reserved_micros) == (spent, 0)
