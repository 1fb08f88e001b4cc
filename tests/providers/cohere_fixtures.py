"""A gateway whose catalog sends `command-a` and the `command-r-route` route to a fake Cohere v2
Chat API (`FakeCohere`); test modules start one of each in module-scoped fixtures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import yaml

from modelyard.catalog.cards import Price
from tests.remote.fixtures import NO_BREAKERS
from tests.support.gateway import GatewayProcess

COHERE_SECRET = "co-upstream-canary-3c9e71"
# Dollars per 1M tokens: input, output, cached input (Cohere's cached tokens, priced lower).
PRICE = ("2.50", "10.00", "0.25")
PRICE_FIELDS = ("input_per_1m", "output_per_1m", "cached_input_per_1m")
COMMAND_A_PRICE = Price(2_500_000, 10_000_000, 250_000)
ROUTE = "command-r-route"


def cohere_catalog(path: Path, base_url: str) -> Path:
    card = {
        "publisher": "Cohere",
        "license": "proprietary",
        "context_window": 256000,
        "max_output_tokens": 8000,
        "languages": ["en", "fr"],
    }

    def deployment(deployment_id: str, model: str, upstream_model: str) -> dict[str, Any]:
        return {
            "id": deployment_id,
            "model": model,
            "provider": "cohere",
            "region": "eu-west",
            "price": dict(zip(PRICE_FIELDS, PRICE, strict=True)),
            "data_policy": {"retention_days": 30, "summary": "Cohere keeps prompts 30 days."},
            "upstream": {
                "base_url": base_url,
                "model": upstream_model,
                "credential": "env:COHERE_KEY",
                "read_timeout_s": 3.0,
                "idle_timeout_s": 1.0,
            },
        }

    document = {
        "models": [
            {
                **card,
                "id": "command-a",
                "capabilities": ["chat", "streaming", "tools", "json_schema", "json_output"],
            },
            {**card, "id": "command-r", "capabilities": ["chat", "streaming"]},
        ],
        "deployments": [
            deployment("cohere-a", "command-a", "command-a-03-2025"),
            deployment("cohere-r-limited", "command-r", "command-r-limited"),
            deployment("cohere-r-backup", "command-r", "command-r-backup"),
        ],
        "routes": [
            {
                "id": ROUTE,
                "strategy": "priority",
                "candidates": [
                    {"deployment": "cohere-r-limited"},
                    {"deployment": "cohere-r-backup"},
                ],
            }
        ],
    }
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def cohere_gateway_at(directory: Path, base_url: str) -> GatewayProcess:
    """A started gateway on the Cohere catalog; stop it, then check `assert_secret_kept`."""
    catalog = cohere_catalog(directory / "catalog.yaml", base_url)
    return GatewayProcess(
        directory / "data",
        env={"COHERE_KEY": COHERE_SECRET, **NO_BREAKERS},
        args=("--catalog", str(catalog)),
    ).start()


def client_of(gateway: GatewayProcess) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{gateway.base_url}/v1", api_key=gateway.admin_key, max_retries=0
    )
