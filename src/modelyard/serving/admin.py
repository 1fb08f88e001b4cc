"""The admin use-cases: projects, members, API keys and the audit log, as the admin API and the
CLI see them.

Each mutation is authorized by the access policy, written together with its audit record in one
transaction, and only then applied to the in-memory Directory. Nobody can hand out more than
they hold: a granted role never has actions the granter lacks, a key's models stay within the
granter's, and a key never outlives the credential that minted it. Methods are synchronous
(they talk to the database) and are called off the event loop.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from modelyard.audit.events import AuditEvent
from modelyard.audit.log import AuditLog
from modelyard.auth.directory import Directory, KeyRecord, ProjectRecord
from modelyard.auth.directory_sync import bump_config_version
from modelyard.auth.keys import compose_project_key, keyed_digest, new_key_id
from modelyard.auth.principal import Principal
from modelyard.catalog.catalog import Catalog
from modelyard.db.schema import api_keys, projects, role_bindings, spending_limits
from modelyard.errors import Conflict, InvalidParameter, ModelNotFound, NotFound
from modelyard.ledger.cost import dollars
from modelyard.ledger.store import LedgerStore
from modelyard.policy.access import AccessDenied, AccessPolicy
from modelyard.policy.rbac import Action, Decision, Role, role_allows, role_within
from modelyard.policy.spending import Period, SpendingLimits
from modelyard.protocol.admin import (
    KeyCreate,
    KeyRotate,
    LimitsPut,
    MemberPut,
    ProjectCreate,
    ProjectUpdate,
    iso,
)
from modelyard.serving.admin_shapes import (
    JsonObject,
    key_json,
    key_row,
    limits_json,
    models_note,
    project_json,
    retention_note,
    usd_to_micros,
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
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._ledger = ledger
        self._engine = engine
        self._directory = directory
        self._policy = policy
        self._audit = audit
        self._catalog = catalog
        self._key_secret = key_secret
        self._clock = clock

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
            self._deny(
                principal, Action.PROJECTS_CREATE, "projects", "only an owner creates projects"
            )
        if body.id in self._directory.projects:
            raise Conflict(f"The project '{body.id}' already exists.", param="id")
        now = self._clock()
        row = {
            "id": body.id,
            "description": body.description,
            "allowed_models": self._known_models(body.allowed_models, "allowed_models"),
            "allowed_cidrs": _valid_cidrs(body.allowed_cidrs),
            "content_retention_days": body.content_retention_days,
            "created_at": now,
            "created_by": principal.subject,
        }
        try:
            with self._engine.begin() as connection:
                bump_config_version(connection)
                connection.execute(insert(projects).values(**row))
                self._record(
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
            wanted = self._known_models(body.allowed_models, "allowed_models")
            widening = wanted is None or (
                project.allowed_models is not None and not set(wanted) <= project.allowed_models
            )
            if widening and not principal.is_owner():
                self._deny(
                    principal,
                    Action.PROJECTS_MANAGE,
                    f"project '{project_id}'",
                    "only an owner may widen the models a project may use",
                )
            changes["allowed_models"] = wanted
        if "allowed_cidrs" in sent:
            changes["allowed_cidrs"] = _valid_cidrs(body.allowed_cidrs)
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
            self._record(
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
        self._check_grantable(principal, project_id, body.role, Action.MEMBERS_MANAGE)
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
            self._record(
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
        self._check_grantable(principal, project_id, current, Action.MEMBERS_MANAGE)
        with self._engine.begin() as connection:
            bump_config_version(connection)
            connection.execute(
                delete(role_bindings).where(
                    role_bindings.c.project_id == project_id, role_bindings.c.subject == subject
                )
            )
            self._record(
                connection,
                principal,
                "members.remove",
                f"member:{project_id}/{subject}",
                project_id,
                f"removed role {current}",
            )
        self._directory.drop_member(project_id, subject)
        return {"subject": subject, "project": project_id, "removed": True}

    # -- keys -------------------------------------------------------------------------------

    def list_keys(self, principal: Principal, project_id: str) -> JsonObject:
        everyone = self._key_scope(principal, project_id)
        keys = [
            key_json(k)
            for k in sorted(self._directory.keys.values(), key=lambda k: k.created_at)
            if k.project_id == project_id and (everyone or k.subject == principal.subject)
        ]
        return {"object": "list", "data": keys}

    def get_key(self, principal: Principal, project_id: str, key_id: str) -> JsonObject:
        return key_json(self._visible_key(principal, project_id, key_id))

    def create_key(self, principal: Principal, project_id: str, body: KeyCreate) -> JsonObject:
        self._key_scope(principal, project_id)
        action = (
            Action.KEYS_MANAGE
            if self._may(principal, project_id, Action.KEYS_MANAGE)
            else Action.KEYS_MANAGE_OWN
        )
        self._check_grantable(principal, project_id, body.role, action)
        models = self._grantable_models(principal, project_id, body.models)
        expires_at = self._grantable_expiry(principal, body.expires_at)
        key, record = self._mint(principal, project_id, body.name, body.role, models, expires_at)
        with self._engine.begin() as connection:
            bump_config_version(connection)
            connection.execute(insert(api_keys).values(**key_row(record)))
            self._record(
                connection,
                principal,
                "keys.create",
                f"key:{record.id}",
                project_id,
                f"role {record.role}, models {models_note(models)}, "
                f"expires {iso(expires_at) or 'never'}",
            )
        self._directory.put_key(record)
        return {**key_json(record), "key": key}

    def revoke_key(self, principal: Principal, project_id: str, key_id: str) -> JsonObject:
        record = self._managed_key(principal, project_id, key_id)
        if record.revoked_at is not None:
            return key_json(record)
        revoked = _replace_key(record, revoked_at=self._clock())
        with self._engine.begin() as connection:
            bump_config_version(connection)
            connection.execute(
                update(api_keys)
                .where(api_keys.c.id == key_id)
                .values(revoked_at=revoked.revoked_at)
            )
            self._record(
                connection, principal, "keys.revoke", f"key:{key_id}", project_id, "revoked"
            )
        self._directory.put_key(revoked)
        return key_json(revoked)

    def rotate_key(
        self, principal: Principal, project_id: str, key_id: str, body: KeyRotate
    ) -> JsonObject:
        old = self._managed_key(principal, project_id, key_id)
        # A replacement is a new grant: the caller must be able to mint this very key.
        action = (
            Action.KEYS_MANAGE
            if self._may(principal, project_id, Action.KEYS_MANAGE)
            else Action.KEYS_MANAGE_OWN
        )
        self._check_grantable(principal, project_id, old.role, action)
        self._grantable_models(principal, project_id, sorted(old.models) if old.models else None)
        if old.models is None and principal.models is not None:
            self._deny(
                principal,
                action,
                f"key '{key_id}'",
                "the key may use every model and yours may not; you cannot grant it",
            )
        if principal.expires_at is not None and (
            old.expires_at is None or old.expires_at > principal.expires_at
        ):
            self._deny(principal, action, f"key '{key_id}'", "the key would outlive your own")
        now = self._clock()
        if old.unusable_because(now) is not None:
            raise Conflict(
                f"The key '{key_id}' is no longer usable and cannot be rotated.", param="key_id"
            )
        key, new = self._mint(
            principal,
            project_id,
            old.name,
            old.role,
            old.models,
            old.expires_at,
            subject=old.subject,
        )
        grace_end = now + timedelta(seconds=body.grace_seconds)
        old_end = min(grace_end, old.expires_at) if old.expires_at else grace_end
        retired = _replace_key(old, expires_at=old_end, replaced_by=new.id)
        with self._engine.begin() as connection:
            bump_config_version(connection)
            connection.execute(insert(api_keys).values(**key_row(new)))
            connection.execute(
                update(api_keys)
                .where(api_keys.c.id == key_id)
                .values(expires_at=old_end, replaced_by=new.id)
            )
            self._record(
                connection,
                principal,
                "keys.rotate",
                f"key:{key_id}",
                project_id,
                f"replaced by key:{new.id}; old key works until {iso(old_end)}",
            )
        self._directory.put_key(new)
        self._directory.put_key(retired)
        return {**key_json(new), "key": key, "replaces": key_json(retired)}

    # -- spending limits --------------------------------------------------------------------

    def get_limits(self, principal: Principal, project_id: str, key_id: str | None) -> JsonObject:
        if key_id is None:
            self._policy.require(principal, Action.PROJECTS_READ, project_id)
            return limits_json(
                "project", project_id, self._directory.limits_of("project", project_id)
            )
        self._visible_key(principal, project_id, key_id)
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
            record = self._visible_key(principal, project_id, key_id)
            scope, scope_id = "key", record.id
        limits = SpendingLimits(
            budgets={
                Period(name): usd_to_micros(value)
                for name, value in body.budgets_usd.model_dump().items()
                if value is not None
            },
            requests_per_minute=body.requests_per_minute,
            tokens_per_minute=body.tokens_per_minute,
            max_concurrent=body.max_concurrent,
        )
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
            self._record(
                connection,
                principal,
                "limits.set",
                f"{scope}:{scope_id}",
                project_id,
                f"budgets {described['budgets_usd']}, rate limits {limits.rate_limits_json()}",
            )
        self._directory.put_limits(scope, scope_id, limits)
        return described

    # -- usage ------------------------------------------------------------------------------

    def usage_report(
        self,
        principal: Principal,
        group_by: list[str],
        since: str,
        until: str,
        project_id: str | None,
    ) -> JsonObject:
        """Totals from the daily rollup; without a project, every project the caller may read."""
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
        rows = self._ledger.daily(group_by, since, until, scope)
        for row in rows:
            row["cost_usd"] = dollars(row["cost_micros"])
        return {
            "object": "usage_report",
            "group_by": group_by,
            "since": since,
            "until": until,
            "data": rows,
        }

    # -- audit ------------------------------------------------------------------------------

    def read_audit(
        self, principal: Principal, project_id: str | None, after_seq: int, limit: int
    ) -> JsonObject:
        if project_id is None:
            if not principal.is_owner():
                self._deny(
                    principal,
                    Action.AUDIT_READ,
                    "the whole audit log",
                    "only an owner reads every project's events; name a project",
                )
        else:
            self._policy.require(principal, Action.AUDIT_READ, project_id)
        events = self._audit.read(project_id=project_id, after_seq=after_seq, limit=limit)
        return {"object": "list", "data": events}

    # -- rules ------------------------------------------------------------------------------

    def _may(self, principal: Principal, project_id: str, action: Action) -> bool:
        project = self._policy.project_for(principal, project_id)
        return self._policy.decide(principal, action, project).allowed

    def _key_scope(self, principal: Principal, project_id: str) -> bool:
        """True when the caller manages every key of the project, False for their own only."""
        if self._may(principal, project_id, Action.KEYS_READ):
            return True
        self._policy.require(principal, Action.KEYS_MANAGE_OWN, project_id)
        return False

    def _visible_key(self, principal: Principal, project_id: str, key_id: str) -> KeyRecord:
        everyone = self._key_scope(principal, project_id)
        record = self._directory.keys.get(key_id)
        if (
            record is None
            or record.project_id != project_id
            or not (everyone or record.subject == principal.subject)
        ):
            raise NotFound(f"The key '{key_id}' does not exist.", param="key_id")
        return record

    def _managed_key(self, principal: Principal, project_id: str, key_id: str) -> KeyRecord:
        record = self._visible_key(principal, project_id, key_id)
        if not (
            self._may(principal, project_id, Action.KEYS_MANAGE)
            or record.subject == principal.subject
        ):
            self._deny(
                principal, Action.KEYS_MANAGE, f"key '{key_id}'", "the key belongs to someone else"
            )
        return record

    def _check_grantable(
        self, principal: Principal, project_id: str, role: Role, action: Action
    ) -> None:
        held = principal.role_in(project_id)
        if role is Role.OWNER:
            self._deny(
                principal,
                action,
                f"project '{project_id}'",
                "the owner role is held on every project and cannot be granted on one",
            )
        if held is None or not role_within(role, held):
            self._deny(
                principal,
                action,
                f"project '{project_id}'",
                f"the role '{role}' has rights your role '{held}' lacks",
            )

    def _grantable_models(
        self, principal: Principal, project_id: str, wanted: list[str] | None
    ) -> frozenset[str] | None:
        models = self._known_models(wanted, "models")
        project = self._directory.projects[project_id]
        limits = [m for m in (principal.models, project.allowed_models) if m is not None]
        if models is None:
            # No list asked for: inherit the granter's own limit, never more.
            return frozenset(principal.models) if principal.models is not None else None
        for limit in limits:
            beyond = sorted(set(models) - limit)
            if beyond:
                self._deny(
                    principal,
                    Action.KEYS_MANAGE,
                    f"model '{beyond[0]}'",
                    "you cannot grant a model beyond your own",
                )
        return frozenset(models)

    def _grantable_expiry(self, principal: Principal, wanted: datetime | None) -> datetime | None:
        now = self._clock()
        if wanted is not None and wanted <= now:
            raise InvalidParameter("expires_at must be in the future.", param="expires_at")
        limit = principal.expires_at
        if limit is None:
            return wanted
        if wanted is None or wanted > limit:
            return limit  # a key never outlives the credential that minted it
        return wanted

    def _known_models(self, names: list[str] | None, param: str) -> list[str] | None:
        if names is None:
            return None
        resolved = []
        for index, name in enumerate(names):
            try:
                resolved.append(self._catalog.resolve(name).card.id)
            except ModelNotFound:
                raise InvalidParameter(
                    f"The model '{name}' is not in the catalog.", param=f"{param}[{index}]"
                ) from None
        return sorted(set(resolved))

    def _mint(
        self,
        principal: Principal,
        project_id: str,
        name: str,
        role: Role,
        models: frozenset[str] | list[str] | None,
        expires_at: datetime | None,
        subject: str | None = None,
    ) -> tuple[str, KeyRecord]:
        key_id = new_key_id()
        while key_id in self._directory.keys:
            key_id = new_key_id()
        key = compose_project_key(key_id)
        record = KeyRecord(
            id=key_id,
            project_id=project_id,
            name=name,
            # The bootstrap key acts for nobody in particular: what it mints stands for itself,
            # so one minted key never counts as another's "own".
            subject=subject
            or (f"key:{key_id}" if principal.kind == "admin" else principal.subject),
            role=role,
            models=frozenset(models) if models is not None else None,
            digest=keyed_digest(self._key_secret, key),
            created_at=self._clock(),
            created_by=principal.subject,
            expires_at=expires_at,
            revoked_at=None,
            replaced_by=None,
        )
        return key, record

    def _record(
        self,
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
        self._audit.append_in(connection, event)

    @staticmethod
    def _deny(principal: Principal, action: Action, resource: str, reason: str) -> None:
        raise AccessDenied(Decision(False, action, resource, reason), principal.subject)


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


def _replace_key(key: KeyRecord, **changes: Any) -> KeyRecord:
    return dataclasses.replace(key, **changes)
