"""The loaded catalog: resolve a client's model name (or alias) to its card and deployments."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from modelyard.catalog.cards import Deployment, ModelCard
from modelyard.errors import ModelNotFound


@dataclass(frozen=True)
class Resolution:
    card: ModelCard
    deployments: tuple[Deployment, ...]


class Catalog:
    """An immutable index over validated cards and deployments."""

    def __init__(self, cards: Iterable[ModelCard], deployments: Iterable[Deployment]) -> None:
        self._cards = {card.id: card for card in cards}
        self._names: dict[str, str] = {}
        for card in self._cards.values():
            for name in (card.id, *card.aliases):
                self._names[name] = card.id
        by_model: dict[str, list[Deployment]] = {}
        for deployment in deployments:
            by_model.setdefault(deployment.model, []).append(deployment)
        self._deployments = {model: tuple(items) for model, items in by_model.items()}

    @property
    def cards(self) -> tuple[ModelCard, ...]:
        return tuple(self._cards.values())

    @property
    def deployments(self) -> tuple[Deployment, ...]:
        return tuple(d for items in self._deployments.values() for d in items)

    def deployments_of(self, model_id: str) -> tuple[Deployment, ...]:
        return self._deployments.get(model_id, ())

    def resolve(self, name: str) -> Resolution:
        """The card and deployments for a model name or alias, or ModelNotFound."""
        model_id = self._names.get(name)
        if model_id is None:
            raise ModelNotFound(
                f"The model '{name}' does not exist or you do not have access to it.", param="model"
            )
        return Resolution(self._cards[model_id], self.deployments_of(model_id))
