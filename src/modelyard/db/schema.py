"""Every table Modelyard keeps, as SQLAlchemy Core metadata; migrations create them.

Times are UTC-aware everywhere: `UtcDateTime` stores naive UTC on SQLite and timestamptz on
PostgreSQL, and always hands back an aware datetime.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
)


class UtcDateTime(TypeDecorator[datetime]):
    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use UTC-aware times")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        result: datetime = value
        return result.replace(tzinfo=UTC) if result.tzinfo is None else result.astimezone(UTC)


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s",
        "pk": "pk_%(table_name)s",
    }
)

projects = Table(
    "projects",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("description", Text, nullable=False, default=""),
    # None: every model of the catalog; otherwise the model names this project may use.
    Column("allowed_models", JSON, nullable=True),
    # None: any client address; otherwise CIDRs the project's callers must come from.
    Column("allowed_cidrs", JSON, nullable=True),
    # None: zero retention. Otherwise prompts and completions are kept this many days.
    Column("content_retention_days", Integer, nullable=True),
    # Regions its requests may reach, or NULL for any; enforced by the router on every route.
    Column("allowed_regions", JSON, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("created_by", String(200), nullable=False),
)

role_bindings = Table(
    "role_bindings",
    metadata,
    Column("project_id", String(64), ForeignKey("projects.id"), primary_key=True),
    Column("subject", String(200), primary_key=True),
    Column("role", String(32), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("created_by", String(200), nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    # The public half of the key (it is part of the key string); never secret.
    Column("id", String(32), primary_key=True),
    Column("project_id", String(64), ForeignKey("projects.id"), nullable=False, index=True),
    Column("name", String(200), nullable=False),
    # Who the key acts for: its creator, or the member an admin minted it for.
    Column("subject", String(200), nullable=False),
    Column("role", String(32), nullable=False),
    # None: every model the role and project allow; otherwise a narrower allowlist.
    Column("models", JSON, nullable=True),
    # HMAC-SHA256 of the whole key under the server secret.
    Column("digest", String(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("expires_at", UtcDateTime, nullable=True),
    Column("revoked_at", UtcDateTime, nullable=True),
    Column("replaced_by", String(32), nullable=True),
)

audit_events = Table(
    "audit_events",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("at", UtcDateTime, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(64), nullable=False),
    Column("project_id", String(64), nullable=True, index=True),
    Column("object", String(300), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("reason", Text, nullable=False),
    Column("client_ip", String(64), nullable=True),
    Column("request_id", String(64), nullable=True),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

idempotency_records = Table(
    "idempotency_records",
    metadata,
    Column("subject", String(200), primary_key=True),
    Column("key", String(200), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("status", Integer, nullable=False),
    # The response body, encrypted under the server secret (it may hold a new API key).
    Column("sealed_body", LargeBinary, nullable=False),
    Column("created_at", UtcDateTime, nullable=False, index=True),
)

content_log = Table(
    "content_log",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("project_id", String(64), ForeignKey("projects.id"), nullable=False),
    Column("request_id", String(64), nullable=False),
    Column("model", String(200), nullable=False),
    Column("prompt", JSON, nullable=False),
    Column("completion", JSON, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
)
Index("ix_content_log_expires_at", content_log.c.expires_at)

# One row, id 1: bumped by every configuration change, so replicas know when to reload theirs.
config_version = Table(
    "config_version",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("version", BigInteger, nullable=False),
)

# -- cost management -----------------------------------------------------------------------

# Money limits and rate limits set on a project or a key by the admin API. `budgets` maps a
# period ("day", "month", "total") to a limit in micro-dollars; `rate_limits` holds
# requests_per_minute, tokens_per_minute and max_concurrent.
spending_limits = Table(
    "spending_limits",
    metadata,
    Column("scope", String(16), primary_key=True),  # "project" or "key"
    Column("scope_id", String(64), primary_key=True),
    Column("budgets", JSON, nullable=False),
    Column("rate_limits", JSON, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("updated_by", String(200), nullable=False),
)

# One record per request that reached a model, keyed by Modelyard's own request id.
usage_records = Table(
    "usage_records",
    metadata,
    Column("request_id", String(64), primary_key=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("subject", String(200), nullable=False),
    Column("key_id", String(32), nullable=True),
    Column("project_id", String(64), nullable=False),
    Column("model", String(200), nullable=False),
    Column("deployment", String(200), nullable=False),
    Column("route_reason", Text, nullable=False),
    Column("prompt_tokens", BigInteger, nullable=False),
    Column("cached_prompt_tokens", BigInteger, nullable=False),
    Column("completion_tokens", BigInteger, nullable=False),
    Column("cost_micros", BigInteger, nullable=False),
    Column("reserved_micros", BigInteger, nullable=False),
    Column("latency_ms", Integer, nullable=False),
    Column("status", Integer, nullable=False),
    # completed | failed | client_disconnected | interrupted (the replica died mid-request)
    Column("outcome", String(32), nullable=False),
    Column("client_disconnected", Boolean(), nullable=False),
    Column("usage_estimated", Boolean(), nullable=False),
    # The route named by the request (NULL for a model name), the arm its strategy chose first,
    # and every attempt: deployment, outcome, status, latency, tokens and cost.
    Column("route", String(200), nullable=True),
    Column("arm", String(200), nullable=True),
    Column("attempts", JSON, nullable=True),
)
Index("ix_usage_records_project_created", usage_records.c.project_id, usage_records.c.created_at)
Index("ix_usage_records_key_created", usage_records.c.key_id, usage_records.c.created_at)
Index("ix_usage_records_created", usage_records.c.created_at)


def _daily_sums() -> list[Column[int]]:
    """The sums every daily rollup keeps, as new columns (a column belongs to one table)."""
    return [
        Column("requests", BigInteger, nullable=False),
        Column("prompt_tokens", BigInteger, nullable=False),
        Column("completion_tokens", BigInteger, nullable=False),
        Column("cost_micros", BigInteger, nullable=False),
        Column("errors", BigInteger, nullable=False),
        Column("latency_ms", BigInteger, nullable=False),
    ]


# Daily rollup kept in the same transaction as the records, so reports never scan records.
usage_daily = Table(
    "usage_daily",
    metadata,
    Column("day", String(10), primary_key=True),  # YYYY-MM-DD, UTC
    Column("project_id", String(64), primary_key=True),
    Column("key_id", String(32), primary_key=True),  # "" for tokens and the admin key
    Column("model", String(200), primary_key=True),
    Column("deployment", String(200), primary_key=True),
    Column("route", String(200), primary_key=True),  # "" for requests that named a model
    Column("arm", String(200), primary_key=True),
    *_daily_sums(),
)


# Coarser rollups of the same records, kept in the same transaction, so a report reads the
# fewest rows that answer it (`LedgerStore.daily`); day and project always (reports filter both).
usage_daily_projects = Table(
    "usage_daily_projects",
    metadata,
    Column("day", String(10), primary_key=True),
    Column("project_id", String(64), primary_key=True),
    *_daily_sums(),
)
usage_daily_keys = Table(
    "usage_daily_keys",
    metadata,
    Column("day", String(10), primary_key=True),
    Column("project_id", String(64), primary_key=True),
    Column("key_id", String(32), primary_key=True),
    *_daily_sums(),
)
usage_daily_models = Table(
    "usage_daily_models",
    metadata,
    Column("day", String(10), primary_key=True),
    Column("project_id", String(64), primary_key=True),
    Column("model", String(200), primary_key=True),
    Column("deployment", String(200), primary_key=True),
    Column("route", String(200), primary_key=True),
    Column("arm", String(200), primary_key=True),
    *_daily_sums(),
)

# Routes created or changed at runtime (`/admin/routes`), over those of the catalog file; a NULL
# definition removes a catalog route.
routes = Table(
    "routes",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("definition", JSON, nullable=True),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("updated_by", String(200), nullable=False),
)

# -- evaluation ----------------------------------------------------------------------------

# A run of task suites against models (`modelyard eval run`), made and read through /admin/evals.
eval_runs = Table(
    "eval_runs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("project_id", String(64), ForeignKey("projects.id"), nullable=False, index=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("suites", JSON, nullable=False),
    Column("models", JSON, nullable=False),
    Column("repeats", Integer, nullable=False),
    # running | finished | interrupted
    Column("status", String(16), nullable=False),
    Column("params", JSON, nullable=False),
)

# One case on one model, one repeat. `output` is NULL unless the project keeps content; the hash
# is always kept. Cost and tokens are the runner's until `settled`, then the ledger's.
eval_results = Table(
    "eval_results",
    metadata,
    Column("run_id", String(64), ForeignKey("eval_runs.id"), primary_key=True),
    Column("model", String(200), primary_key=True),
    Column("case_id", String(128), primary_key=True),
    Column("repeat", Integer, primary_key=True),
    Column("tags", JSON, nullable=False),
    Column("deployment", String(200), nullable=True),
    Column("score", Float, nullable=False),
    Column("passed", Boolean(), nullable=False),
    Column("binary", Boolean(), nullable=False),
    Column("latency_ms", Float, nullable=False),
    Column("ttft_ms", Float, nullable=True),
    Column("prompt_tokens", BigInteger, nullable=False),
    Column("completion_tokens", BigInteger, nullable=False),
    Column("cost_micros", BigInteger, nullable=False),
    Column("request_id", String(64), nullable=True, index=True),
    Column("output", Text, nullable=True),
    Column("output_sha256", String(64), nullable=False),
    Column("error", Text, nullable=True),
    Column("detail", Text, nullable=False),
    Column("extra", JSON, nullable=False),
    Column("settled", Boolean(), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

# Quality signals on served requests (`POST /v1/feedback`): one per request and rater (the key
# id, or the subject of a caller without a key); a second replaces the first.
feedback = Table(
    "feedback",
    metadata,
    Column("request_id", String(64), primary_key=True),
    Column("rater", String(200), primary_key=True),
    Column("project_id", String(64), nullable=False, index=True),
    Column("key_id", String(32), nullable=True),
    Column("subject", String(200), nullable=False),
    Column("score", Float, nullable=False),
    Column("labels", JSON, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

# -- stored responses ----------------------------------------------------------------------

# Responses API answers of projects that keep content (`serving/stored_responses.py`): the
# response object, its input items and the conversation a later turn continues, as compact JSON.
stored_responses = Table(
    "stored_responses",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("project_id", String(64), ForeignKey("projects.id"), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False, index=True),
    Column("response", LargeBinary, nullable=False),
    Column("input_items", LargeBinary, nullable=False),
    Column("conversation", LargeBinary, nullable=False),
)

# Web console sign-ins (`auth/sessions.py`): only the SHA-256 of the cookie's token is kept. The
# credential says how to check, on every page, that the person may still act as they signed in
# (a key's id and keyed digest, the admin key's digest, or an identity's subject and grants).
console_sessions = Table(
    "console_sessions",
    metadata,
    Column("token_sha256", String(64), primary_key=True),
    Column("credential", JSON, nullable=False),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("last_seen_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False, index=True),
)
