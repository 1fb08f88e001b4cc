"""A fake Anthropic upstream and a gateway whose catalog points at it: two deployments of two
models (`sonnet-eu`, `haiku-eu`) and a route that falls back from the first to the second."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

from modelyard.testing.fake_anthropic import FakeAnthropic
from tests.remote.fixtures import NO_BREAKERS
from tests.support.gateway import GatewayProcess

ANTHROPIC_SECRET = "sk-ant-canary-7c41e2d9"
# USD per million tokens: $3 in, $15 out, $0.30 for prompt tokens read from Anthropic's cache.
PRICE = {"input_per_1m": "3.00", "output_per_1m": "15.00", "cached_input_per_1m": "0.30"}
CAPABILITIES = ["chat", "streaming", "tools", "json_output", "json_schema", "vision"]


def anthropic_catalog(path: Path, base_url: str) -> Path:
    card = {
        "publisher": "Anthropic",
        "license": "proprietary",
        "context_window": 200_000,
        "languages": ["en", "fr"],
        "capabilities": CAPABILITIES,
    }

    def deployment(deployment_id: str, model: str, upstream_model: str) -> dict[str, Any]:
        return {
            "id": deployment_id,
            "model": model,
            "provider": "anthropic",
            "region": "eu-west",
            "price": PRICE,
            "data_policy": {"retention_days": 30, "summary": "Anthropic keeps prompts 30 days."},
            "upstream": {
                "base_url": base_url,
                "model": upstream_model,
                "credential": "env:ANTHROPIC_TEST_KEY",
                "read_timeout_s": 5.0,
                "idle_timeout_s": 2.0,
            },
        }

    document = {
        "models": [
            {**card, "id": "claude-sonnet", "max_output_tokens": 8192},
            {**card, "id": "claude-haiku", "max_output_tokens": 4096},
        ],
        "deployments": [
            deployment("sonnet-eu", "claude-sonnet", "claude-sonnet-up"),
            deployment("haiku-eu", "claude-haiku", "claude-haiku-up"),
        ],
        "routes": [
            {
                "id": "claude-any",
                "strategy": "priority",
                "candidates": [{"deployment": "sonnet-eu"}, {"deployment": "haiku-eu"}],
            }
        ],
    }
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def anthropic_server() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(api_key=ANTHROPIC_SECRET).running() as fake:
        yield fake


@pytest.fixture()
def anthropic_upstream(anthropic_server: FakeAnthropic) -> FakeAnthropic:
    """The module's fake, with no scripted replies or recorded requests left over."""
    anthropic_server.reset()
    return anthropic_server


@pytest.fixture(scope="module")
def anthropic_gateway(
    tmp_path_factory: pytest.TempPathFactory, anthropic_server: FakeAnthropic
) -> Iterator[GatewayProcess]:
    directory = tmp_path_factory.mktemp("anthropic")
    catalog = anthropic_catalog(directory / "catalog.yaml", anthropic_server.base_url)
    gateway = GatewayProcess(
        directory / "data",
        env={"ANTHROPIC_TEST_KEY": ANTHROPIC_SECRET, **NO_BREAKERS},
        args=("--catalog", str(catalog)),
    ).start()
    yield gateway
    gateway.stop()
    assert ANTHROPIC_SECRET not in gateway.log()


@pytest.fixture()
def claude(anthropic_gateway: GatewayProcess) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{anthropic_gateway.base_url}/v1",
        api_key=anthropic_gateway.admin_key,
        max_retries=0,
    )
