"""What one replica creates, every other honours as soon as the creation has returned: a replica
that does not know a key or project yet catches up with the database before refusing it. The
poll interval here is a minute, so only catching up can explain a success."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from modelyard.testing.fake_upstream import FakeUpstream
from tests.remote.fixtures import remote_catalog
from tests.replicas.test_shared_config import SHARED_SECRET, Replicas, models_status
from tests.support.gateway import GatewayProcess
from tests.support.services import PostgresServer


@pytest.fixture(scope="module")
def slow_polling_replicas(
    tmp_path_factory: pytest.TempPathFactory,
    postgres_server: PostgresServer,
    upstream_server: FakeUpstream,
) -> Iterator[Replicas]:
    root = tmp_path_factory.mktemp("read-your-writes")
    url = postgres_server.create_database(f"ryw_{uuid.uuid4().hex[:12]}")
    catalog = remote_catalog(root / "catalog.yaml", upstream_server.base_url)
    env = {
        "MODELYARD_DATABASE_URL": url,
        "MODELYARD_SECRET": SHARED_SECRET,
        "MODELYARD_CONFIG_POLL_S": "60",
        "ACME_KEY": "x",
    }
    a = GatewayProcess(root / "a", env=env, args=("--catalog", str(catalog))).start()
    b = GatewayProcess(root / "b", env=env, args=("--catalog", str(catalog)))
    try:
        b.start()
        yield Replicas(a, b, url)
    finally:
        a.stop()
        b.stop()


def test_a_project_made_on_one_replica_takes_keys_on_another(
    slow_polling_replicas: Replicas,
) -> None:
    a, b = slow_polling_replicas.a, slow_polling_replicas.b
    assert a.admin("POST", "/admin/projects", {"id": "fresh"}).status_code == 201
    created = b.admin("POST", "/admin/projects/fresh/keys", {"name": "k"})
    assert created.status_code == 201, created.text
    key = created.json()["key"]
    assert models_status(a, key) == 200  # made on b, used on a at once
    assert models_status(b, key) == 200


def test_a_key_made_on_one_replica_works_on_the_other_at_once(
    slow_polling_replicas: Replicas,
) -> None:
    a, b = slow_polling_replicas.a, slow_polling_replicas.b
    key = a.admin("POST", "/admin/projects/default/keys", {"name": "now"}).json()["key"]
    assert models_status(b, key) == 200
    chat = httpx.post(
        f"{b.base_url}/v1/chat/completions",
        json={"model": "acme-large", "messages": [{"role": "user", "content": "hi"}]},
        headers={"authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert chat.status_code == 200, chat.text


def test_unknown_keys_and_projects_are_still_refused(slow_polling_replicas: Replicas) -> None:
    b = slow_polling_replicas.b
    forged = "myd-" + "a" * 12 + "-" + "b" * 43
    assert models_status(b, forged) == 401
    assert b.admin("GET", "/admin/projects/never-made").status_code == 404


def test_the_poll_alone_would_not_have_told_the_other_replica(
    slow_polling_replicas: Replicas,
) -> None:
    """The control: b learns of a project it was never asked about only at its next poll."""
    a, b = slow_polling_replicas.a, slow_polling_replicas.b
    assert a.admin("POST", "/admin/projects", {"id": "unasked"}).status_code == 201
    listed = b.admin("GET", "/admin/projects").json()
    names = [project["id"] for project in listed["data"]]
    assert "unasked" not in names
