"""The usage record: one per request that reached a model. Counts and money only, no content."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Literal

Outcome = Literal["completed", "failed", "client_disconnected", "interrupted"]


@dataclass(frozen=True)
class UsageRecord:
    request_id: str
    created_at: datetime
    subject: str
    key_id: str | None
    project_id: str
    model: str
    deployment: str
    route_reason: str
    prompt_tokens: int
    cached_prompt_tokens: int
    completion_tokens: int
    cost_micros: int
    reserved_micros: int
    latency_ms: int
    status: int
    outcome: Outcome
    client_disconnected: bool
    usage_estimated: bool
    # The route the request named (None for a model name), the arm its strategy picked first,
    # and every attempt (deployment, outcome, status, latency_ms, tokens, cost_micros).
    route: str | None = None
    arm: str | None = None
    attempts: tuple[dict[str, Any], ...] | None = None

    def row(self) -> dict[str, Any]:
        # Not dataclasses.asdict: its deep copies were half the cost of writing a record.
        row = {name: getattr(self, name) for name in _COLUMNS}
        if self.attempts is not None:
            row["attempts"] = list(self.attempts)
        return row

    @property
    def day(self) -> str:
        return self.created_at.strftime("%Y-%m-%d")


_COLUMNS = tuple(field.name for field in fields(UsageRecord))
