"""GET /v1/models: the catalog as clients see it."""

from __future__ import annotations

import openai
import pytest


def test_list_models_carries_card_metadata(client: openai.OpenAI) -> None:
    models = client.models.list()
    entry = next(model for model in models.data if model.id == "smollm2-135m-instruct")
    assert entry.object == "model"
    assert isinstance(entry.created, int)
    assert entry.owned_by == "HuggingFaceTB"
    extra = entry.model_extra or {}
    assert extra["type"] == "base"
    assert extra["capabilities"]["completion_chat"] is True
    # SmolLM2 was never trained for tools or JSON; the gateway's grammars provide both.
    assert extra["capabilities"]["function_calling"] is True
    assert extra["capabilities"]["json_schema"] is True
    assert extra["capability_sources"]["chat"] == "model"
    assert extra["capability_sources"]["tools"] == "gateway"
    assert extra["capability_sources"]["json_schema"] == "gateway"
    assert extra["context_window"] == 8192
    assert extra["languages"] == ["en"]
    deployment = extra["deployments"][0]
    assert deployment["provider"] == "llamacpp"
    assert deployment["region"] == "local"
    assert deployment["price_per_1m_tokens_usd"] == {"input": "0", "output": "0"}
    assert deployment["data_policy"]["retention_days"] == 0


def test_retrieve_by_id_and_by_alias(client: openai.OpenAI) -> None:
    assert client.models.retrieve("smollm2-135m-instruct").id == "smollm2-135m-instruct"
    assert client.models.retrieve("smollm2").id == "smollm2-135m-instruct"


def test_retrieve_unknown_model_is_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("no-such-model")
    assert caught.value.code == "model_not_found"
