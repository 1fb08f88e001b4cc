"""The in-memory view of the configuration every request reads: projects, role bindings, API
keys, spending limits, and the routes changed at runtime.

The database is the record; this view is loaded at start and updated by the admin service
right after each committed mutation, so authentication and authorization never touch the
database on the request path. Records are frozen and replaced whole, never edited in place.
Changes made by other replicas arrive as a whole new Directory (auth/directory_sync.py) that
`replace_with` swaps in, unless this view changed meanwhile.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select

from modelyard.catalog.routes import RouteSpec
from modelyard.db.schema import api_keys, projects, role_bindings, routes, spending_limits
from modelyard.policy.rbac import Role
from modelyard.policy.spending import NO_LIMITS, SpendingLimits


@dataclass(frozen=True)
class ProjectRecord:
    id: str
    description: str
    allowed_models: frozenset[str] | None
    allowed_cidrs: tuple[str, ...] | None
    content_retention_days: int | None
    created_at: datetime
    created_by: str
    # Regions its requests may reach; None for any.
    allowed_regions: frozenset[str] | None = None

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> ProjectRecord:
        models, cidrs = row["allowed_models"], row["allowed_cidrs"]
        return cls(
            id=row["id"],
            description=row["description"],
            allowed_models=frozenset(models) if models is not None else None,
            allowed_cidrs=tuple(cidrs) if cidrs is not None else None,
            content_retention_days=row["content_retention_days"],
            created_at=row["created_at"],
            created_by=row["created_by"],
            allowed_regions=(
                frozenset(row["allowed_regions"])
                if row.get("allowed_regions") is not None
                else None
            ),
        )


@dataclass(frozen=True)
class KeyRecord:
    id: str
    project_id: str
    name: str
    subject: str
    role: Role
    models: frozenset[str] | None
    digest: str
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    revoked_at: datetime | None
    replaced_by: str | None

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> KeyRecord:
        return cls(
            id=row["id"],
            project_id=row["project_id"],
            name=row["name"],
            subject=row["subject"],
            role=Role(row["role"]),
            models=frozenset(row["models"]) if row["models"] is not None else None,
            digest=row["digest"],
            created_at=row["created_at"],
            created_by=row["created_by"],
            expires_at=row["expires_at"],
            revoked_at=row["revoked_at"],
            replaced_by=row["replaced_by"],
        )

    def unusable_because(self, now: datetime) -> str | None:
        if self.revoked_at is not None and self.revoked_at <= now:
            return "the key was revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "the key expired" if self.replaced_by is None else "the key was rotated"
        return None


class Directory:
    def __init__(self) -> None:
        self.projects: dict[str, ProjectRecord] = {}
        self.keys: dict[str, KeyRecord] = {}
        # subject -> {project id -> role}
        self.members: dict[str, dict[str, Role]] = {}
        # ("project" | "key", id) -> budgets and rate limits
        self.limits: dict[tuple[str, str], SpendingLimits] = {}
        # Routes created or changed through the admin API; None removes a catalog route.
        self.routes: dict[str, RouteSpec | None] = {}
        # Counts changes made through the put/drop methods; see `replace_with`.
        self.revision = 0
        self._lock = threading.Lock()

    @classmethod
    def load(cls, engine: Engine) -> Directory:
        directory = cls()
        with engine.connect() as connection:
            for row in connection.execute(select(projects)).mappings():
                directory.put_project(ProjectRecord.from_row(row))
            for row in connection.execute(select(api_keys)).mappings():
                directory.put_key(KeyRecord.from_row(row))
            for row in connection.execute(select(role_bindings)).mappings():
                directory.put_member(row["project_id"], row["subject"], Role(row["role"]))
            for row in connection.execute(select(spending_limits)).mappings():
                limits = SpendingLimits.from_row(row["budgets"], row["rate_limits"])
                directory.put_limits(row["scope"], row["scope_id"], limits)
            for row in connection.execute(select(routes)).mappings():
                definition = row["definition"]
                spec = RouteSpec.from_json(definition) if definition is not None else None
                directory.put_route(row["id"], spec)
        return directory

    def replace_with(self, other: Directory, based_on: int) -> bool:
        """Take `other`'s contents, loaded when this view was at revision `based_on`.

        Refused (False) when this view changed since: `other` may predate that change, and
        taking it would undo it for a moment (a revoked key working again). Each table is one
        reference swap, so a reader sees either the old or the new dict, never a half-built one.
        """
        with self._lock:
            if self.revision != based_on:
                return False
            self.projects, self.keys = other.projects, other.keys
            self.members, self.limits = other.members, other.limits
            self.routes = other.routes
            return True

    def put_project(self, project: ProjectRecord) -> None:
        with self._lock:
            self.projects[project.id] = project
            self.revision += 1

    def put_key(self, key: KeyRecord) -> None:
        with self._lock:
            self.keys[key.id] = key
            self.revision += 1

    def put_member(self, project_id: str, subject: str, role: Role) -> None:
        with self._lock:
            self.members.setdefault(subject, {})[project_id] = role
            self.revision += 1

    def drop_member(self, project_id: str, subject: str) -> None:
        with self._lock:
            self.members.get(subject, {}).pop(project_id, None)
            self.revision += 1

    def put_limits(self, scope: str, scope_id: str, limits: SpendingLimits) -> None:
        with self._lock:
            self.limits[(scope, scope_id)] = limits
            self.revision += 1

    def put_route(self, route_id: str, spec: RouteSpec | None) -> None:
        with self._lock:
            self.routes[route_id] = spec
            self.revision += 1

    def limits_of(self, scope: str, scope_id: str) -> SpendingLimits:
        return self.limits.get((scope, scope_id), NO_LIMITS)

    def member_grants(self, subject: str) -> dict[str, Role]:
        return dict(self.members.get(subject, {}))
