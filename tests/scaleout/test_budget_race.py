"""Acceptance: 200 clients race for a key budget that fits exactly 50 worst-case requests, on one
process (SQLite, in-process counters) and on two replicas sharing PostgreSQL and Redis.

The fake upstream reports nearly the worst case (the whole `max_tokens`, a prompt a few tokens
under the gateway's bound), so a budget of 50 reservations is also about 50 actual costs. The
gateway must admit about 50, never let the ledger's total pass the budget by more than one
request's worst case, write exactly one record per admitted request and none for the refused,
refuse with 429 `insufficient_quota` (never a 503 or a 500), and end with counters that equal
the ledger.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from modelyard.ledger.cost import cost_micros, worst_case_micros
from modelyard.money import dollars
from modelyard.protocol.chat import ChatCompletionRequest
from modelyard.protocol.generation import Usage
from modelyard.serving.chat import chat_prompt_bound
from modelyard.testing.fake_upstream import FakeUpstream, JsonReply, completion_body
from tests.scaleout.counters_view import settled_key_budget_states
from tests.scaleout.ledger_view import wait_for_rows
from tests.scaleout.topology import PRICE, Key, Topology, new_key
from tests.scaleout.traffic import Reply, async_client, post_chat

CLIENTS = 200
FITS = 50
MAX_TOKENS = 16
CHAT: dict[str, Any] = {
    "model": "acme-small",
    "messages": [{"role": "user", "content": "Race for the last dollar of the budget."}],
    "max_tokens": MAX_TOKENS,
}
BOUND = chat_prompt_bound(ChatCompletionRequest.model_validate(CHAT))
WORST = worst_case_micros(PRICE, BOUND, MAX_TOKENS)
USAGE = Usage(BOUND - 8, MAX_TOKENS)
ACTUAL = cost_micros(PRICE, USAGE)
BUDGET = FITS * WORST


@pytest.fixture(params=["one_process", "replicas"])
def topology(request: pytest.FixtureRequest) -> Topology:
    found: Topology = request.getfixturevalue(request.param)
    return found


async def race(topology: Topology, key: Key) -> list[Reply]:
    async with async_client(CLIENTS) as client:
        # Every replica learns the new key first (a call that spends nothing), so that none
        # spends the race's first moments polling the shared configuration for it while the
        # others take the whole budget.
        for gateway in topology.gateways:
            known = await client.get(
                f"{gateway.base_url}/v1/models", headers={"authorization": f"Bearer {key.secret}"}
            )
            assert known.status_code == 200, known.text
        return await asyncio.gather(
            *(
                post_chat(client, topology.gateway(index), key.secret, CHAT)
                for index in range(CLIENTS)
            )
        )


def remaining_after_settling(topology: Topology, key: Key, expected: str) -> Decimal:
    """What the gateway's own counters say is left, asked with one more (refused) request."""
    deadline = time.monotonic() + 10
    while True:
        probe = asyncio.run(_probe(topology, key))
        assert probe[0] == 429, probe
        remaining = Decimal(probe[1])
        if remaining == Decimal(expected) or time.monotonic() > deadline:
            return remaining
        time.sleep(0.2)


async def _probe(topology: Topology, key: Key) -> tuple[int, str]:
    async with async_client(1) as client:
        response = await client.post(
            f"{topology.gateway(0).base_url}/v1/chat/completions",
            json=CHAT,
            headers={"authorization": f"Bearer {key.secret}"},
        )
    return response.status_code, response.headers.get("x-modelyard-budget-remaining-usd", "")


def test_two_hundred_clients_never_overspend_a_budget_that_fits_fifty(
    topology: Topology, upstream: FakeUpstream
) -> None:
    assert ACTUAL <= WORST and BUDGET - FITS * ACTUAL < WORST  # a 51st request cannot fit
    project = "race-" + topology.name.replace(" ", "-")
    key = new_key(topology, project, {"budgets_usd": {"day": dollars(BUDGET)}})
    usage = {"prompt_tokens": USAGE.prompt_tokens, "completion_tokens": MAX_TOKENS}
    upstream.enqueue(*[JsonReply(completion_body(usage=usage))] * CLIENTS)
    try:
        replies = asyncio.run(race(topology, key))
    finally:
        upstream.replies.clear()

    admitted = [r for r in replies if r.status == 200]
    refused = [r for r in replies if r.status != 200]
    outcomes = Counter((r.status, r.code or r.transport_error) for r in refused)
    print(f"\n[{topology.name}] admitted {len(admitted)} of {CLIENTS}; refused {dict(outcomes)}")
    assert outcomes == {(429, "insufficient_quota"): len(refused)}, outcomes
    assert abs(len(admitted) - FITS) <= FITS * 0.05
    if len(topology.gateways) > 1:
        assert {r.gateway for r in admitted} == {g.base_url for g in topology.gateways}

    rows = wait_for_rows(topology.database_url, len(admitted), key_id=key.id)
    ids = [row["request_id"] for row in rows]
    assert len(ids) == len(set(ids))
    assert set(ids) == {r.request_id for r in admitted}
    spent = sum(row["cost_micros"] for row in rows)
    overspend = spent - BUDGET
    print(f"[{topology.name}] ledger {spent} of {BUDGET} µ$, overspend {overspend} (worst {WORST})")
    assert overspend <= WORST
    assert all(row["reserved_micros"] == WORST for row in rows)

    expected_remaining = dollars(BUDGET - spent)
    assert remaining_after_settling(topology, key, expected_remaining) == Decimal(
        expected_remaining
    )
    if topology.redis_url is not None:
        states = settled_key_budget_states(topology.redis_url, key.id, datetime.now(UTC))
        print(f"[{topology.name}] redis counters {states}")
        for state in states.values():
            assert (state.spent_micros, state.reserved_micros) == (spent, 0)
