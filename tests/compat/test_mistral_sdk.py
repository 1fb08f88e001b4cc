"""The mistralai SDK, unmodified, against /v1 (its server_url is the bare gateway address)."""

from __future__ import annotations

import json

import pytest
from mistralai.client import Mistral
from pydantic import BaseModel

from tests.support.gateway import GatewayProcess


@pytest.fixture()
def mistral(gateway: GatewayProcess) -> Mistral:
    return Mistral(server_url=gateway.base_url, api_key=gateway.admin_key)


def test_complete_returns_every_field_the_sdk_requires(mistral: Mistral) -> None:
    result = mistral.chat.complete(
        model="smollm2",
        messages=[{"role": "user", "content": "Say hello."}],
        max_tokens=10,
        temperature=0,
        random_seed=3,
        safe_prompt=True,
    )
    assert result.id and result.object and isinstance(result.created, int)
    assert result.choices[0].message.content
    assert result.usage.total_tokens > 0


def test_stream_yields_chunks_with_a_final_finish_reason(mistral: Mistral) -> None:
    events = list(
        mistral.chat.stream(
            model="smollm2",
            messages=[{"role": "user", "content": "Count to three."}],
            max_tokens=12,
        )
    )
    text = "".join(str(e.data.choices[0].delta.content or "") for e in events)
    assert text
    assert events[-1].data.choices[0].finish_reason in ("stop", "length")
    assert events[-1].data.usage is not None


def test_json_mode_and_parse(mistral: Mistral) -> None:
    result = mistral.chat.complete(
        model="smollm2",
        messages=[{"role": "user", "content": "Give a JSON object describing a cat."}],
        response_format={"type": "json_object"},
        max_tokens=200,
        temperature=0,
    )
    assert isinstance(json.loads(str(result.choices[0].message.content)), dict)

    class City(BaseModel):
        name: str
        country: str

    parsed = mistral.chat.parse(
        response_format=City,
        model="smollm2",
        messages=[{"role": "user", "content": "Name a city."}],
        max_tokens=100,
        temperature=0,
    )
    city = parsed.choices[0].message.parsed
    assert isinstance(city, City) and city.name


def test_models_list_has_the_fields_mistral_validates(mistral: Mistral) -> None:
    models = mistral.models.list()
    ids = [model.id for model in models.data or []]
    assert "smollm2-135m-instruct" in ids


def test_errors_surface_as_sdk_errors_with_the_body(mistral: Mistral) -> None:
    from mistralai.client.errors import SDKError

    with pytest.raises(SDKError) as caught:
        mistral.chat.complete(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    assert "model_not_found" in str(caught.value)
