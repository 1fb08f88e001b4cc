"""Two gateway replicas on one PostgreSQL database share their configuration: a key made or
revoked on one is honoured by the other within the poll interval (1 s, so 2 s here), and the
audit log both write is one intact hash chain, even under concurrent admin mutations."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import openai
import pytest

from modelyard.testing.fake_upstream import FakeUpstream
from tests.remote.fixtures import remote_catalog
from tests.support.gateway import GatewayProcess
from tests.support.services import PostgresServer

SHARED_SECRET = "replica-shared-secret-0123456789abcdef"
PROPAGATION_S = 2.0


@dataclass(frozen=True)
class Replicas:
    a: GatewayProcess
    b: GatewayProcess
    database_url: str


@pytest.fixture(scope="module")
def replicas(
    tmp_path_factory: pytest.TempPathFactory,
    postgres_server: PostgresServer,
    upstream_server: FakeUpstream,
) -> Iterator[Replicas]:
    root = tmp_path_factory.mktemp("replicas")
    url = postgres_server.create_database(f"replicas_{uuid.uuid4().hex[:12]}")
    catalog = remote_catalog(root / "catalog.yaml", upstream_server.base_url)
    env = {"MODELYARD_DATABASE_URL": url, "MODELYARD_SECRET": SHARED_SECRET, "ACME_KEY": "x"}
    a, b = (
        GatewayProcess(root / name, env=env, args=("--catalog", str(catalog)))
        for name in ("a", "b")
    )
    # Started together on a fresh database: both migrate it and make the default project.
    a.start(wait_ready=False)
    b.start(wait_ready=False)
    try:
        a.wait_ready()
        b.wait_ready()
        yield Replicas(a, b, url)
    finally:
        a.stop()
        b.stop()
    for gateway in (a, b):
        assert SHARED_SECRET not in gateway.log()


def models_status(gateway: GatewayProcess, key: str) -> int:
    response = httpx.get(
        f"{gateway.base_url}/v1/models", headers={"authorization": f"Bearer {key}"}, timeout=10
    )
    return response.status_code


def within(seconds: float, check: Callable[[], bool]) -> float:
    """Seconds until `check` held; fails the test when it never did within `seconds`."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > seconds:
            pytest.fail(f"not true within {seconds} s")
        time.sleep(0.05)
    return time.monotonic() - start


def verify_audit(database_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelyard", "audit", "verify", "--database-url", database_url],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_key_made_on_one_replica_works_on_the_other_and_revocation_reaches_back(
    replicas: Replicas,
) -> None:
    a, b = replicas.a, replicas.b
    assert a.admin("POST", "/admin/projects", {"id": "shared"}).status_code == 201
    made = a.admin("POST", "/admin/projects/shared/keys", {"name": "ci", "role": "developer"})
    assert made.status_code == 201, made.text
    key, key_id = made.json()["key"], made.json()["id"]
    assert models_status(a, key) == 200

    within(PROPAGATION_S, lambda: models_status(b, key) == 200)
    assert b.admin("GET", "/admin/projects/shared").json()["id"] == "shared"

    revoked = b.admin("POST", f"/admin/projects/shared/keys/{key_id}/revoke")
    assert revoked.status_code == 200, revoked.text
    assert models_status(b, key) == 401
    within(PROPAGATION_S, lambda: models_status(a, key) == 401)
    assert a.admin("GET", f"/admin/projects/shared/keys/{key_id}").json()["revoked_at"]

    verdict = verify_audit(replicas.database_url)
    assert verdict.returncode == 0, verdict.stdout + verdict.stderr


