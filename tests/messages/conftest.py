"""Fixtures of the Anthropic Messages surface's tests: the `anthropic` SDK on the session's
bundled-model gateway, and one gateway (for this package) in front of the shared fake
OpenAI-compatible upstream, with a catalog route over its large model."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest
import yaml

from modelyard.testing.fake_upstream import FakeUpstream
from tests.remote.fixtures import NO_BREAKERS, UPSTREAM_SECRET, remote_catalog
from tests.support.gateway import GatewayProcess

ROUTE = "acme-chat"


@pytest.fixture()
def claude(gateway: GatewayProcess) -> anthropic.Anthropic:
    """The SDK on the bundled local model. base_url is the gateway's root: the SDK adds /v1."""
    return anthropic.Anthropic(base_url=gateway.base_url, api_key=gateway.admin_key, max_retries=0)


@pytest.fixture(scope="package")
def fake_gateway(
    tmp_path_factory: pytest.TempPathFactory, upstream_server: FakeUpstream
) -> Iterator[GatewayProcess]:
    directory = tmp_path_factory.mktemp("messages-remote")
    path = remote_catalog(
        directory / "catalog.yaml", upstream_server.base_url, idle_timeout_s=1.0, read_timeout_s=3.0
    )
    catalog = yaml.safe_load(path.read_text())
    catalog["routes"] = [
        {"id": ROUTE, "strategy": "priority", "candidates": [{"deployment": "acme-large-eu"}]}
    ]
    path.write_text(yaml.safe_dump(catalog))
    gateway = GatewayProcess(
        directory / "data",
        env={"ACME_KEY": UPSTREAM_SECRET, **NO_BREAKERS},
        args=("--catalog", str(path)),
    ).start()
    yield gateway
    gateway.stop()
    assert UPSTREAM_SECRET not in gateway.log()


@pytest.fixture()
def remote_claude(fake_gateway: GatewayProcess) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=fake_gateway.base_url, api_key=fake_gateway.admin_key, max_retries=0
    )


def project_key(gateway: GatewayProcess, project: str, limits: dict[str, Any] | None = None) -> str:
    """A new project (with these limits) and a key of it, through the admin API."""
    created = gateway.admin("POST", "/admin/projects", {"id": project})
    assert created.status_code == 201, created.text
    if limits:
        changed = gateway.admin("PUT", f"/admin/projects/{project}/limits", limits)
        assert changed.status_code == 200, changed.text
    made = gateway.admin("POST", f"/admin/projects/{project}/keys", {"name": "messages"})
    assert made.status_code == 201, made.text
    key: str = made.json()["key"]
    return key


def raw_post(gateway: GatewayProcess, path: str, body: bytes, **headers: str) -> httpx.Response:
    return httpx.post(f"{gateway.base_url}{path}", content=body, headers=headers, timeout=30)
