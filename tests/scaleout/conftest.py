"""The gateways shared by the scale-out checks, each started once per session: one process on
SQLite, and two replicas on PostgreSQL and Redis (fixed ids `scaleout-a`, `scaleout-b`)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from modelyard.testing.fake_upstream import FakeUpstream
from tests.scaleout.topology import Topology, start_one_process, start_replicas
from tests.support.services import PostgresServer, RedisServer

REPLICA_IDS = ("scaleout-a", "scaleout-b")


@pytest.fixture(scope="session")
def one_process(
    tmp_path_factory: pytest.TempPathFactory, upstream_server: FakeUpstream
) -> Iterator[Topology]:
    topology = start_one_process(tmp_path_factory.mktemp("one-process"), upstream_server.base_url)
    yield topology
    topology.stop()


@pytest.fixture(scope="session")
def replicas(
    tmp_path_factory: pytest.TempPathFactory,
    upstream_server: FakeUpstream,
    postgres_server: PostgresServer,
    redis_server: RedisServer,
) -> Iterator[Topology]:
    database_url = postgres_server.create_database(f"scaleout_{uuid.uuid4().hex[:12]}")
    topology = start_replicas(
        tmp_path_factory.mktemp("replicas"),
        upstream_server.base_url,
        database_url,
        redis_server.url(),
        REPLICA_IDS,
    )
    yield topology
    topology.stop()
