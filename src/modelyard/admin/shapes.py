"""How admin objects look on the wire (JSON replies) and in the database (rows), and the few
conversions they need: dollars to micro-dollars, and the notes written to the audit log."""

from __future__ import annotations

from typing import Any

from modelyard.auth.directory import KeyRecord, ProjectRecord
from modelyard.money import dollars
from modelyard.policy.spending import SpendingLimits
from modelyard.protocol.admin import iso

JsonObject = dict[str, Any]


def limits_json(scope: str, scope_id: str, limits: SpendingLimits) -> JsonObject:
    return {
        "object": "limits",
        "scope": scope,
        "id": scope_id,
        "budgets_usd": {str(p): dollars(v) for p, v in sorted(limits.budgets.items())},
        **limits.rate_limits_json(),
    }


def retention_note(days: int | None) -> str:
    return (
        "content logging off (zero retention)"
        if days is None
        else f"content logging ON, kept {days} days"
    )


def models_note(models: frozenset[str] | None) -> str:
    return "all allowed" if models is None else ",".join(sorted(models))


def project_json(project: ProjectRecord) -> JsonObject:
    return {
        "id": project.id,
        "object": "project",
        "description": project.description,
        "allowed_models": sorted(project.allowed_models)
        if project.allowed_models is not None
        else None,
        "allowed_cidrs": list(project.allowed_cidrs) if project.allowed_cidrs is not None else None,
        "allowed_regions": (
            sorted(project.allowed_regions) if project.allowed_regions is not None else None
        ),
        "content_retention_days": project.content_retention_days,
        "created_at": iso(project.created_at),
        "created_by": project.created_by,
    }


def key_json(key: KeyRecord) -> JsonObject:
    return {
        "id": key.id,
        "object": "api_key",
        "project": key.project_id,
        "name": key.name,
        "subject": key.subject,
        "role": key.role.value,
        "models": sorted(key.models) if key.models is not None else None,
        "created_at": iso(key.created_at),
        "created_by": key.created_by,
        "expires_at": iso(key.expires_at),
        "revoked_at": iso(key.revoked_at),
        "replaced_by": key.replaced_by,
    }


def key_row(key: KeyRecord) -> JsonObject:
    return {
        "id": key.id,
        "project_id": key.project_id,
        "name": key.name,
        "subject": key.subject,
        "role": key.role.value,
        "models": sorted(key.models) if key.models is not None else None,
        "digest": key.digest,
        "created_at": key.created_at,
        "created_by": key.created_by,
        "expires_at": key.expires_at,
        "revoked_at": key.revoked_at,
        "replaced_by": key.replaced_by,
    }
