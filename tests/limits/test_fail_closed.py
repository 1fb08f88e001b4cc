"""The Redis store fails closed: with Redis gone or hung, every method raises
CounterStoreUnavailable within about a second, and nothing is admitted."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from tests.limits.conftest import RedisServer
from tests.support.ports import free_port

from modelyard.limits.errors import CounterStoreUnavailable
from modelyard.limits.redis_store import RedisCounterStore
from modelyard.limits.values import Admitted, BudgetLimit, RateWindow, Reserved

pytestmark = pytest.mark.anyio


def every_method(store: RedisCounterStore) -> list[Callable[[], Awaitable[Any]]]:
    return [
        lambda: store.reserve("r2", [BudgetLimit("b", 1000)], 10, "a"),
        lambda: store.settle("r1", 10),
        lambda: store.open_reservations(),
        lambda: store.open_reservations("a"),
        lambda: store.budget_state("b"),
        lambda: store.admit("q2", [RateWindow("rpm", 10, 1)]),
        lambda: store.adjust("q1", "rpm", 3),
        lambda: store.enter("key", 2, "l1", 30),
        lambda: store.leave("key", "l1"),
    ]


async def assert_all_unavailable(store: RedisCounterStore, within_s: float) -> None:
    for call in every_method(store):
        start = time.monotonic()
        with pytest.raises(CounterStoreUnavailable) as raised:
            await call()
        assert time.monotonic() - start < within_s
        assert raised.value.status == 503


async def test_a_stopped_redis_refuses_everything(own_redis_server: RedisServer) -> None:
    store = RedisCounterStore(own_redis_server.url)
    try:
        assert isinstance(await store.reserve("r1", [BudgetLimit("b", 1000)], 10, "a"), Reserved)
        assert isinstance(await store.admit("q1", [RateWindow("rpm", 10, 1)]), Admitted)
        own_redis_server.stop()
        await assert_all_unavailable(store, within_s=1.0)
    finally:
        await store.aclose()


async def test_a_hung_redis_times_out_and_recovers(own_redis_server: RedisServer) -> None:
    store = RedisCounterStore(own_redis_server.url)
    try:
        await store.reserve("r1", [BudgetLimit("b", 1000)], 10, "a")
        own_redis_server.pause()
        try:
            await assert_all_unavailable(store, within_s=1.2)
        finally:
            own_redis_server.resume()
        assert await store.settle("r1", 10) is True
    finally:
        await store.aclose()


async def test_an_unreachable_redis_refuses_everything() -> None:
    store = RedisCounterStore(f"redis://127.0.0.1:{free_port()}/0")
    try:
        await assert_all_unavailable(store, within_s=1.0)
    finally:
        await store.aclose()
