"""Counting a chat request's prompt tokens without generating (`/v1/messages/count_tokens`).

The name is resolved and access checked as for a generation (`serving/chat.py`), and the router
plans the deployments that would serve it; the first of them counts. A provider that can count
exactly (a `TokenCounter`: the local engine tokenizes the prompt it would evaluate, Anthropic
asks its upstream) answers exactly; for the others the answer is the gateway's estimate
(`protocol/chat.py` `estimate_prompt_tokens`, about four characters a token). Nothing is
admitted or billed: no lease, no rate window, no usage record.
"""

from __future__ import annotations

from modelyard.auth.principal import Principal
from modelyard.catalog.cards import Capability
from modelyard.errors import InvalidRequest
from modelyard.policy.access import AccessPolicy
from modelyard.protocol.chat import ChatCompletionRequest, estimate_prompt_tokens
from modelyard.providers.base import TokenCounter
from modelyard.routing.router import Router
from modelyard.structured.contract import contract_for


async def count_prompt_tokens(
    router: Router, access: AccessPolicy, request: ChatCompletionRequest, principal: Principal
) -> int:
    target, card, _ = router.target(request.model)
    project = access.require_model(principal, target)
    if not card.supports(Capability.CHAT):
        raise InvalidRequest(f"The model '{card.id}' does not support chat.", param="model")
    contract = contract_for(request)
    caller = principal.key_id or principal.subject
    plan = router.plan(request, contract.required_capabilities(), project, caller)
    first = plan.arm
    if isinstance(first.provider, TokenCounter):
        return await first.provider.count_prompt_tokens(
            request, first.card, first.deployment, contract
        )
    return estimate_prompt_tokens(request)
