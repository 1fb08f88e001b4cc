"""The loaded catalog: resolve a client's model name (or alias) to its card and deployments, and
check a route against the models and deployments it names."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from modelyard.catalog.cards import Capability, Deployment, ModelCard
from modelyard.catalog.routes import RouteSpec, Strategy
from modelyard.errors import ModelNotFound


@dataclass(frozen=True)
class Resolution:
    card: ModelCard
    deployments: tuple[Deployment, ...]


class Catalog:
    """An immutable index over validated cards and deployments."""

    def __init__(
        self,
        cards: Iterable[ModelCard],
        deployments: Iterable[Deployment],
        routes: Iterable[RouteSpec] = (),
    ) -> None:
        self._cards = {card.id: card for card in cards}
        self._names: dict[str, str] = {}
        for card in self._cards.values():
            for name in (card.id, *card.aliases):
                self._names[name] = card.id
        by_model: dict[str, list[Deployment]] = {}
        for deployment in deployments:
            by_model.setdefault(deployment.model, []).append(deployment)
        self._deployments = {model: tuple(items) for model, items in by_model.items()}
        self._by_id = {d.id: d for items in self._deployments.values() for d in items}
        # The routes of the catalog file; runtime changes are kept beside them (routing/).
        self.routes = tuple(routes)

    @property
    def cards(self) -> tuple[ModelCard, ...]:
        return tuple(self._cards.values())

    @property
    def deployments(self) -> tuple[Deployment, ...]:
        return tuple(d for items in self._deployments.values() for d in items)

    def deployments_of(self, model_id: str) -> tuple[Deployment, ...]:
        return self._deployments.get(model_id, ())

    def resolve(self, name: str) -> Resolution:
        """The card and deployments for a model name or alias; a deployment's id names its
        model on that deployment alone (to compare deployments of one model). ModelNotFound
        for none of these."""
        model_id = self._names.get(name)
        if model_id is not None:
            return Resolution(self._cards[model_id], self.deployments_of(model_id))
        deployment = self._by_id.get(name)
        if deployment is not None and deployment.model in self._cards:
            return Resolution(self._cards[deployment.model], (deployment,))
        raise ModelNotFound(
            f"The model '{name}' does not exist or you do not have access to it.", param="model"
        )

    def deployment(self, deployment_id: str) -> Deployment | None:
        return self._by_id.get(deployment_id)

    def card(self, model_id: str) -> ModelCard:
        return self._cards[model_id]

    def check_route(self, route: RouteSpec) -> None:
        """Raise ValueError saying what is wrong when `route` cannot be served by this catalog."""
        if route.id in self._names:
            raise ValueError(
                f"id: '{route.id}' is already the name of model '{self._names[route.id]}'"
            )
        if route.id in self._by_id:
            raise ValueError(f"id: '{route.id}' is already the id of a deployment")
        seen: set[str] = set()
        for index, candidate in enumerate(route.candidates):
            where = f"candidates[{index}]"
            deployment = self._by_id.get(candidate.deployment)
            if deployment is None:
                raise ValueError(f"{where}: no deployment has the id '{candidate.deployment}'")
            if candidate.deployment in seen:
                raise ValueError(f"{where}: '{candidate.deployment}' is listed twice")
            seen.add(candidate.deployment)
            if not self._cards[deployment.model].supports(Capability.CHAT):
                raise ValueError(f"{where}: '{candidate.deployment}' does not serve chat")
        if route.strategy is Strategy.WEIGHTED and not any(c.weight for c in route.candidates):
            raise ValueError("candidates: a weighted route needs at least one weight above 0")
