"""The gateways the scale-out checks run against, and the admin calls that give each check a key
of its own.

Two topologies: one process (SQLite ledger, in-process counters) and two replicas sharing one
PostgreSQL database and one Redis, with fixed replica ids so that a replica restarted under the
same id settles what it left open. Both front the fake upstream through the remote catalog
(acme models, $0.40 in and $1.60 out per 1M tokens). Limits set through one replica reach the
other through the database; `new_key` waits until every gateway enforces them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelyard.catalog.cards import Price
from tests.remote.fixtures import remote_catalog
from tests.support.gateway import GatewayProcess

PRICE = Price(400_000, 1_600_000, 400_000)
SHARED_SECRET = "scaleout-replicas-shared-secret-0123456789"
UPSTREAM_KEY = "sk-scaleout-upstream"


@dataclass(frozen=True)
class Topology:
    name: str
    gateways: tuple[GatewayProcess, ...]
    database_url: str
    # None: the counters live in the gateway process.
    redis_url: str | None

    def gateway(self, index: int) -> GatewayProcess:
        """Requests are spread over the gateways round-robin by their index."""
        return self.gateways[index % len(self.gateways)]

    @property
    def shared_counters(self) -> str:
        """The Redis URL of replicas (one process has no shared counters)."""
        assert self.redis_url is not None, f"{self.name} keeps its counters in process"
        return self.redis_url

    def stop(self) -> None:
        for gateway in self.gateways:
            gateway.stop()


@dataclass(frozen=True)
class Key:
    project: str
    id: str
    secret: str


def start_one_process(root: Path, upstream_url: str) -> Topology:
    catalog = remote_catalog(root / "catalog.yaml", upstream_url)
    gateway = GatewayProcess(
        root / "solo", env={"ACME_KEY": UPSTREAM_KEY}, args=("--catalog", str(catalog))
    ).start()
    database_url = f"sqlite:///{gateway.data_dir / 'modelyard.db'}"
    return Topology("one process", (gateway,), database_url, None)


def start_replicas(
    root: Path, upstream_url: str, database_url: str, redis_url: str, replica_ids: Sequence[str]
) -> Topology:
    catalog = remote_catalog(root / "catalog.yaml", upstream_url)
    gateways = tuple(
        GatewayProcess(
            root / replica_id,
            env={
                "ACME_KEY": UPSTREAM_KEY,
                "MODELYARD_DATABASE_URL": database_url,
                "MODELYARD_REDIS_URL": redis_url,
                "MODELYARD_SECRET": SHARED_SECRET,
                "MODELYARD_REPLICA_ID": replica_id,
            },
            args=("--catalog", str(catalog)),
        )
        for replica_id in replica_ids
    )
    started: list[GatewayProcess] = []
    try:
        # The first one migrates the fresh database; the others then find it current.
        for gateway in gateways:
            started.append(gateway.start())
    except BaseException:
        for gateway in started:
            gateway.stop()
        raise
    return Topology("two replicas", gateways, database_url, redis_url)


def new_key(topology: Topology, project: str, limits: dict[str, Any]) -> Key:
    """A project with one key carrying `limits`, enforced by every gateway of the topology."""
    first = topology.gateways[0]
    created = first.admin("POST", "/admin/projects", {"id": project})
    assert created.status_code == 201, created.text
    made = first.admin("POST", f"/admin/projects/{project}/keys", {"name": "load"})
    assert made.status_code == 201, made.text
    key = Key(project, made.json()["id"], made.json()["key"])
    path = f"/admin/projects/{project}/keys/{key.id}/limits"
    put = first.admin("PUT", path, limits)
    assert put.status_code == 200, put.text
    deadline = time.monotonic() + 10
    for gateway in topology.gateways[1:]:
        while (seen := gateway.admin("GET", path)).json() != put.json():
            assert time.monotonic() < deadline, f"limits not seen by {gateway.base_url}: {seen}"
            time.sleep(0.1)
    return key
