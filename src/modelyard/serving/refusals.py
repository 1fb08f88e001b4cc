"""What a client sees of the counter store's answers: the error of a refusal, and the
`x-ratelimit-*` headers of an admitted request (OpenAI's names, the tightest window of each
kind)."""

from __future__ import annotations

from modelyard.errors import InsufficientQuota, RateLimited
from modelyard.limits.keys import BudgetKey, RateKey
from modelyard.limits.values import Admitted, LeaseRefused, OverBudget, Throttled, WindowState
from modelyard.money import dollars


def refusal(result: LeaseRefused | Throttled | OverBudget) -> RateLimited | InsufficientQuota:
    if isinstance(result, LeaseRefused):
        return RateLimited(
            f"Too many requests in flight for this key (at most {result.cap} at once).",
            retry_after_s=1,
        )
    if isinstance(result, Throttled):
        retry = result.retry_after_s
        return RateLimited(
            f"Rate limit reached: {result.reason}.",
            retry_after_s=max(1, int(retry + 0.999)) if retry is not None else 60,
            headers=_throttled_headers(result),
        )
    return InsufficientQuota(
        f"Budget exceeded: {_budget_words(result)}. Remaining: "
        f"${dollars(result.remaining_micros)}; this request may cost up to "
        f"${dollars(result.requested_micros)}.",
        retry_after_s=60,
        headers={"x-modelyard-budget-remaining-usd": dollars(result.remaining_micros)},
    )


def refusal_reason(result: LeaseRefused | Throttled | OverBudget) -> str:
    """The limit that refused, as the refusals metric names it (a bounded set)."""
    if isinstance(result, LeaseRefused):
        return "concurrency"
    if isinstance(result, Throttled):
        rate = RateKey.parse(result.key)
        return f"{rate.kind}_{rate.scope}" if rate is not None else "rate"
    budget = BudgetKey.parse(result.key)
    return f"budget_{budget.scope}" if budget is not None else "budget"


def ratelimit_headers(admitted: Admitted) -> dict[str, str]:
    # The tightest window of each kind is what a client should pace itself by.
    tightest: dict[str, WindowState] = {}
    for window in admitted.windows:
        rate = RateKey.parse(window.key)
        if rate is None:
            continue
        current = tightest.get(rate.kind)
        if current is None or window.remaining < current.remaining:
            tightest[rate.kind] = window
    headers: dict[str, str] = {}
    for kind, name in (("rpm", "requests"), ("tpm", "tokens")):
        state = tightest.get(kind)
        if state is not None:
            headers[f"x-ratelimit-limit-{name}"] = str(state.limit)
            headers[f"x-ratelimit-remaining-{name}"] = str(state.remaining)
            headers[f"x-ratelimit-reset-{name}"] = f"{state.reset_after_s:.3f}s"
    return headers


def _budget_words(over: OverBudget) -> str:
    budget = BudgetKey.parse(over.key)
    if budget is None:
        return f"budget '{over.key}'"
    return f"the {budget.scope} '{budget.scope_id}' {budget.period} budget ({budget.window})"


def _throttled_headers(throttled: Throttled) -> dict[str, str]:
    rate = RateKey.parse(throttled.key)
    name = "requests" if rate is not None and rate.kind == "rpm" else "tokens"
    return {
        f"x-ratelimit-limit-{name}": str(throttled.limit),
        f"x-ratelimit-remaining-{name}": str(throttled.remaining),
    }
