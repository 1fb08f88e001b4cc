"""An installation whose database disappears is not silently replaced by an empty one, and
readiness says when the database cannot be read."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.remote.fixtures import remote_catalog
from tests.scaleout.postgres_outage import start_postgres, stop_postgres
from tests.support.gateway import GatewayProcess
from tests.support.services import PostgresServer

ACME = {"ACME_KEY": "sk-x"}


def test_a_missing_database_stops_start_up_with_a_message(tmp_path: Path) -> None:
    catalog = remote_catalog(tmp_path / "catalog.yaml", "http://127.0.0.1:9/v1")
    gateway = GatewayProcess(tmp_path / "data", env=ACME, args=("--catalog", str(catalog))).start()
    created = gateway.admin("POST", "/admin/projects", {"id": "precious"})
    assert created.status_code == 201
    gateway.stop()
    for name in ("modelyard.db", "modelyard.db-wal", "modelyard.db-shm"):
        (gateway.data_dir / name).unlink(missing_ok=True)
    with pytest.raises(RuntimeError, match=r"database modelyard\.db is missing"):
        gateway.start()
    assert not (gateway.data_dir / "modelyard.db").exists()  # nothing was created instead
    # A new installation starts from an empty directory, as the message says.
    fresh = GatewayProcess(tmp_path / "fresh", env=ACME, args=("--catalog", str(catalog))).start()
    fresh.stop()


def test_readiness_reports_a_database_that_cannot_be_read(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    catalog = remote_catalog(tmp_path / "catalog.yaml", "http://127.0.0.1:9/v1")
    url = postgres_server.create_database("readiness")
    gateway = GatewayProcess(
        tmp_path / "data",
        env={**ACME, "MODELYARD_DATABASE_URL": url, "MODELYARD_CONFIG_POLL_S": "0.2"},
        args=("--catalog", str(catalog)),
    ).start()
    try:
        stop_postgres(postgres_server)
        try:
            deadline = time.monotonic() + 20
            while (ready := httpx.get(f"{gateway.base_url}/readyz")).status_code == 200:
                assert time.monotonic() < deadline, "readiness never noticed the database"
                time.sleep(0.1)
            assert ready.status_code == 503
            assert "the database cannot be read" in ready.json()["error"]["message"]
        finally:
            start_postgres(postgres_server)
        gateway.wait_ready(timeout=30)
    finally:
        gateway.stop()
