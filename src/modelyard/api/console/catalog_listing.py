"""The catalog as cards: `/v1/models` entries shaped into `Listing`s, the filters a catalog page
applies to them (`Filters`, `Facets`), and the rows of a side-by-side comparison. Pure: no
request, no I/O; `catalog.py` serves the pages.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import partial
from typing import Any

from starlette.datastructures import QueryParams

from modelyard.api.console.rendering import NOTHING
from modelyard.catalog.cards import Capability
from modelyard.errors import InvalidParameter

CAPABILITY_LABELS = {
    Capability.CHAT: "Chat",
    Capability.STREAMING: "Streaming",
    Capability.TOOLS: "Tools",
    Capability.JSON_OUTPUT: "JSON output",
    Capability.JSON_SCHEMA: "Structured output",
    Capability.VISION: "Vision",
    Capability.EMBEDDINGS: "Embeddings",
}
# Who gives a capability (the entry's `capability_sources`), as the cards say it.
SOURCE_LABELS = {"model": "native", "gateway": "gateway-enforced", "route": "every candidate"}
COMPARED_AT_LEAST, COMPARED_AT_MOST = 2, 4
_LONGEST_QUERY = 200


@dataclass(frozen=True)
class Offer:
    """One deployment of a model (or a route's candidate), as `/v1/models` lists it."""

    id: str
    provider: str
    region: str
    input_usd: Decimal
    output_usd: Decimal
    health: str
    data_policy: str

    @property
    def price_text(self) -> str:
        return f"{usd(self.input_usd)} in · {usd(self.output_usd)} out"


@dataclass(frozen=True)
class Listing:
    """A model or route entry of `/v1/models`, shaped for a card and a comparison column."""

    id: str
    name: str
    kind: str  # "model" or "route"
    publisher: str
    license: str
    description: str
    aliases: tuple[str, ...]
    context_window: int
    max_output_tokens: int
    languages: tuple[str, ...]
    capabilities: tuple[tuple[str, str], ...]  # (capability, source), in Capability order
    offers: tuple[Offer, ...]
    strategy: str | None = None
    candidates: tuple[str, ...] = ()  # "deployment (weight n)"
    max_attempts: int | None = None
    prompt_languages: tuple[str, ...] = ()
    searched: str = ""

    @property
    def regions(self) -> tuple[str, ...]:
        return tuple(sorted({offer.region for offer in self.offers}))

    @property
    def providers(self) -> tuple[str, ...]:
        return tuple(sorted({offer.provider for offer in self.offers}))

    @property
    def prices_differ(self) -> bool:
        return len({(o.input_usd, o.output_usd) for o in self.offers}) > 1

    @property
    def price_text(self) -> str:
        if not self.offers:
            return NOTHING
        if self.prices_differ:
            return "differs by deployment (below)"
        return self.offers[0].price_text

    @property
    def policies_differ(self) -> bool:
        return len({offer.data_policy for offer in self.offers}) > 1

    @property
    def data_policy_text(self) -> str:
        if not self.offers:
            return NOTHING
        return (
            "differs by deployment (below)" if self.policies_differ else self.offers[0].data_policy
        )

    @property
    def cheapest_input_usd(self) -> Decimal | None:
        return min((offer.input_usd for offer in self.offers), default=None)

    def source_of(self, capability: str) -> str | None:
        return next((source for name, source in self.capabilities if name == capability), None)


def usd(amount: Decimal) -> str:
    """A catalog price as dollars: at least cents, and every digit the catalog gave."""
    text = f"{amount:f}"
    whole, _, fraction = text.partition(".")
    return f"${whole}.{fraction.ljust(2, '0')}"


def _policy_text(policy: Mapping[str, Any]) -> str:
    days = policy.get("retention_days")
    kept = "Not retained" if days == 0 else f"Kept {days} days" if days else "Retention not stated"
    training = "may be used for training" if policy.get("used_for_training") else "never trained on"
    summary = str(policy.get("summary") or "").strip()
    return f"{summary} {kept}; {training}.".strip()


def listing_of(entry: Mapping[str, Any]) -> Listing:
    """A `/v1/models` entry (a model or a route) as a `Listing`."""
    sources: Mapping[str, str] = entry.get("capability_sources") or {}
    offers = tuple(
        Offer(
            id=d["id"],
            provider=d["provider"],
            region=d["region"],
            input_usd=Decimal(d["price_per_1m_tokens_usd"]["input"]),
            output_usd=Decimal(d["price_per_1m_tokens_usd"]["output"]),
            health=d.get("health", "unavailable"),
            data_policy=_policy_text(d.get("data_policy") or {}),
        )
        for d in entry.get("deployments", [])
    )
    route: Mapping[str, Any] = entry.get("route") or {}
    aliases = tuple(entry.get("aliases") or ())
    words = [entry["id"], entry.get("name") or "", entry.get("owned_by") or "", *aliases]
    words += [entry.get("description") or "", entry.get("license") or ""]
    return Listing(
        id=entry["id"],
        name=entry.get("name") or entry["id"],
        kind="route" if entry.get("type") == "route" else "model",
        publisher=entry.get("owned_by") or NOTHING,
        license=entry.get("license") or NOTHING,
        description=entry.get("description") or "",
        aliases=aliases,
        context_window=int(entry.get("context_window") or 0),
        max_output_tokens=int(entry.get("max_output_tokens") or 0),
        languages=tuple(entry.get("languages") or ()),
        capabilities=tuple((str(c), sources[c]) for c in Capability if c in sources),
        offers=offers,
        strategy=route.get("strategy"),
        candidates=tuple(
            f"{c['deployment']} (weight {c['weight']})" for c in route.get("candidates", [])
        ),
        max_attempts=route.get("max_attempts"),
        prompt_languages=tuple(route.get("languages") or ()),
        searched=" ".join(words).lower(),
    )


@dataclass(frozen=True)
class Filters:
    """What the person asked to see: every given filter must hold (capabilities: all of them)."""

    q: str = ""
    capabilities: frozenset[str] = frozenset()
    language: str = ""
    region: str = ""
    provider: str = ""
    max_price: Decimal | None = None

    @classmethod
    def from_query(cls, query: QueryParams) -> Filters:
        q = query.get("q", "").strip()
        if len(q) > _LONGEST_QUERY:
            raise InvalidParameter(
                f"The search text is longer than {_LONGEST_QUERY} characters.", param="q"
            )
        capabilities = frozenset(query.getlist("capability"))
        unknown = sorted(capabilities - set(Capability))
        if unknown:
            known = ", ".join(Capability)
            raise InvalidParameter(
                f"Unknown capability '{unknown[0]}'; the capabilities are {known}.",
                param="capability",
            )
        return cls(
            q=q,
            capabilities=capabilities,
            language=query.get("language", "").strip(),
            region=query.get("region", "").strip(),
            provider=query.get("provider", "").strip(),
            max_price=_max_price(query.get("max_price", "").strip()),
        )

    @property
    def active(self) -> bool:
        return self != Filters()

    def matches(self, listing: Listing) -> bool:
        if any(word not in listing.searched for word in self.q.lower().split()):
            return False
        if any(listing.source_of(c) is None for c in self.capabilities):
            return False
        if self.language and self.language not in listing.languages:
            return False
        if self.region and self.region not in listing.regions:
            return False
        if self.provider and self.provider not in listing.providers:
            return False
        cheapest = listing.cheapest_input_usd
        return self.max_price is None or (cheapest is not None and cheapest <= self.max_price)


def _max_price(text: str) -> Decimal | None:
    if not text:
        return None
    try:
        amount = Decimal(text)
    except InvalidOperation:
        amount = Decimal(-1)
    if not amount.is_finite() or amount < 0:
        raise InvalidParameter(
            f"The maximum price '{text[:40]}' is not an amount of US dollars such as 0.5.",
            param="max_price",
        )
    return amount


@dataclass(frozen=True)
class Facets:
    """The values the filters offer: those the project's whole catalog has."""

    capabilities: tuple[str, ...]
    languages: tuple[str, ...]
    regions: tuple[str, ...]
    providers: tuple[str, ...]

    @classmethod
    def of(cls, listings: Sequence[Listing]) -> Facets:
        had = {name for listing in listings for name, _ in listing.capabilities}
        return cls(
            capabilities=tuple(str(c) for c in Capability if c in had),
            languages=_sorted_union(listing.languages for listing in listings),
            regions=_sorted_union(listing.regions for listing in listings),
            providers=_sorted_union(listing.providers for listing in listings),
        )


def _sorted_union(groups: Iterable[Iterable[str]]) -> tuple[str, ...]:
    return tuple(sorted({value for group in groups for value in group}))


@dataclass(frozen=True)
class Row:
    """One attribute of a comparison: a value per model, and whether they differ."""

    label: str
    values: tuple[str, ...]

    @property
    def differs(self) -> bool:
        return len(set(self.values)) > 1


def comparison(listings: Sequence[Listing]) -> list[Row]:
    """The comparison table's rows, one per attribute, a value per listing (in order)."""

    def row(label: str, value: Callable[[Listing], object]) -> Row:
        return Row(label, tuple(str(value(listing)) for listing in listings))

    def joined(values: Iterable[str]) -> str:
        return ", ".join(values) or NOTHING

    rows = [
        row("Kind", lambda m: m.kind),
        row("Publisher", lambda m: m.publisher),
        row("Licence", lambda m: m.license),
        row("Context window (tokens)", lambda m: f"{m.context_window:,}"),
        row("Max output (tokens)", lambda m: f"{m.max_output_tokens:,}"),
        row("Languages", lambda m: joined(m.languages)),
    ]
    rows += [row(CAPABILITY_LABELS[c], partial(_capability_text, capability=c)) for c in Capability]
    rows += [
        row("Regions", lambda m: joined(m.regions)),
        row("Providers", lambda m: joined(m.providers)),
        row("Cheapest input per 1M", lambda m: _cheapest(m.cheapest_input_usd)),
        row(
            "Price per 1M tokens",
            lambda m: "\n".join(f"{o.id}: {o.price_text}" for o in m.offers) or NOTHING,
        ),
        row(
            "Data policy",
            lambda m: "\n".join(f"{o.id}: {o.data_policy}" for o in m.offers) or NOTHING,
        ),
        row("Health", lambda m: "\n".join(f"{o.id}: {o.health}" for o in m.offers) or NOTHING),
        row("Route strategy", lambda m: m.strategy or NOTHING),
        row("Route candidates", lambda m: "\n".join(m.candidates) or NOTHING),
    ]
    return rows


def _capability_text(listing: Listing, capability: str) -> str:
    source = listing.source_of(capability)
    return "no" if source is None else SOURCE_LABELS.get(source, source)


def _cheapest(amount: Decimal | None) -> str:
    return usd(amount) if amount is not None else NOTHING
