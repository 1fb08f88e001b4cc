"""Money: integer micro-dollars (1 USD = 1,000,000 micros), and the one place they are converted
from and to decimal dollar text. No float is ever involved.

Amounts the gateway is given (catalog prices, budgets set through the admin API) are decimals
of dollars; a fraction of a micro-dollar is rounded up, so a price is never cheaper and a budget
never smaller than its owner wrote. Amounts the gateway shows are exact: six decimal places for
costs, budgets and reports, or as few as needed for prices in the catalog.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal

MICROS_PER_DOLLAR = 1_000_000


def to_micros(dollars: Decimal | str) -> int:
    """Micro-dollars of a decimal dollar amount ("0.40", Decimal("12.5")), rounded up."""
    amount = Decimal(dollars) * MICROS_PER_DOLLAR
    return int(amount.to_integral_value(rounding=ROUND_CEILING))


def dollars(micros: int) -> str:
    """Exact dollar text with six decimals: "12.500001", "-0.000002"."""
    sign = "-" if micros < 0 else ""
    whole, fraction = divmod(abs(micros), MICROS_PER_DOLLAR)
    return f"{sign}{whole}.{fraction:06d}"


def price(micros: int) -> str:
    """Exact dollar text with no trailing zeros, for catalog prices: "0.4", "15"."""
    return dollars(micros).rstrip("0").rstrip(".")
