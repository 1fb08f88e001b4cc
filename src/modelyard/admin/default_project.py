"""The project the bootstrap admin key acts in, created (and audited) on first start."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine, insert, select

from modelyard.audit.events import AuditEvent
from modelyard.audit.log import AuditLog
from modelyard.auth.directory_sync import bump_config_version
from modelyard.auth.principal import DEFAULT_PROJECT
from modelyard.db.schema import projects


def ensure_default_project(engine: Engine, audit: AuditLog) -> None:
    """The project the bootstrap admin key acts in; created, and audited, on first start."""
    with engine.begin() as connection:
        exists = connection.execute(
            select(projects.c.id).where(projects.c.id == DEFAULT_PROJECT)
        ).first()
        if exists is not None:
            return
        bump_config_version(connection)
        # Replicas first starting together queue on the lock the bump takes; look again.
        if connection.execute(
            select(projects.c.id).where(projects.c.id == DEFAULT_PROJECT)
        ).first():
            return
        connection.execute(
            insert(projects).values(
                id=DEFAULT_PROJECT,
                description="Created at first start; the bootstrap admin key acts here.",
                allowed_models=None,
                allowed_cidrs=None,
                content_retention_days=None,
                created_at=datetime.now(UTC),
                created_by="system",
            )
        )
        audit.append_in(
            connection,
            AuditEvent(
                actor="system",
                action="projects.create",
                object=f"project:{DEFAULT_PROJECT}",
                outcome="succeeded",
                reason="default project created at first start; content logging off",
                project_id=DEFAULT_PROJECT,
            ),
        )
