"""The chat use-case: from a validated request and a Principal to an admitted generation.

`open_chat` does everything that can fail with a clean HTTP status (resolve the model, derive
the output contract, check capabilities, let the provider admit the request) before any output
exists. The returned `ChatRun` (see `chat_run.py`) then yields one completion or chunks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from functools import partial

from modelyard.auth.directory import ProjectRecord
from modelyard.auth.principal import Principal
from modelyard.catalog.cards import Capability, ModelCard
from modelyard.catalog.catalog import Catalog
from modelyard.errors import (
    CapabilityUnavailable,
    InvalidParameter,
    InvalidRequest,
    ModelNotFound,
    ModelyardError,
)
from modelyard.observability.usage_meter import UsageMeter
from modelyard.policy.access import AccessPolicy
from modelyard.protocol.chat import ChatCompletionRequest, ImagePart, UserMessage
from modelyard.protocol.chat_response import JsonObject
from modelyard.providers.registry import ProviderRegistry
from modelyard.serving.admission import AdmissionControl, chat_prompt_bound
from modelyard.serving.chat_run import ChatRun
from modelyard.serving.content_log import ContentLog, ContentRecord
from modelyard.structured.contract import OutputContract, contract_for


class ChatService:
    def __init__(
        self,
        catalog: Catalog,
        providers: ProviderRegistry,
        max_choices: int,
        meter: UsageMeter,
        access: AccessPolicy,
        content_log: ContentLog,
        admission: AdmissionControl,
    ) -> None:
        self._admission = admission
        self._catalog = catalog
        self._providers = providers
        self._max_choices = max_choices
        self._meter = meter
        self._access = access
        self._content_log = content_log

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
        provider = self._providers.for_deployment(deployment)
        _check_contract_capabilities(contract, card, provider.enforced_capabilities())
        caller = principal.key_id or principal.subject
        reopen = partial(provider.open_chat, request, card, deployment, contract, caller)
        max_output = request.requested_max_tokens() or card.max_output_tokens
        admission = await self._admission.admit(
            principal,
            project.id,
            card.id,
            deployment,
            request_id,
            chat_prompt_bound(request),
            max_output * request.choice_count(),
        )
        admission.route_reason = "the only deployment of this model"
        try:
            stream = await reopen()
        except ModelyardError as error:
            admission.over(error.status)
            raise
        except asyncio.CancelledError:
            admission.over(499, client_left=True)
            raise
        except BaseException:
            admission.over(500)
            raise
        return ChatRun(
            completion_id=f"chatcmpl-{request_id}",
            created=int(time.time()),
            card=card,
            deployment=deployment,
            route_reason=admission.route_reason,
            request=request,
            contract=contract,
            stream=stream,
            reopen=reopen,
            meter=self._meter,
            admission=admission,
            keep_content=self._content_keeper(project, request, request_id, card.id),
        )

    def _content_keeper(
        self, project: ProjectRecord, request: ChatCompletionRequest, request_id: str, model: str
    ) -> Callable[[list[JsonObject]], None] | None:
        """Only for projects that opted in to content logging; None (keep nothing) otherwise."""
        days = project.content_retention_days
        if days is None:
            return None

        def keep(outputs: list[JsonObject]) -> None:
            prompt = [message.model_dump(mode="json") for message in request.messages]
            self._content_log.submit(
                ContentRecord(project.id, request_id, model, prompt, outputs, days)
            )

        return keep

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
