"""The embeddings use-case: resolve the model, check it embeds, let its provider embed, shape
the answer in the encoding the client asked for (the openai SDK asks for base64 by default)."""

from __future__ import annotations

from modelyard.auth.principal import Principal
from modelyard.catalog.cards import Capability
from modelyard.catalog.catalog import Catalog
from modelyard.errors import CapabilityUnavailable, ModelNotFound, ModelyardError
from modelyard.policy.access import AccessPolicy
from modelyard.protocol.chat_response import JsonObject
from modelyard.protocol.embeddings import EmbeddingsRequest, embeddings_response
from modelyard.protocol.generation import Usage
from modelyard.providers.registry import ProviderRegistry
from modelyard.serving.admission import Admissions
from modelyard.serving.lifecycle import Completed, Failed, ending_for


class EmbeddingsService:
    def __init__(
        self,
        catalog: Catalog,
        providers: ProviderRegistry,
        access: AccessPolicy,
        admissions: Admissions,
    ) -> None:
        self._catalog = catalog
        self._providers = providers
        self._access = access
        self._admissions = admissions

    async def embed(
        self,
        request: EmbeddingsRequest,
        principal: Principal,
        request_id: str,
        deployment_id: str | None = None,
    ) -> tuple[JsonObject, dict[str, str]]:
        """The response body and its headers (deployment, rate limits, cost)."""
        resolution = self._catalog.resolve(request.model)
        card = resolution.card
        project = self._access.require_model(principal, card.id)
        if not card.supports(Capability.EMBEDDINGS):
            raise CapabilityUnavailable(
                f"The model '{card.id}' does not produce embeddings.", param="model"
            )
        candidates = [d for d in resolution.deployments if deployment_id in (None, d.id)]
        if not candidates:
            raise ModelNotFound(f"The model '{request.model}' has no deployment.", param="model")
        deployment = candidates[0]
        lifecycle = await self._admissions.admit(
            principal, project, card.id, [(deployment, 0)], request_id, input_bound(request)
        )
        lifecycle.route_reason = "the only deployment of this model"
        lifecycle.operation = "embeddings"
        attempt = lifecycle.begin_attempt(deployment, card.id)
        usage = Usage(0, 0)
        try:
            result = await self._providers.embedding(deployment).embed(request, card, deployment)
            usage = Usage(result.prompt_tokens, 0)
        except ModelyardError as error:
            lifecycle.attempt_failed(attempt, error, ended=False)
            lifecycle.end(Failed(error))
            raise
        except BaseException as exc:
            lifecycle.end(ending_for(exc))
            raise
        finally:
            lifecycle.attempt_reported(attempt, usage)
        lifecycle.end(Completed())
        body = embeddings_response(
            f"emb-{request_id}",
            card.id,
            result.vectors,
            result.prompt_tokens,
            request.encoding_format,
        )
        return body, {**lifecycle.response_headers(), **lifecycle.cost_header()}


def input_bound(request: EmbeddingsRequest) -> int:
    """An upper bound on input tokens: a byte per token for text, the ids themselves for ids."""
    inputs = request.input if isinstance(request.input, list) else [request.input]
    total = 0
    for item in inputs:
        if isinstance(item, str):
            total += len(item.encode("utf-8")) + 2
        elif isinstance(item, list):
            total += len(item)
        else:
            total += 1
    return total
