"""The `azure` provider against a fake upstream speaking Azure OpenAI and Azure AI Inference."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest
import yaml

from modelyard.testing.fake_upstream import FakeUpstream, StreamReply, stream_events
from tests.support.gateway import GatewayProcess

AZURE_SECRET = "azure-canary-key-77d2"


@pytest.fixture(scope="module")
def azure_gateway(
    tmp_path_factory: pytest.TempPathFactory, upstream_server: FakeUpstream
) -> Iterator[GatewayProcess]:
    directory = tmp_path_factory.mktemp("azure")
    card = {
        "publisher": "OpenAI",
        "license": "proprietary",
        "context_window": 128000,
        "max_output_tokens": 16000,
        "languages": ["en"],
        "capabilities": ["chat", "streaming", "tools", "json_schema"],
    }
    deployment = {
        "provider": "azure",
        "region": "swedencentral",
        "price": {"input_per_1m": "2.50", "output_per_1m": "10"},
        "data_policy": {"retention_days": 0, "summary": "Azure, abuse monitoring off."},
    }
    upstream = {"base_url": upstream_server.root_url, "credential": "env:AZURE_KEY"}
    catalog = directory / "catalog.yaml"
    catalog.write_text(
        yaml.safe_dump(
            {
                "models": [{**card, "id": "gpt-4o"}, {**card, "id": "mistral-large"}],
                "deployments": [
                    {
                        **deployment,
                        "id": "gpt-4o-sweden",
                        "model": "gpt-4o",
                        "upstream": {
                            **upstream,
                            "model": "gpt4o-prod",
                            "flavor": "azure_openai",
                            "api_version": "2024-10-21",
                        },
                    },
                    {
                        **deployment,
                        "id": "mistral-large-foundry",
                        "model": "mistral-large",
                        "upstream": {
                            **upstream,
                            "model": "Mistral-Large-2411",
                            "flavor": "ai_inference",
                            "api_version": "2024-05-01-preview",
                        },
                    },
                ],
            }
        )
    )
    gateway = GatewayProcess(
        directory / "data", env={"AZURE_KEY": AZURE_SECRET}, args=("--catalog", str(catalog))
    ).start()
    yield gateway
    gateway.stop()
    assert AZURE_SECRET not in gateway.log()


@pytest.fixture()
def azure_client(azure_gateway: GatewayProcess) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{azure_gateway.base_url}/v1", api_key=azure_gateway.admin_key, max_retries=0
    )


def test_azure_openai_upstream_is_addressed_by_deployment_path(
    azure_client: openai.OpenAI, upstream: FakeUpstream
) -> None:
    completion = azure_client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
    )
    assert completion.choices[0].message.content == "Hello from upstream."
    sent = upstream.requests[-1]
    assert sent.path == "/openai/deployments/gpt4o-prod/chat/completions"
    assert sent.query == {"api-version": "2024-10-21"}
    assert sent.headers["api-key"] == AZURE_SECRET
    assert "authorization" not in sent.headers


def test_ai_inference_upstream_names_the_model_in_the_body(
    azure_client: openai.OpenAI, upstream: FakeUpstream
) -> None:
    upstream.enqueue(
        StreamReply(
            stream_events(
                ["Bon", "jour"],
                usage={"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
            )
        )
    )
    chunks = list(
        azure_client.chat.completions.create(
            model="mistral-large",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Bonjour"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 5
    sent = upstream.requests[-1]
    assert sent.path == "/models/chat/completions"
    assert sent.query == {"api-version": "2024-05-01-preview"}
    assert sent.body["model"] == "Mistral-Large-2411"
    assert "stream_options" not in sent.body  # Azure AI Inference refuses it as an extra
    assert sent.headers["api-key"] == AZURE_SECRET


def test_azure_embeddings_upstream(azure_client: openai.OpenAI, upstream: FakeUpstream) -> None:
    # gpt-4o has no embeddings capability: refused before any upstream call.
    with pytest.raises(openai.BadRequestError):
        azure_client.embeddings.create(model="gpt-4o", input="x")
    assert upstream.requests == []
