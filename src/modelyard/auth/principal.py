"""The authenticated caller of a request: who, on which projects, with which role, how narrowly."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Literal, NamedTuple

from modelyard.policy.rbac import ALL_PROJECTS, Role

PrincipalKind = Literal["admin", "key", "token"]


class Principal(NamedTuple):
    """Immutable; a NamedTuple rather than a frozen dataclass because one is built per request
    and this is several times cheaper to build and to copy with `_replace`."""

    # "admin" for the bootstrap key, the key's subject for project keys, "oidc:<sub>" for tokens.
    subject: str
    kind: PrincipalKind
    # project id -> role; the key `*` (owner only) covers every project.
    grants: Mapping[str, Role]
    # What may be logged about the credential; never the credential itself.
    hint: str
    # The project this request acts in (and is billed to); None when the caller has no single
    # project and did not name one.
    project: str | None = None
    client_ip: str | None = None
    key_id: str | None = None
    # A key's own model allowlist; None means no narrowing beyond role and project.
    models: frozenset[str] | None = None
    expires_at: datetime | None = None

    def role_in(self, project_id: str) -> Role | None:
        everywhere = self.grants.get(ALL_PROJECTS)
        # Only owner is ever granted on every project, and nothing outranks it.
        return everywhere if everywhere is not None else self.grants.get(project_id)

    def is_owner(self) -> bool:
        return self.grants.get(ALL_PROJECTS) is Role.OWNER


DEFAULT_PROJECT = "default"


def home_project(grants: Mapping[str, Role]) -> str | None:
    """The project a request acts in when it does not name one."""
    projects = [p for p in grants if p != ALL_PROJECTS]
    if len(projects) == 1:
        return projects[0]
    return DEFAULT_PROJECT if grants.get(ALL_PROJECTS) is Role.OWNER else None
