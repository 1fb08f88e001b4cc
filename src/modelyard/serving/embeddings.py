"""The embeddings use-case: resolve the model, check it embeds, let its provider embed, shape
the answer in the encoding the client asked for (the openai SDK asks for base64 by default)."""

from __future__ import annotations

from modelyard.auth.principal import Principal
from modelyard.catalog.cards import Capability
from modelyard.catalog.catalog import Catalog
from modelyard.errors import CapabilityUnavailable, ModelNotFound
from modelyard.policy.access import AccessPolicy
from modelyard.protocol.chat_response import JsonObject
from modelyard.protocol.embeddings import EmbeddingsRequest, embeddings_response
from modelyard.providers.registry import ProviderRegistry


class EmbeddingsService:
    def __init__(self, catalog: Catalog, providers: ProviderRegistry, access: AccessPolicy) -> None:
        self._catalog = catalog
        self._providers = providers
        self._access = access

    async def embed(
        self,
        request: EmbeddingsRequest,
        principal: Principal,
        request_id: str,
        deployment_id: str | None = None,
    ) -> JsonObject:
        resolution = self._catalog.resolve(request.model)
        card = resolution.card
        self._access.require_model(principal, card.id)
        if not card.supports(Capability.EMBEDDINGS):
            raise CapabilityUnavailable(
                f"The model '{card.id}' does not produce embeddings.", param="model"
            )
        candidates = [d for d in resolution.deployments if deployment_id in (None, d.id)]
        if not candidates:
            raise ModelNotFound(f"The model '{request.model}' has no deployment.", param="model")
        deployment = candidates[0]
        result = await self._providers.for_deployment(deployment).embed(request, card, deployment)
        return embeddings_response(
            f"emb-{request_id}",
            card.id,
            result.vectors,
            result.prompt_tokens,
            request.encoding_format,
        )
