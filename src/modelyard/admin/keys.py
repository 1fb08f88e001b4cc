"""The API-key use-cases: list, read, mint, revoke and rotate a project's keys.

A member with `keys.manage` manages every key of the project; one with only `keys.manage_own`
manages the keys they minted. A key is never more than its minter: its role is within theirs,
its models within theirs and the project's, and it expires no later than their own credential;
rotating copies a key, so rotating is minting it again under the same rules. Like the rest of
the admin service, methods are synchronous (they talk to the database) and called off the event
loop.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, insert, update

from modelyard.admin.rules import audit_change, check_grantable, deny, known_models
from modelyard.admin.shapes import JsonObject, key_json, key_row, models_note
from modelyard.audit.log import AuditLog
from modelyard.auth.directory import Directory, KeyRecord
from modelyard.auth.directory_sync import bump_config_version
from modelyard.auth.keys import compose_project_key, keyed_digest, new_key_id
from modelyard.auth.principal import Principal
from modelyard.catalog.catalog import Catalog
from modelyard.db.schema import api_keys
from modelyard.errors import Conflict, InvalidParameter, NotFound
from modelyard.policy.access import AccessPolicy
from modelyard.policy.rbac import Action, Role
from modelyard.protocol.admin import KeyCreate, KeyRotate, iso


class KeyAdmin:
    def __init__(
        self,
        engine: Engine,
        directory: Directory,
        policy: AccessPolicy,
        audit: AuditLog,
        catalog: Catalog,
        key_secret: bytes,
        clock: Callable[[], datetime],
    ) -> None:
        self._engine = engine
        self._directory = directory
        self._policy = policy
        self._audit = audit
        self._catalog = catalog
        self._key_secret = key_secret
        self._clock = clock

    def list_keys(self, principal: Principal, project_id: str) -> JsonObject:
        everyone = self._key_scope(principal, project_id)
        keys = [
            key_json(k)
            for k in sorted(self._directory.keys.values(), key=lambda k: k.created_at)
            if k.project_id == project_id and (everyone or k.subject == principal.subject)
        ]
        return {"object": "list", "data": keys}

    def get_key(self, principal: Principal, project_id: str, key_id: str) -> JsonObject:
        return key_json(self.visible_key(principal, project_id, key_id))

    def create_key(self, principal: Principal, project_id: str, body: KeyCreate) -> JsonObject:
        self._key_scope(principal, project_id)
        action = self._minting_action(principal, project_id)
        check_grantable(principal, project_id, body.role, action)
        models = self._grantable_models(principal, project_id, body.models)
        expires_at = self._grantable_expiry(principal, body.expires_at)
        key, record = self._mint(principal, project_id, body.name, body.role, models, expires_at)
        with self._engine.begin() as connection:
            bump_config_version(connection)
            connection.execute(insert(api_keys).values(**key_row(record)))
            audit_change(
                self._audit,
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
            audit_change(
                self._audit,
                connection,
                principal,
                "keys.revoke",
                f"key:{key_id}",
                project_id,
                "revoked",
            )
        self._directory.put_key(revoked)
        return key_json(revoked)

    def rotate_key(
        self, principal: Principal, project_id: str, key_id: str, body: KeyRotate
    ) -> JsonObject:
        old = self._managed_key(principal, project_id, key_id)
        # A replacement is a new grant: the caller must be able to mint this very key.
        action = self._minting_action(principal, project_id)
        check_grantable(principal, project_id, old.role, action)
        self._grantable_models(principal, project_id, sorted(old.models) if old.models else None)
        if old.models is None and principal.models is not None:
            deny(
                principal,
                action,
                f"key '{key_id}'",
                "the key may use every model and yours may not; you cannot grant it",
            )
        if principal.expires_at is not None and (
            old.expires_at is None or old.expires_at > principal.expires_at
        ):
            deny(principal, action, f"key '{key_id}'", "the key would outlive your own")
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
            audit_change(
                self._audit,
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

    # -- rules ------------------------------------------------------------------------------

    def _may(self, principal: Principal, project_id: str, action: Action) -> bool:
        project = self._policy.project_for(principal, project_id)
        return self._policy.decide(principal, action, project).allowed

    def _minting_action(self, principal: Principal, project_id: str) -> Action:
        """The action a new key is granted under: the caller's widest."""
        if self._may(principal, project_id, Action.KEYS_MANAGE):
            return Action.KEYS_MANAGE
        return Action.KEYS_MANAGE_OWN

    def _key_scope(self, principal: Principal, project_id: str) -> bool:
        """True when the caller manages every key of the project, False for their own only."""
        if self._may(principal, project_id, Action.KEYS_READ):
            return True
        self._policy.require(principal, Action.KEYS_MANAGE_OWN, project_id)
        return False

    def visible_key(self, principal: Principal, project_id: str, key_id: str) -> KeyRecord:
        """The key, if the caller may see it (404 otherwise); the limits use-case asks too."""
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
        record = self.visible_key(principal, project_id, key_id)
        if not (
            self._may(principal, project_id, Action.KEYS_MANAGE)
            or record.subject == principal.subject
        ):
            deny(
                principal, Action.KEYS_MANAGE, f"key '{key_id}'", "the key belongs to someone else"
            )
        return record

    def _grantable_models(
        self, principal: Principal, project_id: str, wanted: list[str] | None
    ) -> frozenset[str] | None:
        models = known_models(self._catalog, self._directory, wanted, "models")
        project = self._directory.projects[project_id]
        limits = [m for m in (principal.models, project.allowed_models) if m is not None]
        if models is None:
            # No list asked for: inherit the granter's own limit, never more.
            return frozenset(principal.models) if principal.models is not None else None
        for limit in limits:
            beyond = sorted(set(models) - limit)
            if beyond:
                deny(
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


def _replace_key(key: KeyRecord, **changes: Any) -> KeyRecord:
    return dataclasses.replace(key, **changes)
