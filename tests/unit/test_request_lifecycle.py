"""The request lifecycle on its own: one usage record per request, only once the request has
ended and every attempt has reported, with the status and outcome its ending implies; content
kept only for opted-in projects, and a content place that is not used is given back."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from modelyard.audit.content_log import ContentRecord
from modelyard.auth.principal import Principal
from modelyard.catalog.cards import DataPolicy, Deployment, Price
from modelyard.db.background_writer import BackgroundWriter
from modelyard.errors import (
    CLIENT_CLOSED_STATUS,
    OK_STATUS,
    InsufficientQuota,
    InternalError,
    InvalidModelOutput,
    UpstreamUnavailable,
)
from modelyard.ledger.records import UsageRecord
from modelyard.limits.memory_store import MemoryCounterStore
from modelyard.policy.rbac import Role
from modelyard.protocol.generation import Usage
from modelyard.routing.deployment_stats import Fleet
from modelyard.serving.lifecycle import (
    ClientLeft,
    Completed,
    Failed,
    Recording,
    RequestLifecycle,
    ending_for,
    status_of,
)

DEPLOYMENT = Deployment(
    id="d1",
    model="m",
    provider="openai_compat",
    region="eu",
    price=Price(input_per_1m_micros=1_000_000, output_per_1m_micros=2_000_000),
    data_policy=DataPolicy(retention_days=0, used_for_training=False, summary="none"),
)
PRICEY = Deployment(
    id="pricey",
    model="m2",
    provider="openai_compat",
    region="us",
    price=Price(input_per_1m_micros=10_000_000, output_per_1m_micros=30_000_000),
    data_policy=DataPolicy(retention_days=0, used_for_training=False, summary="none"),
)


@pytest.fixture()
def anyio_backend() -> str:
    return "asyncio"


class Written:
    """What a writer was handed, in order."""

    def __init__(self) -> None:
        self.items: list[Any] = []

    def __call__(self, batch: Any) -> None:
        self.items.extend(batch)


async def lifecycle(retention: int | None = None) -> tuple[RequestLifecycle, Written, Written]:
    ledger, content = Written(), Written()
    ledger_writer: BackgroundWriter[UsageRecord] = BackgroundWriter("usage ledger", ledger)
    content_writer: BackgroundWriter[ContentRecord] = BackgroundWriter("content log", content)
    for writer in (ledger_writer, content_writer):
        writer.start()
        assert writer.claim()  # as admission does
    recording = Recording(ledger_writer, content_writer, MemoryCounterStore(), Fleet())
    principal = Principal("dev", "key", {"p1": Role.DEVELOPER}, "myd-…", project="p1")
    made = RequestLifecycle(
        "req-1",
        principal,
        "p1",
        "m",
        DEPLOYMENT,
        5_000,
        recording,
        content_retention_days=retention,
    )
    if retention is None:
        content_writer.release()
    return made, ledger, content


async def settled(lifecycle: RequestLifecycle) -> None:
    for writer in (lifecycle.recording.ledger, lifecycle.recording.content):
        assert await writer.stop(deadline_s=5) == 0


@pytest.mark.anyio
async def test_the_record_waits_for_every_attempt_and_adds_them_up() -> None:
    made, ledger, _ = await lifecycle()
    first = made.begin_attempt(DEPLOYMENT, "m")
    repair = made.begin_attempt(DEPLOYMENT, "m")
    made.attempt_reported(first, Usage(100, 10))
    made.end(Completed())
    await asyncio.sleep(0.05)
    assert ledger.items == [], "recorded before the repair attempt reported"
    made.attempt_reported(repair, Usage(120, 20))
    await settled(made)
    [record] = ledger.items
    assert (record.prompt_tokens, record.completion_tokens) == (220, 30)
    assert record.cost_micros == 220 + 60 == made.cost_micros()
    assert (record.status, record.outcome) == (OK_STATUS, "completed")
    assert [a["outcome"] for a in record.attempts] == ["replaced", "completed"]


@pytest.mark.anyio
async def test_each_attempt_is_billed_at_its_own_deployments_price() -> None:
    made, ledger, _ = await lifecycle()
    failed = made.begin_attempt(PRICEY, "m2", admitted=True)
    made.attempt_failed(failed, UpstreamUnavailable("down", upstream_usage=(1000, 0)), ended=True)
    answered = made.begin_attempt(DEPLOYMENT, "m", admitted=True)
    made.attempt_reported(answered, Usage(100, 10))
    made.end(Completed())
    await settled(made)
    [record] = ledger.items
    # 1000 prompt tokens at $10/1M, then 100 + 2 x 10 at $1/1M.
    assert record.cost_micros == 10_000 + 120
    assert record.deployment == "d1" and record.model == "m"
    assert [(a["deployment"], a["outcome"], a["cost_micros"]) for a in record.attempts] == [
        ("pricey", "upstream_unavailable", 10_000),
        ("d1", "completed", 120),
    ]
    fleet = made.recording.fleet
    assert fleet.of("pricey").breaker.snapshot().consecutive_failures == 1
    assert fleet.of("pricey").last_error is not None
    assert fleet.of("d1").breaker.snapshot().consecutive_failures == 0
    assert fleet.of("pricey").in_flight == fleet.of("d1").in_flight == 0


@pytest.mark.anyio
async def test_only_the_first_ending_counts_and_one_record_is_written() -> None:
    made, ledger, _ = await lifecycle()
    attempt = made.begin_attempt(DEPLOYMENT, "m")
    made.end(Failed(InvalidModelOutput("bad")))
    made.end(Completed())
    made.attempt_reported(attempt, Usage(10, 5))
    await settled(made)
    [record] = ledger.items
    assert (record.status, record.outcome) == (502, "failed")


@pytest.mark.anyio
async def test_a_client_that_left_is_recorded_as_such() -> None:
    made, ledger, _ = await lifecycle()
    attempt = made.begin_attempt(DEPLOYMENT, "m")
    made.end(ClientLeft())
    made.attempt_reported(attempt, Usage(10, 3))
    await settled(made)
    [record] = ledger.items
    assert (record.status, record.outcome) == (CLIENT_CLOSED_STATUS, "client_disconnected")
    assert record.client_disconnected and record.completion_tokens == 3


@pytest.mark.anyio
async def test_content_is_kept_once_for_an_opted_in_project() -> None:
    made, _, content = await lifecycle(retention=7)
    attempt = made.begin_attempt(DEPLOYMENT, "m")
    made.keep_content([{"role": "user", "content": "hi"}], [{"content": "hello"}])
    made.keep_content(["again"], ["again"])
    made.attempt_reported(attempt, Usage(1, 1))
    made.end(Completed())
    await settled(made)
    [kept] = content.items
    assert kept.retention_days == 7 and kept.completion == [{"content": "hello"}]
    assert made.recording.content.backlog() == 0


@pytest.mark.anyio
async def test_an_unused_content_place_is_given_back_and_nothing_kept_without_opt_in() -> None:
    opted, _, content = await lifecycle(retention=7)
    opted.end(Failed(InternalError("x")))
    assert opted.recording.content.backlog() == 0
    await settled(opted)
    assert content.items == []
    plain, _, plain_content = await lifecycle()
    plain.keep_content(["prompt"], ["completion"])
    plain.end(Completed())
    await settled(plain)
    assert plain_content.items == [] and not plain.keeps_content


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (InsufficientQuota("over"), 429),
        (InvalidModelOutput("bad"), 502),
        (asyncio.CancelledError(), CLIENT_CLOSED_STATUS),
        (GeneratorExit(), CLIENT_CLOSED_STATUS),
        (KeyError("bug"), 500),
    ],
)
def test_an_exception_maps_to_its_ending_and_status(exc: BaseException, status: int) -> None:
    assert status_of(ending_for(exc)) == status
