"""Wire models of the admin API (/admin/...). Strict: unknown fields are refused, so a request
cannot slip in a field it may not set (a project id, a creator, a digest)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from modelyard.policy.rbac import Role

ProjectId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")]
ModelName = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Cidr = Annotated[str, StringConstraints(min_length=2, max_length=64)]
Region = Annotated[str, StringConstraints(min_length=1, max_length=64)]
SUBJECT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9@._:+-]{0,199}$"
Subject = Annotated[str, StringConstraints(pattern=SUBJECT_PATTERN)]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ProjectCreate(_Wire):
    id: ProjectId
    description: Annotated[str, StringConstraints(max_length=500)] = ""
    allowed_models: list[ModelName] | None = None
    allowed_cidrs: list[Cidr] | None = None
    # None: any region. Otherwise no request of the project reaches a deployment elsewhere.
    allowed_regions: list[Region] | None = None
    # None: zero retention (the default). A number opts in to keeping content that many days.
    content_retention_days: Annotated[int, Field(ge=1, le=3650)] | None = None


class ProjectUpdate(_Wire):
    """Only the fields sent change; `null` clears a list or turns content logging off."""

    description: Annotated[str, StringConstraints(max_length=500)] | None = None
    allowed_models: list[ModelName] | None = None
    allowed_cidrs: list[Cidr] | None = None
    allowed_regions: list[Region] | None = None
    content_retention_days: Annotated[int, Field(ge=1, le=3650)] | None = None


class MemberPut(_Wire):
    role: Role


class KeyCreate(_Wire):
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    role: Role = Role.DEVELOPER
    models: list[ModelName] | None = None
    expires_at: AwareDatetime | None = None


class KeyRotate(_Wire):
    # How long the old key keeps working beside the new one.
    grace_seconds: Annotated[int, Field(ge=0, le=7 * 24 * 3600)] = 24 * 3600


Usd = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,9}(\.[0-9]{1,6})?$")]
Positive = Annotated[int, Field(ge=1)]


class BudgetsUsd(_Wire):
    """Limits in US dollars as decimal strings ("12.50"): exact, never floats."""

    day: Usd | None = None
    month: Usd | None = None
    total: Usd | None = None


class LimitsPut(_Wire):
    """The whole set of limits of a project or key; anything left out is unlimited."""

    budgets_usd: BudgetsUsd = BudgetsUsd()
    requests_per_minute: Positive | None = None
    tokens_per_minute: Positive | None = None
    max_concurrent: Positive | None = None


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


# The columns of a usage report row after its dimensions, in the API's and the CLI's order.
# What a usage report may be grouped by.
USAGE_DIMENSIONS = ("day", "project_id", "key_id", "model", "deployment", "route", "arm")
# Dimensions a report may be narrowed to (`?key_id=a&key_id=b`); day and project have their own.
USAGE_FILTERS = ("key_id", "model", "deployment", "route", "arm")
MAX_USAGE_FILTER_VALUES = 100

USAGE_MEASURES = (
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
    "errors",
    "error_rate",
    "latency_ms_avg",
)
# Added after them when the report is grouped by deployment: feedback on the group's requests.
FEEDBACK_MEASURES = ("feedback_count", "feedback_mean")
