"""The routes in force: those of the catalog file, with the changes made at runtime over them,
and what each route guarantees (its card), computed from its candidates.

Runtime changes live in the Directory (loaded from the `routes` table and kept in step across
replicas by `auth/directory_sync.py`): a stored definition replaces the catalog's route of the
same id, a stored removal hides it. A route's card promises only what every candidate gives:
the capabilities all of them support (natively or enforced by the gateway), the languages all
of them list (or the route's own, when it names some), the smallest context window and output
limit, and the regions the candidates are in.
"""

from __future__ import annotations

from dataclasses import dataclass

from modelyard.auth.directory import Directory
from modelyard.catalog.cards import Capability, ModelCard
from modelyard.catalog.catalog import Catalog
from modelyard.catalog.routes import RouteSpec
from modelyard.providers.registry import ProviderRegistry


@dataclass(frozen=True)
class RouteCard:
    spec: RouteSpec
    # What every candidate gives.
    card: ModelCard
    regions: tuple[str, ...]
    # What some candidate gives, natively or enforced by the gateway.
    reachable: frozenset[Capability]


class RouteBook:
    def __init__(self, catalog: Catalog, directory: Directory, providers: ProviderRegistry) -> None:
        self._catalog = catalog
        self._directory = directory
        self._providers = providers
        self._cards: dict[str, RouteCard] = {}

    def routes(self) -> list[RouteSpec]:
        """Every route in force, sorted by id."""
        merged: dict[str, RouteSpec | None] = {r.id: r for r in self._catalog.routes}
        merged.update(self._directory.routes)
        return sorted((r for r in merged.values() if r is not None), key=lambda r: r.id)

    def route(self, name: str) -> RouteSpec | None:
        if name in self._directory.routes:
            return self._directory.routes[name]
        return next((r for r in self._catalog.routes if r.id == name), None)

    def source(self, route_id: str) -> str:
        """ "catalog" for a route as the catalog file has it, "runtime" for one changed since."""
        return "runtime" if route_id in self._directory.routes else "catalog"

    def card(self, spec: RouteSpec) -> RouteCard:
        cached = self._cards.get(spec.id)
        if cached is not None and cached.spec is spec:
            return cached
        built = self._build_card(spec)
        self._cards[spec.id] = built
        return built

    def _build_card(self, spec: RouteSpec) -> RouteCard:
        deployments = [self._catalog.deployment(c.deployment) for c in spec.candidates]
        present = [d for d in deployments if d is not None]
        cards = [self._catalog.card(d.model) for d in present]
        capabilities: set[Capability] | None = None
        reachable: set[Capability] = set()
        languages: set[str] | None = None
        for deployment, card in zip(present, cards, strict=True):
            provider = self._providers.for_deployment(deployment)
            offered = set(card.capabilities) | set(provider.enforced_capabilities())
            offered &= set(Capability) - {Capability.EMBEDDINGS}
            capabilities = offered if capabilities is None else capabilities & offered
            reachable |= offered
            listed = set(card.languages)
            languages = listed if languages is None else languages & listed
        if spec.languages is not None:
            languages = set(spec.languages) & (languages or set())
        card = ModelCard(
            id=spec.id,
            display_name=spec.id,
            publisher="modelyard route",
            license="see each candidate",
            context_window=min((c.context_window for c in cards), default=0),
            max_output_tokens=min((c.max_output_tokens for c in cards), default=0),
            languages=tuple(sorted(languages or ())),
            capabilities=frozenset(capabilities or ()),
            description=spec.description
            or f"A {spec.strategy} route over {len(spec.candidates)} deployments.",
        )
        regions = tuple(sorted({d.region for d in present}))
        return RouteCard(spec, card, regions, frozenset(reachable))
