"""Roles, the closed set of actions, and the decisions that combine them.

A role is granted on one project (or on every project, written `*`, which only `owner` may
hold). Each role is a fixed set of actions; nothing else grants an action. A Decision always
carries the reason a person reads in a 403 body and in the audit log.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Action(StrEnum):
    MODELS_USE = "models.use"
    CATALOG_READ = "catalog.read"
    CATALOG_MANAGE = "catalog.manage"
    USAGE_READ = "usage.read"
    KEYS_READ = "keys.read"
    KEYS_MANAGE = "keys.manage"
    KEYS_MANAGE_OWN = "keys.manage_own"
    MEMBERS_READ = "members.read"
    MEMBERS_MANAGE = "members.manage"
    PROJECTS_READ = "projects.read"
    PROJECTS_MANAGE = "projects.manage"
    PROJECTS_CREATE = "projects.create"
    AUDIT_READ = "audit.read"
    METRICS_READ = "metrics.read"


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    DEVELOPER = "developer"
    VIEWER = "viewer"
    AUDITOR = "auditor"


ALL_PROJECTS = "*"

ROLE_ACTIONS: dict[Role, frozenset[Action]] = {
    Role.OWNER: frozenset(Action),
    Role.ADMIN: frozenset(
        {
            Action.MODELS_USE,
            Action.CATALOG_READ,
            Action.USAGE_READ,
            Action.KEYS_READ,
            Action.KEYS_MANAGE,
            Action.KEYS_MANAGE_OWN,
            Action.MEMBERS_READ,
            Action.MEMBERS_MANAGE,
            Action.PROJECTS_READ,
            Action.PROJECTS_MANAGE,
        }
    ),
    Role.DEVELOPER: frozenset(
        {
            Action.MODELS_USE,
            Action.CATALOG_READ,
            Action.USAGE_READ,
            Action.KEYS_MANAGE_OWN,
            Action.PROJECTS_READ,
        }
    ),
    Role.VIEWER: frozenset({Action.CATALOG_READ, Action.USAGE_READ, Action.PROJECTS_READ}),
    Role.AUDITOR: frozenset({Action.CATALOG_READ, Action.AUDIT_READ, Action.PROJECTS_READ}),
}


@dataclass(frozen=True)
class Decision:
    allowed: bool
    action: Action
    resource: str
    reason: str


def role_allows(role: Role, action: Action) -> bool:
    return action in ROLE_ACTIONS[role]


def role_within(granted: Role, held: Role) -> bool:
    """Whether someone holding `held` may hand out `granted`: never more actions than their own."""
    return ROLE_ACTIONS[granted] <= ROLE_ACTIONS[held]


def outranks(held: Role, other: Role) -> bool:
    """Whether `held` may do everything `other` may, and more."""
    return ROLE_ACTIONS[other] < ROLE_ACTIONS[held]


def parse_role(value: str) -> Role | None:
    try:
        return Role(value)
    except ValueError:
        return None
