"""The chat use-case: from a validated request and a Principal to an admitted generation.

`open_chat` does everything that can fail with a clean HTTP status before any output exists:
resolve the name (a model or a route), check access and capabilities, derive the output
contract, let the router plan the deployments to try (`routing/router.py`), admit the request,
and run attempts until one has output in hand (`attempts.py`). The returned `ChatRun` (see
`chat_run.py`) then yields one completion or chunks.
"""

from __future__ import annotations

import time
from functools import partial

import orjson

from modelyard.auth.principal import Principal
from modelyard.catalog.cards import Capability, Deployment, ModelCard
from modelyard.errors import (
    CapabilityUnavailable,
    InvalidParameter,
    InvalidRequest,
)
from modelyard.policy.access import AccessPolicy
from modelyard.protocol.chat import ChatCompletionRequest, ImagePart, UserMessage
from modelyard.routing.router import Router
from modelyard.serving.admission import Admissions
from modelyard.serving.attempts import Attempts
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
        router: Router,
        max_choices: int,
        access: AccessPolicy,
        admissions: Admissions,
        timeout_s: float,
    ) -> None:
        self._router = router
        self._max_choices = max_choices
        self._access = access
        self._admissions = admissions
        # The longest a request may take, attempts and pauses between them included.
        self._timeout_s = timeout_s

    async def open_chat(
        self,
        request: ChatCompletionRequest,
        principal: Principal,
        request_id: str,
        deployment_id: str | None = None,
        timeout_s: float | None = None,
    ) -> ChatRun:
        """`deployment_id` pins one deployment (Azure OpenAI paths name it); otherwise the
        router plans over the model's deployments or the route's candidates. `timeout_s`: the
        caller's own deadline, within the gateway's."""
        started = time.monotonic()
        target, card, reachable = self._router.target(request.model, deployment_id)
        project = self._access.require_model(principal, target)
        self._check_capabilities(request, card, reachable)
        contract = contract_for(request)
        _check_contract_capabilities(contract, card, reachable)
        caller = principal.key_id or principal.subject
        # Sticky arms follow the end user an app names in `user`, within its key.
        sticker = caller if request.user is None else f"{caller}\0{request.user}"
        plan = self._router.plan(
            request, contract.required_capabilities(), project, sticker, deployment_id
        )
        asked = request.requested_max_tokens()
        lifecycle = await self._admissions.admit(
            principal,
            project,
            plan.arm.card.id,
            [
                (a.deployment, (asked or a.card.max_output_tokens) * request.choice_count())
                for a in plan.attempts
            ],
            request_id,
            chat_prompt_bound(request),
        )
        lifecycle.route = plan.route.id if plan.route is not None else None
        lifecycle.arm = plan.arm.deployment.id
        lifecycle.route_reason = plan.reason
        timeout = min(timeout_s or self._timeout_s, self._timeout_s)
        attempts = Attempts(
            plan,
            lifecycle,
            request,
            contract,
            caller,
            deadline=started + timeout,
            admit_deployment=partial(
                self._admit_fallback,
                plan.arm.deployment.id,
                plan.requirements.prompt_tokens + plan.requirements.output_tokens,
            ),
        )
        try:
            opened = await attempts.open_next()
        except BaseException as exc:
            lifecycle.end(ending_for(exc))
            raise
        return ChatRun(
            completion_id=f"chatcmpl-{request_id}",
            created=int(time.time()),
            request=request,
            contract=contract,
            attempts=attempts,
            current=opened,
            lifecycle=lifecycle,
        )

    async def _admit_fallback(
        self, admitted_id: str, tokens: int, deployment: Deployment, attempt_id: str
    ) -> bool:
        if deployment.id == admitted_id:  # its windows were taken at admission
            return True
        return await self._admissions.admit_deployment(deployment, attempt_id, tokens)

    def _check_capabilities(
        self, request: ChatCompletionRequest, card: ModelCard, reachable: frozenset[Capability]
    ) -> None:
        if not card.supports(Capability.CHAT):
            raise InvalidRequest(
                f"The model '{card.id}' does not support chat completions.", param="model"
            )
        if request.stream and not _reaches(card, reachable, Capability.STREAMING):
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
        if not _reaches(card, reachable, Capability.VISION):
            for m_index, message in enumerate(request.messages):
                if isinstance(message, UserMessage) and isinstance(message.content, list):
                    for p_index, part in enumerate(message.content):
                        if isinstance(part, ImagePart):
                            raise InvalidParameter(
                                f"The model '{card.id}' does not accept image input.",
                                param=f"messages[{m_index}].content[{p_index}]",
                            )


def _reaches(card: ModelCard, reachable: frozenset[Capability], capability: Capability) -> bool:
    return card.supports(capability) or capability in reachable


def _check_contract_capabilities(
    contract: OutputContract, card: ModelCard, reachable: frozenset[Capability]
) -> None:
    for capability in sorted(contract.required_capabilities()):
        if not _reaches(card, reachable, capability):
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