def test_concurrent_mutations_on_both_replicas_leave_one_intact_audit_chain(
    replicas: Replicas,
) -> None:
    names = [f"burst-{index:02d}" for index in range(20)]
    targets = [replicas.a if index % 2 == 0 else replicas.b for index in range(len(names))]
    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        created = list(
            pool.map(
                lambda pair: pair[0].admin("POST", "/admin/projects", {"id": pair[1]}),
                zip(targets, names, strict=True),
            )
        )
    assert [response.status_code for response in created] == [201] * len(names), [
        response.text for response in created if response.status_code != 201
    ]

    def listed(gateway: GatewayProcess) -> set[str]:
        return {p["id"] for p in gateway.admin("GET", "/admin/projects").json()["data"]}

    for gateway in (replicas.a, replicas.b):
        within(PROPAGATION_S, lambda gateway=gateway: set(names) <= listed(gateway))

    verdict = verify_audit(replicas.database_url)
    assert verdict.returncode == 0, verdict.stdout + verdict.stderr
    events = replicas.a.admin("GET", "/admin/audit?limit=1000").json()["data"]
    seqs = [event["seq"] for event in events]
    assert seqs == list(range(1, len(seqs) + 1))
    burst = {e["object"] for e in events if e["action"] == "projects.create"}
    assert {f"project:{name}" for name in names} <= burst
    # The default project was made once, although both replicas first started together.
    assert sum(e["object"] == "project:default" for e in events) == 1


def test_requests_and_idempotent_retries_work_across_replicas(replicas: Replicas) -> None:
    a, b = replicas.a, replicas.b
    headers = {"authorization": f"Bearer {a.admin_key}", "idempotency-key": uuid.uuid4().hex}
    body = {"id": "retried"}
    first = httpx.post(f"{a.base_url}/admin/projects", json=body, headers=headers, timeout=30)
    # The client's retry lands on the other replica: the shared store answers, nothing repeats.
    again = httpx.post(f"{b.base_url}/admin/projects", json=body, headers=headers, timeout=30)
    assert first.status_code == again.status_code == 201, again.text
    assert again.json() == first.json()

    made = a.admin("POST", "/admin/projects/retried/keys", {"name": "app", "role": "developer"})
    key = made.json()["key"]
    within(PROPAGATION_S, lambda: models_status(b, key) == 200)
    for gateway in (a, b):
        client = openai.OpenAI(base_url=f"{gateway.base_url}/v1", api_key=key, max_retries=0)
        reply = client.chat.completions.create(
            model="acme-small", messages=[{"role": "user", "content": "Say hi."}]
        )
        assert reply.choices[0].message.content


def answering_model(gateway: GatewayProcess, model: str) -> str:
    """Which model answered a chat request to `model` (a route), or the error code."""
    reply = httpx.post(
        f"{gateway.base_url}/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {gateway.admin_key}"},
        timeout=30,
    )
    body = reply.json()
    return str(body["model"]) if reply.status_code == 200 else str(body["error"]["code"])


def test_a_route_changed_on_one_replica_is_followed_by_the_other(replicas: Replicas) -> None:
    a, b = replicas.a, replicas.b
    route = "/admin/routes/shared-route"
    created = a.admin("PUT", route, {"candidates": [{"deployment": "acme-small-eu"}]})
    assert created.status_code == 200, created.text
    assert answering_model(a, "shared-route") == "acme-small"
    within(PROPAGATION_S, lambda: answering_model(b, "shared-route") == "acme-small")

    reordered = {
        "strategy": "priority",
        "candidates": [{"deployment": "acme-large-eu"}, {"deployment": "acme-small-eu"}],
    }
    assert b.admin("PUT", route, reordered).status_code == 200
    within(PROPAGATION_S, lambda: answering_model(a, "shared-route") == "acme-large")
    listed = a.admin("GET", "/admin/routes").json()["data"]
    (shared,) = [r for r in listed if r["id"] == "shared-route"]
    assert [c["deployment"] for c in shared["candidates"]] == ["acme-large-eu", "acme-small-eu"]
    assert shared["source"] == "runtime"

    assert a.admin("DELETE", route).status_code == 200
    within(PROPAGATION_S, lambda: answering_model(b, "shared-route") == "model_not_found")
    actions = [
        event["action"]
        for event in a.admin("GET", "/admin/audit?limit=1000").json()["data"]
        if event["object"] == "route:shared-route"
    ]
    assert actions == ["routes.create", "routes.update", "routes.delete"]
    verdict = verify_audit(replicas.database_url)
    assert verdict.returncode == 0, verdict.stdout + verdict.stderr
