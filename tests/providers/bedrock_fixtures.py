"""A fake Bedrock Runtime (`FakeBedrock`) and a gateway whose catalog points at it.

Models and deployments (all `bedrock`, region eu-central-1 unless said):
- `claude-b` on `claude-b-eu` (`anthropic.claude-...-v1:0`, catalog credential with a session
  token), and `claude-b-profile` on `claude-b-eu2` (an inference profile id); the route
  `claude-b-any` falls back from the first to the second;
- `nova-b` on `nova-b-eu`, with no credential reference: the standard AWS chain, given by
  `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` in the gateway's environment;
- `claude-b-misregioned` signs for us-east-1 and `claude-b-stranger` with a key AWS does not
  know: the fake refuses both, as AWS would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import yaml

from modelyard.testing.fake_bedrock import TEST_KEY, AwsKey
from tests.remote.fixtures import NO_BREAKERS
from tests.support.gateway import GatewayProcess

CLAUDE_ID = "anthropic.claude-3-5-sonnet-20240620-v1:0"
PROFILE_ID = "eu.anthropic.claude-3-5-sonnet-20240620-v1:0"
NOVA_ID = "amazon.nova-lite-v1:0"
CHAIN_KEY = AwsKey("AKIAFAKECHAIN0000002", "chain/secret+key/for-bedrock-tests-0002")
STRANGER_SECRET = "stranger/secret+canary-0003"
# Dollars per 1M tokens: input, output, and input read from Bedrock's prompt cache.
PRICE = {"input_per_1m": "3.00", "output_per_1m": "15.00", "cached_input_per_1m": "0.30"}
ROUTE = "claude-b-any"
SECRETS = (
    TEST_KEY.secret_access_key,
    str(TEST_KEY.session_token),
    CHAIN_KEY.secret_access_key,
    STRANGER_SECRET,
)


def bedrock_catalog(path: Path, base_url: str) -> Path:
    card = {
        "publisher": "Anthropic",
        "license": "proprietary",
        "context_window": 200_000,
        "max_output_tokens": 4096,
        "languages": ["en", "fr"],
        "capabilities": ["chat", "streaming", "tools", "json_output", "json_schema", "vision"],
    }

    def deployment(
        deployment_id: str, model: str, model_id: str, credential: str | None, region: str
    ) -> dict[str, Any]:
        upstream: dict[str, Any] = {
            "base_url": base_url,
            "model": model_id,
            "aws_region": region,
            "read_timeout_s": 5.0,
            "idle_timeout_s": 2.0,
        }
        if credential is not None:
            upstream["credential"] = credential
        return {
            "id": deployment_id,
            "model": model,
            "provider": "bedrock",
            "region": "eu-central",
            "price": PRICE,
            "data_policy": {"retention_days": 0, "summary": "Bedrock keeps no prompts."},
            "upstream": upstream,
        }

    models = ["claude-b", "claude-b-profile", "nova-b", "claude-b-misregioned", "claude-b-stranger"]
    document = {
        "models": [{**card, "id": model} for model in models],
        "deployments": [
            deployment("claude-b-eu", "claude-b", CLAUDE_ID, "env:BEDROCK_KEYS", "eu-central-1"),
            deployment(
                "claude-b-eu2", "claude-b-profile", PROFILE_ID, "env:BEDROCK_KEYS", "eu-central-1"
            ),
            deployment("nova-b-eu", "nova-b", NOVA_ID, None, "eu-central-1"),
            deployment(
                "claude-b-us", "claude-b-misregioned", CLAUDE_ID, "env:BEDROCK_KEYS", "us-east-1"
            ),
            deployment(
                "claude-b-stranger",
                "claude-b-stranger",
                CLAUDE_ID,
                "file:" + str(path.parent / "stranger-keys"),
                "eu-central-1",
            ),
        ],
        "routes": [
            {
                "id": ROUTE,
                "strategy": "priority",
                "candidates": [{"deployment": "claude-b-eu"}, {"deployment": "claude-b-eu2"}],
            }
        ],
    }
    (path.parent / "stranger-keys").write_text(f"AKIAFAKESTRANGER0003:{STRANGER_SECRET}\n")
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def aws_environment(directory: Path) -> dict[str, str]:
    """The standard chain's keys in the environment, and nothing else for it to find: no shared
    files, and never the instance metadata endpoint."""
    return {
        "AWS_ACCESS_KEY_ID": CHAIN_KEY.access_key_id,
        "AWS_SECRET_ACCESS_KEY": CHAIN_KEY.secret_access_key,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(directory / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(directory / "no-aws-credentials"),
    }


def bedrock_gateway_at(directory: Path, base_url: str) -> GatewayProcess:
    """A started gateway on the Bedrock catalog; stop it, then check no secret is in its log."""
    catalog = bedrock_catalog(directory / "catalog.yaml", base_url)
    return GatewayProcess(
        directory / "data",
        env={"BEDROCK_KEYS": TEST_KEY.reference(), **aws_environment(directory), **NO_BREAKERS},
        args=("--catalog", str(catalog)),
    ).start()


def client_of(gateway: GatewayProcess) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{gateway.base_url}/v1", api_key=gateway.admin_key, max_retries=0
    )
