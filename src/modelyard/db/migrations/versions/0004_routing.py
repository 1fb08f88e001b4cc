"""Routing: runtime routes, projects' allowed regions, and route, arm and attempts in the ledger

The daily rollup gains route and arm in its key and a latency sum; it is rebuilt from the usage
records (which it only summarises), with empty route and arm for the records made before routes.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from modelyard.db.schema import UtcDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "routes",
        sa.Column("id", sa.String(length=200), nullable=False),
        sa.Column("definition", sa.JSON(), nullable=True),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.Column("updated_by", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_routes")),
    )
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.add_column(sa.Column("allowed_regions", sa.JSON(), nullable=True))
    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        batch_op.add_column(sa.Column("route", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("arm", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("attempts", sa.JSON(), nullable=True))
    op.drop_table("usage_daily")
    _create_usage_daily()
    op.execute(
        "INSERT INTO usage_daily (day, project_id, key_id, model, deployment, route, arm,"
        " requests, prompt_tokens, completion_tokens, cost_micros, errors, latency_ms)"
        " SELECT day, project_id, key_id, model, deployment, '', '', COUNT(*),"
        " SUM(prompt_tokens), SUM(completion_tokens), SUM(cost_micros),"
        " SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END), SUM(latency_ms)"
        " FROM (SELECT " + _day_expression() + " AS day, project_id,"
        " COALESCE(key_id, '') AS key_id, model, deployment, prompt_tokens, completion_tokens,"
        " cost_micros, status, latency_ms FROM usage_records) AS records"
        " GROUP BY day, project_id, key_id, model, deployment"
    )


def _day_expression() -> str:
    if op.get_bind().dialect.name == "postgresql":
        return "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
    return "substr(created_at, 1, 10)"


def _create_usage_daily() -> None:
    op.create_table(
        "usage_daily",
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("deployment", sa.String(length=200), nullable=False),
        sa.Column("route", sa.String(length=200), nullable=False),
        sa.Column("arm", sa.String(length=200), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger(), nullable=False),
        sa.Column("completion_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost_micros", sa.BigInteger(), nullable=False),
        sa.Column("errors", sa.BigInteger(), nullable=False),
        sa.Column("latency_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "day",
            "project_id",
            "key_id",
            "model",
            "deployment",
            "route",
            "arm",
            name=op.f("pk_usage_daily"),
        ),
    )


def downgrade() -> None:
    op.drop_table("usage_daily")
    op.create_table(
        "usage_daily",
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("deployment", sa.String(length=200), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger(), nullable=False),
        sa.Column("completion_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost_micros", sa.BigInteger(), nullable=False),
        sa.Column("errors", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "day", "project_id", "key_id", "model", "deployment", name=op.f("pk_usage_daily")
        ),
    )
    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        batch_op.drop_column("attempts")
        batch_op.drop_column("arm")
        batch_op.drop_column("route")
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.drop_column("allowed_regions")
    op.drop_table("routes")
