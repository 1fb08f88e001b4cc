"""The chat use-case: from a validated request and a Principal to an admitted generation.

`open_chat` does everything that can fail with a clean HTTP status (resolve the model, derive
the output contract, check capabilities, let the provider admit the request) before any output
exists. The returned `ChatRun` (see `chat_run.py`) then yields one completion or chunks.
"""

from __future__ import annotations

import time

import orjson

from modelyard.auth.principal import Principal
from modelyard.catalog.cards import Capability, ModelCard
from modelyard.catalog.catalog import Catalog
from modelyard.errors import (
    CapabilityUnavailable,
    InvalidParameter,
    InvalidRequest,
    ModelNotFound,
)
from modelyard.policy.access import AccessPolicy
from modelyard.protocol.chat import ChatCompletionRequest, ImagePart, UserMessage
from modelyard.providers.registry import ProviderRegistry
from modelyard.serving.admission import Admissions
from modelyard.serving.chat_run import ChatRun
from modelyard.serving.lifecycle import ending_for
from modelyard.structured.contract import OutputContract, contract_for

# Text the gateway itself may add to a prompt (tool-calling instructions, chat template tokens).
GATEWAY_PROMPT_ALLOWANCE = 1024


def chat_prompt_bound(request: ChatCompletionRequest) -> int:
    """An upper bound on prompt tokens without a tokenizer: every token is at least one byte of
    the serialized messages, tools and schema, plus what the gateway adds."""
    parts = request.model_dump(include={"messages", "tools", "response_format"}, mode="json")
    return len(orjson.dumps(parts)) + GATEWAY_PROMPT_ALLOWANCE


class ChatService:
    def __init__(
        self,
        catalog: Catalog,
        providers: ProviderRegistry,
        max_choices: int,
        access: AccessPolicy,
        admissions: Admissions,
    ) -> None:
        self._catalog = catalog
        self._providers = providers
        self._max_choices = max_choices
        self._access = access
        self._admissions = admissions

    async def open_chat(
        self,
        request: ChatCompletionRequest,
        principal: Principal,
        request_id: str,
        deployment_id: str | None = None,
    ) -> ChatRun:
        """`deployment_id` pins one deployment (Azure OpenAI paths name it); otherwise the
        model's deployments are considered."""
        resolution = self._catalog.resolve(request.model)
        card = resolution.card
        project = self._access.require_model(principal, card.id)
        self._check_capabilities(request, card)
        contract = contract_for(request)
        candidates = [d for d in resolution.deployments if deployment_id in (None, d.id)]
        if not candidates:
            raise ModelNotFound(f"The model '{request.model}' has no deployment.", param="model")
        # A deployment whose engine is down is passed over while another can serve.
        deployment = next(
            (d for d in candidates if self._providers.for_deployment(d).healthy(d.id)),
            candidates[0],
        )
        provider = self._providers.chat(deployment)
        _check_contract_capabilities(contract, card, provider.enforced_capabilities())
        max_output = request.requested_max_tokens() or card.max_output_tokens
        lifecycle = await self._admissions.admit(
            principal,
            project,
            card.id,
            deployment,
            request_id,
            chat_prompt_bound(request),
            max_output * request.choice_count(),
        )
        lifecycle.route_reason = "the only deployment of this model"
        caller = principal.key_id or principal.subject
        try:
            stream = await provider.open_chat(request, card, deployment, contract, caller)
        except BaseException as exc:
            lifecycle.end(ending_for(exc))
            raise
        return ChatRun(
            completion_id=f"chatcmpl-{request_id}",
            created=int(time.time()),
            card=card,
            deployment=deployment,
            request=request,
            contract=contract,
            provider=provider,
            caller=caller,
            stream=lifecycle.attempt(stream),
            lifecycle=lifecycle,
        )

    def _check_capabilities(self, request: ChatCompletionRequest, card: ModelCard) -> None:
        if not card.supports(Capability.CHAT):
            raise InvalidRequest(
                f"The model '{card.id}' does not support chat completions.", param="model"
            )
        if request.stream and not card.supports(Capability.STREAMING):
            raise InvalidParameter(
                f"The model '{card.id}' does not support streaming.", param="stream"
            )
        if request.stream_options is not None and not request.stream:
            raise InvalidParameter(
                "stream_options is only allowed when stream is true.", param="stream_options"
            )
        if request.choice_count() > self._max_choices:
            raise InvalidParameter(
                f"n must be at most {self._max_choices} on this gateway; got {request.n}.",
                param="n",
            )
        if not card.supports(Capability.VISION):
            for m_index, message in enumerate(request.messages):
                if isinstance(message, UserMessage) and isinstance(message.content, list):
                    for p_index, part in enumerate(message.content):
                        if isinstance(part, ImagePart):
                            raise InvalidParameter(
                                f"The model '{card.id}' does not accept image input.",
                                param=f"messages[{m_index}].content[{p_index}]",
                            )


def _check_contract_capabilities(
    contract: OutputContract, card: ModelCard, enforced: frozenset[Capability]
) -> None:
    for capability in sorted(contract.required_capabilities()):
        if not card.supports(capability) and capability not in enforced:
            raise CapabilityUnavailable(
                f"The model '{card.id}' does not support '{capability}' on its deployment, "
                f"and the gateway cannot provide it there.",
                param=_CAPABILITY_PARAMS[capability],
            )


_CAPABILITY_PARAMS = {
    Capability.TOOLS: "tools",
    Capability.JSON_OUTPUT: "response_format",
    Capability.JSON_SCHEMA: "response_format",
}
