"""Routes changed at runtime: create or replace (`PUT`), delete, list; owners only, audited.

A change is one transaction: the `routes` row (a definition, or NULL to remove a route of the
catalog file), the configuration version bump that tells the other replicas, and the audit
record. This replica's Directory takes the change at once; the others within their poll.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from sqlalchemy import Engine
from sqlalchemy.dialects import postgresql, sqlite

from modelyard.admin.rules import audit_change
from modelyard.admin.shapes import JsonObject
from modelyard.audit.log import AuditLog
from modelyard.auth.directory import Directory
from modelyard.auth.directory_sync import bump_config_version
from modelyard.auth.principal import Principal
from modelyard.catalog.catalog import Catalog
from modelyard.catalog.routes import RouteFields, RouteSpec
from modelyard.db.schema import routes
from modelyard.errors import InvalidParameter, NotFound
from modelyard.policy.access import AccessPolicy
from modelyard.policy.rbac import Action
from modelyard.routing.route_book import RouteBook


class RouteAdmin:
    def __init__(
        self,
        engine: Engine,
        directory: Directory,
        policy: AccessPolicy,
        audit: AuditLog,
        catalog: Catalog,
        book: RouteBook,
        check_languages: Callable[[Sequence[str]], None],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._engine = engine
        self._directory = directory
        self._policy = policy
        self._audit = audit
        self._catalog = catalog
        self._book = book
        self._check_languages = check_languages
        self._clock = clock
        self._dialect = sqlite if engine.dialect.name == "sqlite" else postgresql

    def list_routes(self, principal: Principal) -> JsonObject:
        self._policy.acting_project(principal, Action.CATALOG_READ)
        return {"object": "list", "data": [self._shape(r) for r in self._book.routes()]}

    def put_route(self, principal: Principal, route_id: str, body: RouteFields) -> JsonObject:
        self._policy.require_owner(principal, Action.CATALOG_MANAGE, f"route '{route_id}'")
        spec = body.spec_for(route_id)
        try:
            self._catalog.check_route(spec)
            self._check_languages(spec.languages or ())
        except ValueError as exc:
            raise InvalidParameter(f"Route '{route_id}': {exc}.", param="route") from None
        replacing = self._book.route(route_id) is not None
        self._store(
            principal,
            route_id,
            spec,
            "routes.update" if replacing else "routes.create",
            f"{'replaced' if replacing else 'created'}: {_describe(spec)}",
        )
        return self._shape(spec)

    def delete_route(self, principal: Principal, route_id: str) -> JsonObject:
        self._policy.require_owner(principal, Action.CATALOG_MANAGE, f"route '{route_id}'")
        if self._book.route(route_id) is None:
            raise NotFound(f"The route '{route_id}' does not exist.", param="route")
        self._store(principal, route_id, None, "routes.delete", "deleted")
        return {"id": route_id, "object": "route", "deleted": True}

    def _store(
        self, principal: Principal, route_id: str, spec: RouteSpec | None, action: str, note: str
    ) -> None:
        row = {
            "id": route_id,
            "definition": spec.to_json() if spec is not None else None,
            "updated_at": self._clock(),
            "updated_by": principal.subject,
        }
        upsert = self._dialect.insert(routes).values(**row)
        upsert = upsert.on_conflict_do_update(
            index_elements=["id"],
            set_={
                name: upsert.excluded[name] for name in ("definition", "updated_at", "updated_by")
            },
        )
        with self._engine.begin() as connection:
            bump_config_version(connection)
            connection.execute(upsert)
            audit_change(
                self._audit, connection, principal, action, f"route:{route_id}", None, note
            )
        self._directory.put_route(route_id, spec)

    def _shape(self, spec: RouteSpec) -> JsonObject:
        card = self._book.card(spec)
        return {
            "object": "route",
            **spec.to_json(),
            "max_attempts_effective": spec.attempts_allowed(),
            "source": self._book.source(spec.id),
            "regions": list(card.regions),
            "capabilities": sorted(str(c) for c in card.card.capabilities),
            "context_window": card.card.context_window,
        }


def _describe(spec: RouteSpec) -> str:
    """The audit record's account of a definition: strategy and candidates with weights."""
    candidates = ", ".join(f"{c.deployment} (weight {c.weight})" for c in spec.candidates)
    extras = ""
    if spec.languages:
        extras += f"; languages {', '.join(spec.languages)}"
    if spec.max_attempts is not None:
        extras += f"; max_attempts {spec.max_attempts}"
    return f"{spec.strategy} over {candidates}{extras}"
