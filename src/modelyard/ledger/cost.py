"""Cost in integer micro-dollars, never floats: prices are per 1M tokens, in micro-dollars, so a
request's cost is a sum of products divided by a million, rounded up (a fraction of a micro-dollar
is charged as one, so many tiny requests never add up to less than their true cost)."""

from __future__ import annotations

from modelyard.catalog.cards import Price
from modelyard.money import MICROS_PER_DOLLAR
from modelyard.protocol.generation import Usage

# The response header that says what a request cost, in exact decimal US dollars.
COST_HEADER = "x-modelyard-cost-usd"


def _ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


def cost_micros(price: Price, usage: Usage) -> int:
    cached = min(usage.cached_prompt_tokens, usage.prompt_tokens)
    return _ceil_div(
        (usage.prompt_tokens - cached) * price.input_per_1m_micros
        + cached * price.cached_input_per_1m_micros
        + usage.completion_tokens * price.output_per_1m_micros,
        MICROS_PER_DOLLAR,
    )


def worst_case_micros(price: Price, prompt_tokens_bound: int, max_output_tokens: int) -> int:
    """The most a request can cost: every prompt token uncached, every allowed output token."""
    return _ceil_div(
        prompt_tokens_bound * price.input_per_1m_micros
        + max_output_tokens * price.output_per_1m_micros,
        MICROS_PER_DOLLAR,
    )
