"""Concurrency leases on both stores: a cap per key, release, renewal, and expiry when a replica
dies holding them."""

from __future__ import annotations

import pytest
from tests.limits.conftest import Counters

pytestmark = pytest.mark.anyio


async def test_enter_refuses_past_the_cap_until_a_lease_leaves(counters: Counters) -> None:
    store = counters.store
    assert await store.enter("key", 2, "l1", 30)
    assert await store.enter("key", 2, "l2", 30)
    assert not await store.enter("key", 2, "l3", 30)
    assert await store.enter("other-key", 2, "l3", 30)
    assert await store.leave("key", "l1") is True
    assert await store.leave("key", "l1") is False
    assert await store.enter("key", 2, "l3", 30)
    # Entering again with a lease already held renews it, even at the cap.
    assert await store.enter("key", 2, "l2", 30)


async def test_a_lease_expires_after_its_ttl(counters: Counters) -> None:
    store = counters.store
    assert await store.enter("key", 1, "dead-replica", 0.3)
    assert not await store.enter("key", 1, "l2", 0.3)
    await counters.advance(0.35)
    assert await store.enter("key", 1, "l2", 0.3)
    assert await store.leave("key", "dead-replica") is False


async def test_renewing_a_lease_extends_it(counters: Counters) -> None:
    store = counters.store
    assert await store.enter("key", 1, "l1", 0.6)
    await counters.advance(0.35)
    assert await store.enter("key", 1, "l1", 0.6)
    await counters.advance(0.35)
    assert not await store.enter("key", 1, "l2", 0.6)
    assert await store.leave("key", "l1") is True


async def test_a_zero_cap_admits_nobody(counters: Counters) -> None:
    assert not await counters.store.enter("key", 0, "l1", 30)
