"""Fixtures of the access tests: one gateway for the session, the world made in it, and an
in-process application for the few checks that need no socket."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.applications import Starlette

from modelyard.app import create_app
from modelyard.settings import Settings
from modelyard.state import AppState
from modelyard.testing.fake_upstream import FakeUpstream
from tests.access.identity_provider import IdentityProvider
from tests.access.world import World, build_world
from tests.remote.fixtures import remote_catalog
from tests.support.gateway import GatewayProcess

UPSTREAM_KEY = "sk-x"
IN_PROCESS_ADMIN_KEY = "in-process-admin-key-0123456789"


@pytest.fixture(scope="session")
def identity_provider(tmp_path_factory: pytest.TempPathFactory) -> IdentityProvider:
    return IdentityProvider.create(tmp_path_factory.mktemp("idp"))


@pytest.fixture(scope="session")
def access_gateway(
    tmp_path_factory: pytest.TempPathFactory,
    upstream_server: FakeUpstream,
    identity_provider: IdentityProvider,
) -> Iterator[GatewayProcess]:
    directory = tmp_path_factory.mktemp("access")
    catalog = remote_catalog(directory / "catalog.yaml", upstream_server.base_url)
    gateway = GatewayProcess(
        directory / "data",
        env={
            "ACME_KEY": UPSTREAM_KEY,
            "MODELYARD_AUTH_CONFIG": str(identity_provider.config_path),
            # These tests check that each failed login is audited: all from one address.
            "MODELYARD_AUDIT_FAILED_LOGINS_PER_MINUTE": "100000",
        },
        args=("--catalog", str(catalog)),
    ).start()
    yield gateway
    gateway.stop()


@pytest.fixture(scope="session")
def world(access_gateway: GatewayProcess, identity_provider: IdentityProvider) -> Iterator[World]:
    made = build_world(access_gateway, identity_provider)
    yield made
    made.api.close()


@pytest.fixture()
def in_process_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Starlette]:
    """The application built in this process on a fresh SQLite file, never served."""
    for name in [name for name in os.environ if name.startswith("MODELYARD_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("ACME_KEY", UPSTREAM_KEY)
    catalog = remote_catalog(tmp_path / "catalog.yaml", "http://127.0.0.1:9/v1")
    settings = Settings(data_dir=tmp_path / "data", catalog=catalog, admin_key=IN_PROCESS_ADMIN_KEY)
    app = create_app(settings)
    yield app
    state: AppState = app.state.modelyard
    state.close()
