"""The dry run of an evaluation: per model, how many requests it would send and the most they
could cost at catalog prices, before anything is spent.

The bound takes, for every case, the dearest deployment behind the name (a route may answer with
any of its candidates), the prompt's estimated tokens and every output token the case allows (its
`max_tokens`, else the model's maximum output). Judge calls are not included: their prompts hold
answers not written yet.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import ValidationError

from modelyard.catalog.cards import Price
from modelyard.evals.suite import Case
from modelyard.ledger.cost import worst_case_micros
from modelyard.money import to_micros
from modelyard.protocol.chat import (
    ChatCompletionRequest,
    estimate_prompt_tokens,
    estimate_text_tokens,
)

# Used when the catalog entry gives no maximum output.
FALLBACK_MAX_OUTPUT_TOKENS = 4096


@dataclass(frozen=True)
class ModelEstimate:
    model: str
    requests: int
    # None when the name is not in the catalog the caller may see.
    max_cost_micros: int | None
    judge_calls: int = 0


def estimate_run(
    cases: Sequence[Case], models: Sequence[str], repeats: int, catalog: Sequence[dict[str, Any]]
) -> list[ModelEstimate]:
    """`catalog` is the `data` of GET /v1/models (models and routes, with their deployments)."""
    judged = sum(1 for case in cases if case.expect.scorer == "judge") * repeats
    estimates = []
    for model in models:
        entry = _entry_named(model, catalog)
        cost = None if entry is None else _max_cost(cases, model, entry) * repeats
        estimates.append(ModelEstimate(model, len(cases) * repeats, cost, judged))
    return estimates


def _entry_named(name: str, catalog: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    for entry in catalog:
        if entry.get("id") == name or name in (entry.get("aliases") or ()):
            return entry
    for entry in catalog:
        # A deployment called by its own id.
        for deployment in entry.get("deployments") or ():
            if deployment.get("id") == name:
                return {**entry, "deployments": [deployment]}
    return None


def _max_cost(cases: Sequence[Case], model: str, entry: dict[str, Any]) -> int:
    prices = [_price(d) for d in entry.get("deployments") or ()]
    if not prices:
        return 0
    max_output = int(entry.get("max_output_tokens") or FALLBACK_MAX_OUTPUT_TOKENS)
    total = 0
    for case in cases:
        prompt = prompt_tokens(case, model)
        output = case.max_tokens or max_output
        total += max(worst_case_micros(price, prompt, output) for price in prices)
    return total


def prompt_tokens(case: Case, model: str) -> int:
    """The messages' estimate, plus the tools and schema the model also reads."""
    body = case.request_body(model)
    try:
        messages = estimate_prompt_tokens(ChatCompletionRequest.model_validate(body))
    except ValidationError:
        # A request the gateway would refuse costs nothing; count its text anyway.
        messages = estimate_text_tokens(orjson.dumps(body["messages"]).decode())
    described = {k: body[k] for k in ("tools", "response_format") if k in body}
    return messages + (estimate_text_tokens(orjson.dumps(described).decode()) if described else 0)


def _price(deployment: dict[str, Any]) -> Price:
    prices = deployment.get("price_per_1m_tokens_usd") or {}
    return Price(
        to_micros(str(prices.get("input", "0"))), to_micros(str(prices.get("output", "0")))
    )
