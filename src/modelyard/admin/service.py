"""The admin use-cases: projects, members, spending limits, usage and the audit log, as the
admin API and the CLI see them; API keys are `self.keys` (`admin_keys.KeyAdmin`).

Each mutation is authorized by the access policy, written together with its audit record in one
transaction, and only then applied to the in-memory Directory. Nobody can hand out more than
they hold: a granted role never has actions the granter lacks, a key's models stay within the
granter's, and a key never outlives the credential that minted it. Methods are synchronous
(they talk to the database) and are called off the event loop.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from modelyard.admin.deployments import DeploymentsView
from modelyard.admin.keys import KeyAdmin
from modelyard.admin.route_admin import RouteAdmin
from modelyard.admin.rules import (
    audit_change,
    check_grantable,
    deny,
    known_models,
    known_regions,
)
from modelyard.admin.shapes import (
    JsonObject,
    limits_json,
    project_json,
    retention_note,
)
from modelyard.audit.log import AuditLog, AuditQuery
from modelyard.auth.directory import Directory, KeyRecord, ProjectRecord
from modelyard.auth.directory_sync import bump_config_version
from modelyard.auth.principal import Principal
from modelyard.catalog.catalog import Catalog
from modelyard.db.schema import projects, role_bindings, spending_limits
from modelyard.errors import Conflict, InvalidParameter, NotFound
from modelyard.ledger.feedback import FeedbackStore
from modelyard.ledger.store import LedgerStore
from modelyard.money import dollars, to_micros
from modelyard.policy.access import AccessPolicy
from modelyard.policy.rbac import Action, Role, outranks, role_allows
from modelyard.policy.spending import Period, SpendingLimits, lifts
from modelyard.protocol.admin import (
    LimitsPut,
    MemberPut,
    ProjectCreate,
    ProjectUpdate,
    iso,
)


class AdminService:
    def __init__(
        self,
        engine: Engine,
        directory: Directory,
        policy: AccessPolicy,
        audit: AuditLog,
        catalog: Catalog,
        key_secret: bytes,
        ledger: LedgerStore,
        feedback: FeedbackStore,
        routes: RouteAdmin,
        deployments: DeploymentsView,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.routes = routes
        self.deployments = deployments
        self._ledger = ledger
        self._feedback = feedback
        self._engine = engine
        self._directory = directory
        self._policy = policy
        self._audit = audit
        self._catalog = catalog
        self._clock = clock
        self.keys = KeyAdmin(engine, directory, policy, audit, catalog, key_secret, clock)

    # -- projects ---------------------------------------------------------------------------

    def list_projects(self, principal: Principal) -> JsonObject:
        visible = [
            project_json(p)
            for p in sorted(self._directory.projects.values(), key=lambda p: p.id)
            if principal.role_in(p.id) is not None
            and role_allows(principal.role_in(p.id) or Role.VIEWER, Action.PROJECTS_READ)
        ]
        return {"object": "list", "data": visible}

    def get_project(self, principal: Principal, project_id: str) -> JsonObject:
        return project_json(self._policy.require(principal, Action.PROJECTS_READ, project_id))

    def create_project(self, principal: Principal, body: ProjectCreate) -> JsonObject:
        if not principal.is_owner():
            deny(principal, Action.PROJECTS_CREATE, "projects", "only an owner creates projects")
        if body.id in self._directory.projects:
            raise Conflict(f"The project '{body.id}' already exists.", param="id")
        now = self._clock()
        row = {
            "id": body.id,
            "description": body.description,
            "allowed_models": known_models(
                self._catalog, self._directory, body.allowed_models, "allowed_models"
            ),
            "allowed_cidrs": _valid_cidrs(body.allowed_cidrs),
            "allowed_regions": known_regions(self._catalog, body.allowed_regions),
            "content_retention_days": body.content_retention_days,
            "created_at": now,
            "created_by": principal.subject,
        }
        try:
            with self._engine.begin() as connection:
                bump_config_version(connection)
                connection.execute(insert(projects).values(**row))
                audit_change(
                    self._audit,
                    connection,
                    principal,
                    "projects.create",
                    f"project:{body.id}",
                    body.id,
                    retention_note(body.content_retention_days),
                )
        except IntegrityError:
            # Another replica created it since this one last reloaded its view.
            raise Conflict(f"The project '{body.id}' already exists.", param="id") from None
        project = ProjectRecord.from_row(row)
        self._directory.put_project(project)
        return project_json(project)

    def update_project(
        self, principal: Principal, project_id: str, body: ProjectUpdate
    ) -> JsonObject:
        project = self._policy.require(principal, Action.PROJECTS_MANAGE, project_id)
        changes: dict[str, Any] = {}
        notes = []
        sent = body.model_fields_set
        if "description" in sent:
            changes["description"] = body.description or ""
        if "allowed_models" in sent:
            wanted = known_models(
                self._catalog, self._directory, body.allowed_models, "allowed_models"
            )
            _only_owners_widen(
                principal,
                project_id,
                project.allowed_models,
                wanted,
                "the models a project may use",
            )
            changes["allowed_models"] = wanted
        if "allowed_cidrs" in sent:
            changes["allowed_cidrs"] = _valid_cidrs(body.allowed_cidrs)
        if "allowed_regions" in sent:
            regions = known_regions(self._catalog, body.allowed_regions)
            _only_owners_widen(
                principal,
                project_id,
                project.allowed_regions,
                regions,
                "the regions a project's requests may reach",
            )
            changes["allowed_regions"] = regions
        if "content_retention_days" in sent:
            changes["content_retention_days"] = body.content_retention_days
            notes.append(retention_note(body.content_retention_days))
        if not changes:
            return project_json(project)
        with self._engine.begin() as connection:
            bump_config_version(connection)
            connection.execute(
                update(projects).where(projects.c.id == project_id).values(**changes)
            )
            fields = ", ".join(sorted(changes))
            audit_change(
                self._audit,
                connection,
                principal,
                "projects.update",
                f"project:{project_id}",
                project_id,
                "; ".join([f"changed {fields}", *notes]),
            )
            row = (
                connection.execute(select(projects).where(projects.c.id == project_id))
                .mappings()
                .one()
            )
        updated = ProjectRecord.from_row(row)
        self._directory.put_project(updated)
        return project_json(updated)

    # -- members ----------------------------------------------------------------------------

    def list_members(self, principal: Principal, project_id: str) -> JsonObject:
        self._policy.require(principal, Action.MEMBERS_READ, project_id)
        with self._engine.connect() as connection:
            rows = connection.execute(
                select(role_bindings)
                .where(role_bindings.c.project_id == project_id)
                .order_by(role_bindings.c.subject)
            ).mappings()
            data = [
                {
                    "subject": r["subject"],
                    "role": r["role"],
                    "created_at": iso(r["created_at"]),
                    "created_by": r["created_by"],
                }
                for r in rows
            ]
        return {"object": "list", "data": data}

    def put_member(
        self, principal: Principal, project_id: str, subject: str, body: MemberPut
    ) -> JsonObject:
        self._policy.require(principal, Action.MEMBERS_MANAGE, project_id)
        check_grantable(principal, project_id, body.role, Action.MEMBERS_MANAGE)
        now = self._clock()
        with self._engine.begin() as connection:
            bump_config_version(connection)
            connection.execute(
                delete(role_bindings).where(
                    role_bindings.c.project_id == project_id, role_bindings.c.subject == subject
                )
            )
            connection.execute(
                insert(role_bindings).values(
                    project_id=project_id,
                    subject=subject,
                    role=body.role.value,
                    created_at=now,
                    created_by=principal.subject,
                )
            )
            audit_change(
                self._audit,
                connection,
                principal,
                "members.put",
                f"member:{project_id}/{subject}",
                project_id,
                f"role {body.role}",
            )
        self._directory.put_member(project_id, subject, body.role)
        return {"subject": subject, "role": body.role.value, "project": project_id}

    def remove_member(self, principal: Principal, project_id: str, subject: str) -> JsonObject:
        self._policy.require(principal, Action.MEMBERS_MANAGE, project_id)
        current = self._directory.member_grants(subject).get(project_id)
        if current is None:
            raise NotFound(f"'{subject}' is not a member of the project '{project_id}'.")
        check_grantable(principal, project_id, current, Action.MEMBERS_MANAGE)
        with self._engine.begin() as connection:
            bump_config_version(connection)
            connection.execute(
                delete(role_bindings).where(
                    role_bindings.c.project_id == project_id, role_bindings.c.subject == subject
                )
            )
            audit_change(
                self._audit,
                connection,
                principal,
                "members.remove",
                f"member:{project_id}/{subject}",
                project_id,
                f"removed role {current}",
            )
        self._directory.drop_member(project_id, subject)
        return {"subject": subject, "project": project_id, "removed": True}

    # -- spending limits --------------------------------------------------------------------

    def get_limits(self, principal: Principal, project_id: str, key_id: str | None) -> JsonObject:
        if key_id is None:
            self._policy.require(principal, Action.PROJECTS_READ, project_id)
            return limits_json(
                "project", project_id, self._directory.limits_of("project", project_id)
            )
        self.keys.visible_key(principal, project_id, key_id)
        return limits_json("key", key_id, self._directory.limits_of("key", key_id))

    def set_limits(
        self, principal: Principal, project_id: str, key_id: str | None, body: LimitsPut
    ) -> JsonObject:
        """Project limits are the owners' cost control; key limits are set by who manages keys."""
        if key_id is None:
            self._policy.project_for(principal, project_id)
            self._policy.require_owner(
                principal, Action.PROJECTS_MANAGE, f"the limits of project '{project_id}'"
            )
            scope, scope_id = "project", project_id
        else:
            self._policy.require(principal, Action.KEYS_MANAGE, project_id)
            record = self.keys.visible_key(principal, project_id, key_id)
            scope, scope_id = "key", record.id
        limits = _limits_from(body)
        if key_id is not None:
            self._check_key_limits_change(principal, project_id, record, limits)
        row = {
            "scope": scope,
            "scope_id": scope_id,
            "budgets": {str(p): v for p, v in limits.budgets.items()},
            "rate_limits": limits.rate_limits_json(),
            "updated_at": self._clock(),
            "updated_by": principal.subject,
        }
        with self._engine.begin() as connection:
            bump_config_version(connection)
            connection.execute(
                delete(spending_limits).where(
                    spending_limits.c.scope == scope, spending_limits.c.scope_id == scope_id
                )
            )
            connection.execute(insert(spending_limits).values(**row))
            described = limits_json(scope, scope_id, limits)
            audit_change(
                self._audit,
                connection,
                principal,
                "limits.set",
                f"{scope}:{scope_id}",
                project_id,
                f"budgets {described['budgets_usd']}, rate limits {limits.rate_limits_json()}",
            )
        self._directory.put_limits(scope, scope_id, limits)
        return described

    def _check_key_limits_change(
        self, principal: Principal, project_id: str, key: KeyRecord, limits: SpendingLimits
    ) -> None:
        """A key never changes its own limits, and only a role above the key's may loosen them:
        otherwise whoever a limit was set on could lift it."""
        resource = f"the limits of key '{key.id}'"
        if principal.key_id == key.id:
            deny(principal, Action.KEYS_MANAGE, resource, "a key may not change its own limits")
        loosened = lifts(self._directory.limits_of("key", key.id), limits)
        held = principal.role_in(project_id)
        if loosened and not (held is Role.OWNER or (held is not None and outranks(held, key.role))):
            deny(
                principal,
                Action.KEYS_MANAGE,
                resource,
                f"loosening {', '.join(loosened)} needs a role above the key's ({key.role})",
            )

    # -- usage ------------------------------------------------------------------------------

    def usage_report(
        self,
        principal: Principal,
        group_by: list[str],
        since: str,
        until: str,
        project_id: str | None,
        only: Mapping[str, Sequence[str]] | None = None,
    ) -> JsonObject:
        """Totals from the daily rollups; without a project, every project the caller may read;
        `only`: just these values of a dimension (e.g. the keys a chart draws)."""
        if project_id is not None:
            self._policy.require(principal, Action.USAGE_READ, project_id)
            scope: list[str] | None = [project_id]
        elif principal.is_owner():
            scope = None
        else:
            scope = [
                p
                for p in self._directory.projects
                if self._policy.decide(
                    principal, Action.USAGE_READ, self._directory.projects[p]
                ).allowed
            ]
        rows = self._ledger.daily(group_by, since, until, scope, only)
        for row in rows:
            row["cost_usd"] = dollars(row["cost_micros"])
            # What an A/B comparison of arms reads: the share of errors and the mean latency.
            requests = row["requests"] or 1
            row["error_rate"] = round(row["errors"] / requests, 4)
            row["latency_ms_avg"] = round(row.pop("latency_ms") / requests, 1)
        if "deployment" in group_by:
            self._add_feedback(rows, group_by, since, until, scope)
        return {
            "object": "usage_report",
            "group_by": group_by,
            "since": since,
            "until": until,
            "data": rows,
        }

    def _add_feedback(
        self,
        rows: list[dict[str, Any]],
        group_by: list[str],
        since: str,
        until: str,
        scope: list[str] | None,
    ) -> None:
        """Per deployment, the quality users reported beside what it cost: the number and mean
        of the feedback scores on the group's requests (null when there is none)."""
        tallies = self._feedback.tallies(group_by, since, until, scope)
        for row in rows:
            tally = tallies.get(tuple(row[name] for name in group_by))
            row["feedback_count"] = tally.count if tally is not None else 0
            row["feedback_mean"] = round(tally.mean, 4) if tally is not None else None

    # -- audit ------------------------------------------------------------------------------

    def read_audit(self, principal: Principal, query: AuditQuery) -> JsonObject:
        project_id = query.project_id
        if project_id is None:
            if not principal.is_owner():
                deny(
                    principal,
                    Action.AUDIT_READ,
                    "the whole audit log",
                    "only an owner reads every project's events; name a project",
                )
        else:
            self._policy.require(principal, Action.AUDIT_READ, project_id)
        events = self._audit.read(
            project_id=project_id,
            actor=query.actor,
            action=query.action,
            after_seq=query.after_seq,
            before_seq=query.before_seq,
            limit=query.limit,
            newest_first=query.newest_first,
        )
        return {"object": "list", "data": events}


def _valid_cidrs(cidrs: list[str] | None) -> list[str] | None:
    if cidrs is None:
        return None
    for index, cidr in enumerate(cidrs):
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise InvalidParameter(
                f"'{cidr}' is not a network in CIDR notation.", param=f"allowed_cidrs[{index}]"
            ) from None
    return list(cidrs)


def _limits_from(body: LimitsPut) -> SpendingLimits:
    return SpendingLimits(
        budgets={
            Period(name): to_micros(value)
            for name, value in body.budgets_usd.model_dump().items()
            if value is not None
        },
        requests_per_minute=body.requests_per_minute,
        tokens_per_minute=body.tokens_per_minute,
        max_concurrent=body.max_concurrent,
    )


def _only_owners_widen(
    principal: Principal,
    project_id: str,
    current: frozenset[str] | None,
    wanted: list[str] | None,
    what: str,
) -> None:
    """A project's list (None: no limit) is narrowed by its admins, widened only by an owner."""
    widening = wanted is None or (current is not None and not set(wanted) <= current)
    if widening and not principal.is_owner():
        deny(
            principal,
            Action.PROJECTS_MANAGE,
            f"project '{project_id}'",
            f"only an owner may widen {what}",
        )
