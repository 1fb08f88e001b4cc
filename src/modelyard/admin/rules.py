"""The rules every admin use-case applies: refusing with a denial the audit log records, who may
grant which role, which models and routes a list names, and recording a mutation in the audit
chain inside the transaction that makes it."""

from __future__ import annotations

from typing import NoReturn

from sqlalchemy import Connection

from modelyard.audit.events import AuditEvent
from modelyard.audit.log import AuditLog
from modelyard.auth.directory import Directory
from modelyard.auth.principal import Principal
from modelyard.catalog.catalog import Catalog
from modelyard.errors import InvalidParameter, ModelNotFound
from modelyard.policy.access import AccessDenied
from modelyard.policy.rbac import Action, Decision, Role, role_within


def deny(principal: Principal, action: Action, resource: str, reason: str) -> NoReturn:
    raise AccessDenied(Decision(False, action, resource, reason), principal.subject)


def check_grantable(principal: Principal, project_id: str, role: Role, action: Action) -> None:
    """A granted role never has actions the granter lacks; nobody grants the owner role."""
    held = principal.role_in(project_id)
    if role is Role.OWNER:
        deny(
            principal,
            action,
            f"project '{project_id}'",
            "the owner role is held on every project and cannot be granted on one",
        )
    if held is None or not role_within(role, held):
        deny(
            principal,
            action,
            f"project '{project_id}'",
            f"the role '{role}' has rights your role '{held}' lacks",
        )


def known_models(
    catalog: Catalog, directory: Directory, names: list[str] | None, param: str
) -> list[str] | None:
    """The ids of the named models (aliases resolved) and routes in force, sorted; None stays
    None. A route is granted by its own name: access rules never look through it."""
    if names is None:
        return None
    routes = {route.id for route in catalog.routes} | set(directory.routes)
    routes -= {route_id for route_id, route in directory.routes.items() if route is None}
    resolved = []
    for index, name in enumerate(names):
        if name in routes:
            resolved.append(name)
            continue
        try:
            resolved.append(catalog.resolve(name).card.id)
        except ModelNotFound:
            raise InvalidParameter(
                f"The model '{name}' is neither in the catalog nor a route.",
                param=f"{param}[{index}]",
            ) from None
    return sorted(set(resolved))


def known_regions(catalog: Catalog, regions: list[str] | None) -> list[str] | None:
    """The regions, sorted, each the region of some deployment (a typo would pin a project to
    nowhere); None (any region) stays None."""
    if regions is None:
        return None
    known = {deployment.region for deployment in catalog.deployments}
    for index, region in enumerate(regions):
        if region not in known:
            raise InvalidParameter(
                f"No deployment is in the region '{region}'; the catalog's regions are "
                f"{', '.join(sorted(known))}.",
                param=f"allowed_regions[{index}]",
            )
    return sorted(set(regions))


def audit_change(
    audit: AuditLog,
    connection: Connection,
    principal: Principal,
    action: str,
    obj: str,
    project_id: str | None,
    reason: str,
) -> None:
    event = AuditEvent(
        actor=principal.subject,
        action=action,
        object=obj,
        outcome="succeeded",
        reason=reason,
        project_id=project_id,
        client_ip=principal.client_ip,
    )
    audit.append_in(connection, event)
