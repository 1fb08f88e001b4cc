"""Build one Provider per upstream kind that the catalog's deployments use, and find the chat or
embedding provider of a deployment."""

from __future__ import annotations

from collections.abc import Callable

from modelyard.catalog.cards import Deployment
from modelyard.catalog.catalog import Catalog
from modelyard.errors import InternalError
from modelyard.providers.base import ChatProvider, EmbeddingProvider, Provider
from modelyard.providers.dialects import AzureDialect, OpenAIDialect
from modelyard.providers.openai_compat import OpenAICompatProvider
from modelyard.providers.transport import UpstreamTransport
from modelyard.settings import Settings


class ProviderRegistry:
    def __init__(self, providers: dict[str, Provider]) -> None:
        self._providers = providers
        # Sorted once: which kinds serve chat and which embeddings.
        self._chat = {k: p for k, p in providers.items() if isinstance(p, ChatProvider)}
        self._embedding = {k: p for k, p in providers.items() if isinstance(p, EmbeddingProvider)}

    def for_deployment(self, deployment: Deployment) -> Provider:
        provider = self._providers.get(deployment.provider)
        if provider is None:  # the catalog loader only admits known kinds
            raise InternalError(f"no provider for deployment '{deployment.id}'")
        return provider

    def chat(self, deployment: Deployment) -> ChatProvider:
        provider = self._chat.get(deployment.provider)
        if provider is None:  # the catalog gives chat capability only to chat providers
            raise InternalError(f"deployment '{deployment.id}' has no chat provider")
        return provider

    def chat_or_none(self, deployment: Deployment) -> ChatProvider | None:
        """The deployment's chat provider, or None when its kind serves no chat. A dict lookup:
        `isinstance` against the runtime-checkable protocol costs about 5 µs on Python 3.11."""
        return self._chat.get(deployment.provider)

    def embedding(self, deployment: Deployment) -> EmbeddingProvider:
        provider = self._embedding.get(deployment.provider)
        if provider is None:
            raise InternalError(f"deployment '{deployment.id}' has no embedding provider")
        return provider

    def all(self) -> list[Provider]:
        return list(self._providers.values())

    def get(self, kind: str) -> Provider | None:
        return self._providers.get(kind)


def build_registry(catalog: Catalog, settings: Settings) -> ProviderRegistry:
    providers: dict[str, Provider] = {}
    local = [
        (deployment, card)
        for card in catalog.cards
        for deployment in catalog.deployments_of(card.id)
        if deployment.provider == "llamacpp"
    ]
    if local:
        # Imported only when needed: llama-cpp-python is an optional extra.
        from modelyard.providers.llamacpp.provider import LlamaCppProvider

        providers["llamacpp"] = LlamaCppProvider(
            local,
            threads=settings.engine_threads,
            queue_depth=settings.engine_queue_depth,
            parallel=settings.engine_parallel,
        )
    embedders = [d for d in catalog.deployments if d.provider == "sentence_transformers"]
    if embedders:
        from modelyard.providers.sentence_transformers import SentenceTransformersProvider

        providers["sentence_transformers"] = SentenceTransformersProvider(embedders)
    for kind, dialect in (("openai_compat", OpenAIDialect()), ("azure", AzureDialect())):
        remote = [d for d in catalog.deployments if d.provider == kind]
        if remote:
            providers[kind] = OpenAICompatProvider(remote, UpstreamTransport(), dialect)
    for kind, build in NATIVE_API_PROVIDERS.items():
        remote = [d for d in catalog.deployments if d.provider == kind]
        if remote:
            providers[kind] = build(remote, UpstreamTransport())
    return ProviderRegistry(providers)


def _anthropic(deployments: list[Deployment], transport: UpstreamTransport) -> Provider:
    from modelyard.providers.anthropic import AnthropicProvider

    return AnthropicProvider(deployments, transport)


def _cohere(deployments: list[Deployment], transport: UpstreamTransport) -> Provider:
    from modelyard.providers.cohere import CohereProvider

    return CohereProvider(deployments, transport)


def _bedrock(deployments: list[Deployment], transport: UpstreamTransport) -> Provider:
    # botocore (SigV4 signing, AWS credentials) is imported only by catalogs that use Bedrock.
    from modelyard.providers.bedrock import BedrockProvider

    return BedrockProvider(deployments, transport)


# Upstreams with an API of their own, each translated to and from the canonical chat request.
NATIVE_API_PROVIDERS: dict[str, Callable[[list[Deployment], UpstreamTransport], Provider]] = {
    "anthropic": _anthropic,
    "cohere": _cohere,
    "bedrock": _bedrock,
}
