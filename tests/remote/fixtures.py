"""Fixtures for remote providers: a fake upstream and a gateway whose catalog points at it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
import yaml

from modelyard.testing.fake_upstream import FakeUpstream
from tests.support.gateway import GatewayProcess

UPSTREAM_SECRET = "sk-upstream-canary-5b1e9d"
# These gateways pin how one failing attempt is answered, many times over: circuit breakers,
# tested on their own in tests/routing, would turn the later faults into quick 503s.
NO_BREAKERS = {"MODELYARD_BREAKER_FAILURES": "0"}


def remote_catalog(path: Path, base_url: str, **upstream: object) -> Path:
    card = {
        "publisher": "Acme",
        "license": "proprietary",
        "context_window": 32000,
        "max_output_tokens": 4000,
        "languages": ["en", "fr"],
    }
    deployment = {
        "provider": "openai_compat",
        "region": "eu-west",
        "price": {"input_per_1m": "0.40", "output_per_1m": "1.60"},
        "data_policy": {"retention_days": 30, "summary": "Acme keeps prompts for 30 days."},
    }
    document = {
        "models": [
            {
                **card,
                "id": "acme-large",
                "capabilities": ["chat", "streaming", "tools", "json_schema", "json_output"],
            },
            {**card, "id": "acme-small", "capabilities": ["chat", "streaming"]},
            {**card, "id": "acme-embed", "capabilities": ["embeddings"]},
        ],
        "deployments": [
            {
                **deployment,
                "id": "acme-large-eu",
                "model": "acme-large",
                "upstream": {
                    "base_url": base_url,
                    "model": "large-2026",
                    "credential": "env:ACME_KEY",
                    **upstream,
                },
            },
            {
                **deployment,
                "id": "acme-small-eu",
                "model": "acme-small",
                "upstream": {
                    "base_url": base_url,
                    "model": "small-2026",
                    "credential": "env:ACME_KEY",
                },
            },
            {
                **deployment,
                "id": "acme-embed-eu",
                "model": "acme-embed",
                "upstream": {
                    "base_url": base_url,
                    "model": "embed-2026",
                    "credential": "env:ACME_KEY",
                },
            },
        ],
    }
    path.write_text(yaml.safe_dump(document))
    return path


def remote_gateway_at(
    directory: Path, upstream_url: str, env: dict[str, str] | None = None
) -> GatewayProcess:
    """A started gateway on the remote catalog, with settings of its own in `env`."""
    catalog = remote_catalog(directory / "catalog.yaml", upstream_url)
    return GatewayProcess(
        directory / "data",
        env={"ACME_KEY": UPSTREAM_SECRET, **NO_BREAKERS, **(env or {})},
        args=("--catalog", str(catalog)),
    ).start()


@pytest.fixture(scope="session")
def upstream_server() -> Iterator[FakeUpstream]:
    with FakeUpstream().running() as fake:
        yield fake


@pytest.fixture()
def upstream(upstream_server: FakeUpstream) -> FakeUpstream:
    """The shared fake upstream, with no scripted replies or recorded requests left over."""
    upstream_server.reset()
    return upstream_server


@pytest.fixture(scope="session")
def remote_gateway(
    tmp_path_factory: pytest.TempPathFactory, upstream_server: FakeUpstream
) -> Iterator[GatewayProcess]:
    directory = tmp_path_factory.mktemp("remote")
    catalog = remote_catalog(
        directory / "catalog.yaml", upstream_server.base_url, idle_timeout_s=1.0, read_timeout_s=3.0
    )
    gateway = GatewayProcess(
        directory / "data",
        env={"ACME_KEY": UPSTREAM_SECRET, **NO_BREAKERS},
        args=("--catalog", str(catalog)),
    ).start()
    yield gateway
    gateway.stop()
    assert UPSTREAM_SECRET not in gateway.log()


@pytest.fixture()
def remote_client(remote_gateway: GatewayProcess) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{remote_gateway.base_url}/v1", api_key=remote_gateway.admin_key, max_retries=0
    )
