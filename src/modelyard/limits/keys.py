"""The names of counters, written and read in this one place.

A counter store knows counters by name only. The names carry what they count, and some are read
back: the rate-limit headers tell requests from tokens by the name of the tightest window, a
budget refusal names the scope and period, and crash reconciliation finds whose reservation it
settles from its budget names. So the format lives here, as values with `__str__` and `parse`,
and nowhere else:

    rpm:<scope>:<scope id>                    requests in the sliding minute
    tpm:<scope>:<scope id>                    tokens in the sliding minute
    concurrency:key:<key id>                  the concurrency lease of a key
    budget:<scope>:<scope id>:<period>:<window>   spend in one budget window
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

RateKind = Literal["rpm", "tpm"]


@dataclass(frozen=True)
class RateKey:
    kind: RateKind
    scope: str
    scope_id: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.scope}:{self.scope_id}"

    @classmethod
    def parse(cls, name: str) -> RateKey | None:
        kind, _, rest = name.partition(":")
        scope, _, scope_id = rest.partition(":")
        if kind not in ("rpm", "tpm") or not scope_id:
            return None
        return cls("rpm" if kind == "rpm" else "tpm", scope, scope_id)


@dataclass(frozen=True)
class BudgetKey:
    scope: str
    scope_id: str
    period: str
    window: str

    def __str__(self) -> str:
        return f"budget:{self.scope}:{self.scope_id}:{self.period}:{self.window}"

    @classmethod
    def parse(cls, name: str) -> BudgetKey | None:
        parts = name.split(":")
        if len(parts) != 5 or parts[0] != "budget":
            return None
        return cls(parts[1], parts[2], parts[3], parts[4])


def lease_key(key_id: str) -> str:
    return f"concurrency:key:{key_id}"


def rebuild_id(counter: str) -> str:
    """The reservation id under which a rebuilt counter's spend is recorded at start-up."""
    return f"rebuild:{counter}"


def is_rebuild(reservation_id: str) -> bool:
    return reservation_id.startswith("rebuild:")
