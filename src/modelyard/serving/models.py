"""The models use-case: the catalog as the caller may see it, in OpenAI + Mistral list shape.

Each entry carries the model card in extra fields; `type` and `capabilities` are there because
the Mistral SDK rejects a list without them (CLIENTS.md §6). Routes are listed like models, with
the card their candidates guarantee, their strategy and candidates; they can change at runtime,
so their entries are built when asked.
"""

from __future__ import annotations

from modelyard.auth.principal import Principal
from modelyard.catalog.cards import Capability, Deployment, ModelCard
from modelyard.catalog.catalog import Catalog
from modelyard.errors import ModelNotFound
from modelyard.money import price
from modelyard.policy.access import AccessPolicy
from modelyard.policy.rbac import Action
from modelyard.protocol.chat_response import JsonObject
from modelyard.providers.registry import ProviderRegistry
from modelyard.routing.route_book import RouteBook, RouteCard


class ModelsService:
    def __init__(
        self,
        catalog: Catalog,
        providers: ProviderRegistry,
        access: AccessPolicy,
        book: RouteBook,
    ) -> None:
        self._catalog = catalog
        self._access = access
        self._providers = providers
        self._book = book
        # Cards never change while the process runs, so their wire form is built once.
        self._entries = {
            card.id: _model_entry(card, catalog.deployments_of(card.id), providers)
            for card in catalog.cards
        }

    def list_models(self, principal: Principal) -> JsonObject:
        """The models this caller may use in its project: the others are not listed at all."""
        project = self._access.acting_project(principal, Action.CATALOG_READ)
        visible = [
            self._with_health(entry)
            for model_id, entry in self._entries.items()
            if self._access.may_see_model(principal, project, model_id)
        ]
        visible += [
            self._with_health(self._route_entry(self._book.card(route)))
            for route in self._book.routes()
            if self._access.may_see_model(principal, project, route.id)
        ]
        return {"object": "list", "data": visible}

    def chat_model_ids(self, principal: Principal) -> list[str]:
        """The chat models this caller may use in its project."""
        project = self._access.acting_project(principal, Action.CATALOG_READ)
        cards = [*self._catalog.cards, *(self._book.card(r).card for r in self._book.routes())]
        return [
            card.id
            for card in cards
            if card.supports(Capability.CHAT)
            and self._access.may_see_model(principal, project, card.id)
        ]

    def get_model(self, name: str, principal: Principal) -> JsonObject:
        route = self._book.route(name)
        if route is not None:
            self._require_visible(name, route.id, principal)
            return self._with_health(self._route_entry(self._book.card(route)))
        card = self._catalog.resolve(name).card
        self._require_visible(name, card.id, principal)
        return self._with_health(self._entries[card.id])

    def card_of(self, name: str, principal: Principal) -> ModelCard:
        """The card of a model or route the caller may see (a route's as its candidates give)."""
        route = self._book.route(name)
        card = self._book.card(route).card if route else self._catalog.resolve(name).card
        self._require_visible(name, card.id, principal)
        return card

    def _require_visible(self, name: str, model_id: str, principal: Principal) -> None:
        project = self._access.acting_project(principal, Action.CATALOG_READ)
        if not self._access.may_see_model(principal, project, model_id):
            raise ModelNotFound(
                f"The model '{name}' does not exist or you do not have access to it."
            )

    def _route_entry(self, route: RouteCard) -> JsonObject:
        deployments = [
            d
            for d in (self._catalog.deployment(c.deployment) for c in route.spec.candidates)
            if d is not None
        ]
        entry = _model_entry(route.card, tuple(deployments), self._providers)
        entry["type"] = "route"
        entry["capability_sources"] = {str(c): "route" for c in sorted(route.card.capabilities)}
        entry["route"] = {
            "strategy": str(route.spec.strategy),
            "candidates": [
                {"deployment": c.deployment, "weight": c.weight} for c in route.spec.candidates
            ],
            "languages": list(route.spec.languages) if route.spec.languages else None,
            "max_attempts": route.spec.attempts_allowed(),
            "regions": list(route.regions),
        }
        return entry

    def _with_health(self, entry: JsonObject) -> JsonObject:
        """The card's entry with each deployment's health now (a local engine may be down)."""
        deployments = []
        for deployment in entry["deployments"]:
            provider = self._providers.get(deployment["provider"])
            healthy = provider is not None and provider.healthy(deployment["id"])
            deployments.append({**deployment, "health": "ready" if healthy else "unavailable"})
        return {**entry, "deployments": deployments}


def _model_entry(
    card: ModelCard, deployments: tuple[Deployment, ...], providers: ProviderRegistry
) -> JsonObject:
    sources = _capability_sources(card, deployments, providers)
    return {
        "id": card.id,
        "object": "model",
        "created": card.created,
        "owned_by": card.publisher,
        "type": "base",
        "name": card.display_name,
        "description": card.description,
        "aliases": list(card.aliases),
        "max_context_length": card.context_window,
        "context_window": card.context_window,
        "max_output_tokens": card.max_output_tokens,
        "license": card.license,
        "languages": list(card.languages),
        "capabilities": {
            "completion_chat": Capability.CHAT in sources,
            "completion_fim": False,
            "function_calling": Capability.TOOLS in sources,
            "fine_tuning": False,
            "vision": Capability.VISION in sources,
            "classification": False,
            "streaming": Capability.STREAMING in sources,
            "json_output": Capability.JSON_OUTPUT in sources,
            "json_schema": Capability.JSON_SCHEMA in sources,
            "embeddings": Capability.EMBEDDINGS in sources,
        },
        # Which capabilities the model has itself and which the gateway enforces for it.
        "capability_sources": {str(capability): source for capability, source in sources.items()},
        "deployments": [_deployment_entry(deployment) for deployment in deployments],
    }


def _capability_sources(
    card: ModelCard, deployments: tuple[Deployment, ...], providers: ProviderRegistry
) -> dict[Capability, str]:
    sources = {capability: "model" for capability in card.capabilities}
    for deployment in deployments:
        provider = providers.get(deployment.provider)
        enforced = provider.enforced_capabilities() if provider is not None else frozenset()
        for capability in sorted(enforced):
            sources.setdefault(capability, "gateway")
    return sources


def _deployment_entry(deployment: Deployment) -> JsonObject:
    return {
        "id": deployment.id,
        "provider": deployment.provider,
        "region": deployment.region,
        "price_per_1m_tokens_usd": {
            "input": price(deployment.price.input_per_1m_micros),
            "output": price(deployment.price.output_per_1m_micros),
        },
        "data_policy": {
            "retention_days": deployment.data_policy.retention_days,
            "used_for_training": deployment.data_policy.used_for_training,
            "summary": deployment.data_policy.summary,
        },
    }
