"""Embeddings from the bundled all-MiniLM-L6-v2 through every SDK, and from a remote upstream."""

from __future__ import annotations

import math

import httpx
import openai
import pytest
from azure.ai.inference import EmbeddingsClient
from azure.core.credentials import AzureKeyCredential
from mistralai.client import Mistral

from modelyard.testing.fake_upstream import FakeUpstream
from tests.support.gateway import GatewayProcess

MODEL = "minilm"


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def test_openai_sdk_default_base64_decodes_to_real_embeddings(client: openai.OpenAI) -> None:
    result = client.embeddings.create(model=MODEL, input=["a cat", "a kitten", "a lorry"])
    vectors = [item.embedding for item in result.data]
    assert [item.index for item in result.data] == [0, 1, 2]
    assert all(len(vector) == 384 for vector in vectors)
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2])
    assert result.usage.prompt_tokens > 0
    assert result.model == "all-minilm-l6-v2"


def test_float_encoding_matches_base64(client: openai.OpenAI, gateway: GatewayProcess) -> None:
    decoded = client.embeddings.create(model=MODEL, input="hello").data[0].embedding
    raw = httpx.post(
        f"{gateway.base_url}/v1/embeddings",
        json={"model": MODEL, "input": "hello", "encoding_format": "float"},
        headers={"Authorization": f"Bearer {gateway.admin_key}"},
        timeout=60,
    ).json()
    assert raw["data"][0]["embedding"] == pytest.approx(decoded, abs=1e-6)
    assert {"id", "object", "model", "usage"} <= set(raw)


def test_token_id_input_is_refused_with_the_langchain_hint(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model=MODEL, input=[[101, 2023, 102]])
    assert "check_embedding_ctx_length=False" in caught.value.message


def test_long_input_is_refused_not_truncated(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model=MODEL, input=["short", "word " * 400])
    assert caught.value.code == "context_length_exceeded"
    assert caught.value.param == "input[1]"


def test_other_dimensions_are_refused(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model=MODEL, input="x", dimensions=64)
    assert caught.value.param == "dimensions"


def test_a_chat_model_does_not_embed(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model="smollm2", input="x")
    assert caught.value.code == "capability_unavailable"


def test_azure_embeddings_client(gateway: GatewayProcess) -> None:
    client = EmbeddingsClient(
        endpoint=f"{gateway.base_url}/models",
        credential=AzureKeyCredential(gateway.admin_key or ""),
        model=MODEL,
        retry_total=0,
    )
    result = client.embed(input=["first", "second"])
    assert len(result.data) == 2
    assert len(result.data[0].embedding) == 384


def test_azure_openai_embeddings_by_path(gateway: GatewayProcess) -> None:
    client = openai.AzureOpenAI(
        azure_endpoint=gateway.base_url,
        api_key=gateway.admin_key,
        api_version="2024-10-21",
        max_retries=0,
    )
    result = client.embeddings.create(model="minilm-local", input="hello")
    assert len(result.data[0].embedding) == 384


def test_mistral_sdk_embeddings(gateway: GatewayProcess) -> None:
    client = Mistral(server_url=gateway.base_url, api_key=gateway.admin_key)
    result = client.embeddings.create(model=MODEL, inputs=["bonjour", "hello"])
    assert len(result.data) == 2
    assert result.data[0].embedding is not None and len(result.data[0].embedding) == 384


def test_langchain_embeddings_without_token_ids(gateway: GatewayProcess) -> None:
    from langchain_openai import OpenAIEmbeddings

    embedder = OpenAIEmbeddings(
        model=MODEL,
        base_url=f"{gateway.base_url}/v1",
        api_key=gateway.admin_key,  # type: ignore[arg-type]
        check_embedding_ctx_length=False,
        max_retries=0,
    )
    vectors = embedder.embed_documents(["one", "two"])
    assert len(vectors) == 2 and len(vectors[0]) == 384


def test_remote_embeddings_are_reencoded_as_asked(
    remote_client: openai.OpenAI, upstream: FakeUpstream
) -> None:
    result = remote_client.embeddings.create(model="acme-embed", input=["a", "b"])
    assert [item.embedding for item in result.data] == [[0.0, 0.5, -0.25], [1.0, 0.5, -0.25]]
    sent = upstream.requests[-1]
    assert sent.path == "/v1/embeddings"
    assert sent.body["model"] == "embed-2026"
    assert sent.body["encoding_format"] == "float"
