"""The Azure SDKs, unmodified, against the live gateway: azure-ai-inference and AzureOpenAI."""

from __future__ import annotations

import httpx
import openai
import pytest
from azure.ai.inference import ChatCompletionsClient
from azure.ai.inference.models import (
    ChatCompletionsNamedToolChoice,
    ChatCompletionsNamedToolChoiceFunction,
    ChatCompletionsToolDefinition,
    FunctionDefinition,
    JsonSchemaFormat,
    SystemMessage,
    UserMessage,
)
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    ResourceNotFoundError,
)

from tests.support.gateway import GatewayProcess

API_VERSION = "2024-05-01-preview"


@pytest.fixture()
def inference(gateway: GatewayProcess) -> ChatCompletionsClient:
    return ChatCompletionsClient(
        endpoint=f"{gateway.base_url}/models",
        credential=AzureKeyCredential(gateway.admin_key or ""),
        retry_total=0,
    )


def test_complete_without_a_model_uses_the_endpoint_default(
    inference: ChatCompletionsClient,
) -> None:
    result = inference.complete(
        messages=[SystemMessage("Be brief."), UserMessage("Say hello.")],
        max_tokens=12,
        temperature=0,
    )
    assert result.model == "smollm2-135m-instruct"
    assert result.choices[0].message.content
    assert result.usage.completion_tokens > 0


def test_model_info_names_the_default_model(inference: ChatCompletionsClient) -> None:
    info = inference.get_model_info()
    assert info.model_name == "smollm2-135m-instruct"
    assert info.model_type == "chat_completion"
    assert info.model_provider_name == "HuggingFaceTB"


def test_stream_is_strict_sse_the_azure_parser_accepts(inference: ChatCompletionsClient) -> None:
    updates = list(
        inference.complete(
            messages=[UserMessage("Count to three.")], max_tokens=16, temperature=0, stream=True
        )
    )
    text = "".join(u.choices[0].delta.content or "" for u in updates if u.choices)
    assert text


def test_json_schema_and_named_tool_through_the_azure_sdk(inference: ChatCompletionsClient) -> None:
    schema = {
        "type": "object",
        "properties": {"colour": {"enum": ["red", "green", "blue"]}},
        "required": ["colour"],
        "additionalProperties": False,
    }
    result = inference.complete(
        messages=[UserMessage("Pick a colour.")],
        response_format=JsonSchemaFormat(name="pick", schema=schema, strict=True),
        max_tokens=40,
    )
    assert result.choices[0].message.content.replace(" ", "").startswith('{"colour":')
    tool = ChatCompletionsToolDefinition(
        function=FunctionDefinition(
            name="get_weather",
            parameters={
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        )
    )
    called = inference.complete(
        messages=[UserMessage("Weather in Paris?")],
        tools=[tool],
        tool_choice=ChatCompletionsNamedToolChoice(
            function=ChatCompletionsNamedToolChoiceFunction(name="get_weather")
        ),
        max_tokens=60,
        # Greedy, as the other calls here: sampled, SmolLM2 sometimes pads the arguments until
        # max_tokens and the call ends with 'length'.
        temperature=0,
    )
    assert called.choices[0].finish_reason == "tool_calls"
    assert called.choices[0].message.tool_calls[0].function.name == "get_weather"


def test_extra_parameters_error_drop_and_pass_through(
    inference: ChatCompletionsClient, gateway: GatewayProcess
) -> None:
    url = f"{gateway.base_url}/models/chat/completions?api-version={API_VERSION}"
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "top_k": 5}
    key = {"api-key": gateway.admin_key or ""}
    refused = httpx.post(url, json=body, headers={**key, "extra-parameters": "error"}, timeout=60)
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "top_k"
    dropped = httpx.post(url, json=body, headers={**key, "extra-parameters": "drop"}, timeout=60)
    assert dropped.status_code == 200
    assert dropped.headers["x-modelyard-dropped-parameters"] == "top_k"
    # The SDK's `model_extras` are sent with `extra-parameters: pass-through`; the local engine
    # honours top_k, so it is passed on rather than refused.
    passed = inference.complete(
        messages=[UserMessage("hi")], max_tokens=4, model_extras={"top_k": 5}
    )
    assert passed.choices[0].finish_reason in ("stop", "length")


def test_unknown_api_version_lists_the_supported_ones(gateway: GatewayProcess) -> None:
    response = httpx.post(
        f"{gateway.base_url}/models/chat/completions?api-version=1999-01-01",
        json={"messages": [{"role": "user", "content": "hi"}]},
        headers={"api-key": gateway.admin_key or ""},
    )
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert "1999-01-01" in message and API_VERSION in message
    assert "retry-after" not in response.headers


def test_azure_sdk_errors_are_its_own_exception_classes(gateway: GatewayProcess) -> None:
    wrong = ChatCompletionsClient(
        endpoint=f"{gateway.base_url}/models", credential=AzureKeyCredential("nope"), retry_total=0
    )
    with pytest.raises(ClientAuthenticationError):
        wrong.complete(messages=[UserMessage("hi")])
    right = ChatCompletionsClient(
        endpoint=f"{gateway.base_url}/models",
        credential=AzureKeyCredential(gateway.admin_key or ""),
        retry_total=0,
    )
    with pytest.raises(ResourceNotFoundError) as missing:
        right.complete(messages=[UserMessage("hi")], model="no-such-model")
    assert "no-such-model" in str(missing.value)
    assert missing.value.error is not None and missing.value.error.code == "model_not_found"


def test_azure_openai_client_uses_the_path_deployment(gateway: GatewayProcess) -> None:
    client = openai.AzureOpenAI(
        azure_endpoint=gateway.base_url,
        api_key=gateway.admin_key,
        api_version="2024-10-21",
        max_retries=0,
    )
    completion = client.chat.completions.create(
        model="smollm2-local",
        messages=[{"role": "user", "content": "Say hi."}],
        max_tokens=8,
        temperature=0,
    )
    assert completion.model == "smollm2-135m-instruct"
    assert completion.choices[0].message.content
    chunks = list(
        client.chat.completions.create(
            model="smollm2",
            messages=[{"role": "user", "content": "Say hi."}],
            max_tokens=8,
            stream=True,
        )
    )
    assert any(c.choices and c.choices[0].delta.content for c in chunks)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="ghost", messages=[{"role": "user", "content": "hi"}])
