"""The order in which a route's eligible candidates are tried, one function per strategy.

Each takes the eligible candidates in the route's written order and returns them reordered; the
first is the arm the request goes to, the rest are its fallbacks in order. None of them looks at
requirements or health (the router has already excluded what cannot serve).

- `priority`: as written.
- `weighted`: weighted rendezvous hashing of the caller against each candidate: the same caller
  lands on the same arm for as long as that arm is eligible, arms get callers in proportion to
  their weights, and when an arm drops out only its own callers move. Weight 0 means fallback
  only.
- `least_latency`: the lowest expected time (first token, plus per-token time for the output
  asked for); a candidate not measured yet, or not used for `REMEASURE_AFTER_S`, goes first so
  a recovered deployment is measured again, and now and then (`EXPLORE_SHARE`) a random one does.
- `cheapest`: the lowest expected cost of this request at catalog prices.
- `least_busy`: the fewest requests in flight from this gateway process.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from modelyard.catalog.cards import Deployment
from modelyard.catalog.routes import Strategy
from modelyard.routing.deployment_stats import Fleet

EXPLORE_SHARE = 0.05
REMEASURE_AFTER_S = 30.0
# Output tokens assumed when a request does not say how many it wants.
DEFAULT_OUTPUT_TOKENS = 256


@dataclass(frozen=True)
class Option:
    deployment: Deployment
    weight: int


@dataclass(frozen=True)
class Situation:
    """What a strategy may consider besides the candidates."""

    caller: str
    prompt_tokens: int
    output_tokens: int
    fleet: Fleet
    now: float
    draw: Callable[[], float] = random.random


def order(strategy: Strategy, route_id: str, options: list[Option], at: Situation) -> list[Option]:
    if strategy is Strategy.WEIGHTED:
        return _weighted(route_id, options, at)
    if strategy is Strategy.LEAST_LATENCY:
        return _least_latency(options, at)
    if strategy is Strategy.CHEAPEST:
        return sorted(options, key=lambda o: _expected_cost(o, at))
    if strategy is Strategy.LEAST_BUSY:
        return sorted(options, key=lambda o: at.fleet.of(o.deployment.id).in_flight)
    return list(options)


def expected_cost_micros(deployment: Deployment, prompt_tokens: int, output_tokens: int) -> float:
    price = deployment.price
    output = output_tokens or DEFAULT_OUTPUT_TOKENS
    return (
        prompt_tokens * price.input_per_1m_micros + output * price.output_per_1m_micros
    ) / 1_000_000


def _expected_cost(option: Option, at: Situation) -> float:
    return expected_cost_micros(option.deployment, at.prompt_tokens, at.output_tokens)


def _weighted(route_id: str, options: list[Option], at: Situation) -> list[Option]:
    def score(option: Option) -> float:
        if option.weight <= 0:
            return math.inf
        digest = hashlib.blake2b(
            f"{route_id}\0{at.caller}\0{option.deployment.id}".encode(), digest_size=8
        ).digest()
        # A uniform draw in (0, 1) fixed by caller and candidate; -ln(u)/w is smallest for the
        # arm of this caller, with probability proportional to w across callers.
        uniform = (int.from_bytes(digest, "big") + 1) / (2**64 + 2)
        return -math.log(uniform) / option.weight

    return sorted(options, key=score)


def _least_latency(options: list[Option], at: Situation) -> list[Option]:
    output = at.output_tokens or DEFAULT_OUTPUT_TOKENS

    def expected_s(option: Option) -> float:
        stats = at.fleet.of(option.deployment.id)
        stale = stats.last_used is None or at.now - stats.last_used > REMEASURE_AFTER_S
        if stats.ttft_s is None or stale:
            return -1.0  # measure it (again) first
        return stats.ttft_s + (stats.per_token_s or 0.0) * output

    ranked = sorted(options, key=expected_s)
    if len(ranked) > 1 and at.draw() < EXPLORE_SHARE:
        chosen = ranked.pop(int(at.draw() * len(ranked)) % len(ranked))
        ranked.insert(0, chosen)
    return ranked
