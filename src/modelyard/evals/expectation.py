"""What a case expects of its answer: a named scorer, the expected value, and options."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ScorerName = Literal[
    "exact",
    "regex",
    "contains_all",
    "contains_any",
    "numeric",
    "json_schema",
    "json_fields",
    "tool_call",
    "label",
    "judge",
]


class Expectation(BaseModel):
    """How an answer is scored: the scorer's name, the expected value, and its options
    (`scorers.py` lists the scorers; each one's model documents its value and options)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scorer: ScorerName
    value: Any = None
    options: dict[str, Any] = Field(default_factory=dict)
