"""Routes: public model names whose requests the gateway spreads over several deployments.

A `RouteSpec` is what an operator writes, in the catalog file or through `/admin/routes`: the
candidate deployments, the strategy that orders them, and optional requirements (the prompt's
languages, how many attempts). What a route guarantees (its card) is computed from its
candidates by the router, never written by hand.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

# A route may try at most this many candidates, whatever it asks for.
MAX_ATTEMPTS_CAP = 10
ROUTE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]*$"


class Strategy(enum.StrEnum):
    PRIORITY = "priority"  # in the order written: a fallback list
    WEIGHTED = "weighted"  # A/B split by weight, sticky per caller
    LEAST_LATENCY = "least_latency"  # lowest moving average of first-token and per-token time
    CHEAPEST = "cheapest"  # lowest expected cost of this request at catalog prices
    LEAST_BUSY = "least_busy"  # fewest requests in flight


@dataclass(frozen=True)
class Candidate:
    deployment: str
    weight: int = 1


@dataclass(frozen=True)
class RouteSpec:
    id: str
    strategy: Strategy
    candidates: tuple[Candidate, ...]
    # ISO 639-1 codes; when set, the prompt's language must be one of them.
    languages: tuple[str, ...] | None = None
    max_attempts: int | None = None
    description: str = ""

    def attempts_allowed(self) -> int:
        wanted = self.max_attempts if self.max_attempts is not None else len(self.candidates)
        return max(1, min(wanted, len(self.candidates), MAX_ATTEMPTS_CAP))

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "strategy": str(self.strategy),
            "candidates": [
                {"deployment": c.deployment, "weight": c.weight} for c in self.candidates
            ],
            "languages": list(self.languages) if self.languages is not None else None,
            "max_attempts": self.max_attempts,
            "description": self.description,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RouteSpec:
        """From `to_json`'s shape, already validated (a stored definition)."""
        languages = data.get("languages")
        return cls(
            id=data["id"],
            strategy=Strategy(data["strategy"]),
            candidates=tuple(
                Candidate(c["deployment"], int(c.get("weight", 1))) for c in data["candidates"]
            ),
            languages=tuple(languages) if languages is not None else None,
            max_attempts=data.get("max_attempts"),
            description=data.get("description", ""),
        )


class CandidateEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    deployment: Annotated[str, Field(min_length=1, max_length=200)]
    weight: Annotated[int, Field(ge=0, le=1_000_000)] = 1


class RouteFields(BaseModel):
    """A route's definition as `PUT /admin/routes/{id}` takes it (the id is in the path)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    strategy: Strategy = Strategy.PRIORITY
    candidates: Annotated[list[CandidateEntry], Field(min_length=1, max_length=64)]
    languages: list[str] | None = None
    max_attempts: Annotated[int, Field(ge=1, le=MAX_ATTEMPTS_CAP)] | None = None
    description: Annotated[str, Field(max_length=2000)] = ""

    @field_validator("languages")
    @classmethod
    def _iso_codes(cls, languages: list[str] | None) -> list[str] | None:
        for code in languages or []:
            if not (len(code) == 2 and code.isalpha() and code.islower()):
                raise ValueError(f"'{code}' is not an ISO 639-1 language code such as 'fr'")
        return languages

    def spec_for(self, route_id: str) -> RouteSpec:
        return RouteSpec(
            id=route_id,
            strategy=self.strategy,
            candidates=tuple(Candidate(c.deployment, c.weight) for c in self.candidates),
            languages=tuple(self.languages) if self.languages is not None else None,
            max_attempts=self.max_attempts,
            description=self.description,
        )


class RouteDefinition(RouteFields):
    """A route as the catalog file's `routes:` lists it."""

    id: Annotated[str, Field(min_length=1, max_length=200, pattern=ROUTE_ID_PATTERN)]

    def spec(self) -> RouteSpec:
        return self.spec_for(self.id)
