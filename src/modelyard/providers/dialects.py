"""How OpenAI-shaped upstreams differ: where to send a request, how to present the credential,
and which body fields they refuse. OpenAI and its compatibles (vLLM, Ollama, llama.cpp server,
TGI, Mistral) share one dialect; Azure OpenAI and Azure AI Inference/Foundry have theirs."""

from __future__ import annotations

from typing import Any, Protocol

from modelyard.catalog.cards import Upstream


class Dialect(Protocol):
    def url(self, upstream: Upstream, operation: str) -> str: ...

    def auth_headers(self, secret: str) -> dict[str, str]: ...

    def adapt_chat_body(self, body: dict[str, Any], stream: bool, upstream: Upstream) -> None: ...


class OpenAIDialect:
    def url(self, upstream: Upstream, operation: str) -> str:
        return f"{upstream.base_url}/{operation}"

    def auth_headers(self, secret: str) -> dict[str, str]:
        return {"authorization": f"Bearer {secret}"}

    def adapt_chat_body(self, body: dict[str, Any], stream: bool, upstream: Upstream) -> None:
        if stream:
            body["stream_options"] = {"include_usage": True}


class AzureDialect:
    """Azure OpenAI addresses a deployment in the path; Azure AI Inference names the model in the
    body under /models. Both take `api-key` and an `api-version` query parameter."""

    def url(self, upstream: Upstream, operation: str) -> str:
        if upstream.flavor == "azure_openai":
            path = f"openai/deployments/{upstream.model}/{operation}"
        else:
            path = f"models/{operation}"
        return f"{upstream.base_url}/{path}?api-version={upstream.api_version}"

    def auth_headers(self, secret: str) -> dict[str, str]:
        return {"api-key": secret}

    def adapt_chat_body(self, body: dict[str, Any], stream: bool, upstream: Upstream) -> None:
        # Azure AI Inference refuses stream_options as an extra parameter and puts usage on the
        # last chunk unasked; Azure OpenAI needs to be asked.
        body.pop("stream_options", None)
        if stream and upstream.flavor == "azure_openai":
            body["stream_options"] = {"include_usage": True}
