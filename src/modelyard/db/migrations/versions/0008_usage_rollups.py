"""Coarser usage rollups beside usage_daily (by project; by key; by model, deployment, route and
arm), backfilled from usage_daily, so a usage report reads the fewest rows that answer it

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_SUMS = ("requests", "prompt_tokens", "completion_tokens", "cost_micros", "errors", "latency_ms")


def upgrade() -> None:
    op.create_table(
        "usage_daily_projects",
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        *_sum_columns(),
        sa.PrimaryKeyConstraint("day", "project_id", name=op.f("pk_usage_daily_projects")),
    )
    op.create_table(
        "usage_daily_keys",
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        *_sum_columns(),
        sa.PrimaryKeyConstraint("day", "project_id", "key_id", name=op.f("pk_usage_daily_keys")),
    )
    op.create_table(
        "usage_daily_models",
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("deployment", sa.String(length=200), nullable=False),
        sa.Column("route", sa.String(length=200), nullable=False),
        sa.Column("arm", sa.String(length=200), nullable=False),
        *_sum_columns(),
        sa.PrimaryKeyConstraint(
            "day",
            "project_id",
            "model",
            "deployment",
            "route",
            "arm",
            name=op.f("pk_usage_daily_models"),
        ),
    )
    _backfill("usage_daily_projects", ["day", "project_id"])
    _backfill("usage_daily_keys", ["day", "project_id", "key_id"])
    _backfill("usage_daily_models", ["day", "project_id", "model", "deployment", "route", "arm"])


def downgrade() -> None:
    op.drop_table("usage_daily_models")
    op.drop_table("usage_daily_keys")
    op.drop_table("usage_daily_projects")


def _sum_columns() -> list[sa.Column[int]]:
    return [sa.Column(name, sa.BigInteger(), nullable=False) for name in _SUMS]


def _backfill(name: str, key: list[str]) -> None:
    """The new rollup's rows from usage_daily's, in one INSERT ... SELECT ... GROUP BY (the
    same statement on SQLite and PostgreSQL)."""
    source = sa.table("usage_daily", *map(sa.column, [*key, *_SUMS]))
    target = sa.table(name, *map(sa.column, [*key, *_SUMS]))
    grouped = [source.c[column] for column in key]
    totals = sa.select(*grouped, *(sa.func.sum(source.c[column]) for column in _SUMS))
    op.execute(target.insert().from_select([*key, *_SUMS], totals.group_by(*grouped)))
