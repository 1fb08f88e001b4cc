"""Read a YAML catalog file into validated cards and deployments.

The file is validated completely at start-up; any problem raises `CatalogError` whose message
names the file, the entry (`models[2] 'mistral-large'`) and the field, so an operator can fix it
without reading a traceback. Nothing here is used on the request path.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from modelyard.catalog.cards import (
    Capability,
    DataPolicy,
    Deployment,
    DeploymentLimits,
    ModelCard,
    Price,
    Upstream,
    WeightsSource,
)
from modelyard.catalog.catalog import Catalog
from modelyard.catalog.routes import RouteDefinition, RouteSpec
from modelyard.errors import StartupError
from modelyard.money import to_micros

# Providers that run weights inside the gateway (a `weights` entry) rather than an `upstream`.
LOCAL_PROVIDERS = frozenset({"llamacpp", "sentence_transformers"})


class CatalogError(StartupError):
    """The catalog file is missing, unparsable or invalid; the message says where."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _PriceEntry(_Strict):
    input_per_1m: Annotated[Decimal, Field(ge=0)]
    output_per_1m: Annotated[Decimal, Field(ge=0)]
    # Prompt tokens the upstream served from its cache; defaults to the input price.
    cached_input_per_1m: Annotated[Decimal, Field(ge=0)] | None = None


class _LimitsEntry(_Strict):
    requests_per_minute: Annotated[int, Field(ge=1)] | None = None
    tokens_per_minute: Annotated[int, Field(ge=1)] | None = None


class _DataPolicyEntry(_Strict):
    retention_days: Annotated[int, Field(ge=0)] = 0
    used_for_training: bool = False
    summary: str


class _WeightsEntry(_Strict):
    package: str | None = None
    path: str | None = None

    def source(self, base_dir: Path) -> WeightsSource:
        if (self.package is None) == (self.path is None):
            raise ValueError("give exactly one of 'package' or 'path'")
        if self.path is not None:
            path = Path(self.path)
            return WeightsSource(path=path if path.is_absolute() else base_dir / path)
        return WeightsSource(package=self.package)


class _ModelEntry(_Strict):
    id: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$")]
    display_name: str | None = None
    publisher: str
    license: str
    context_window: Annotated[int, Field(gt=0)]
    max_output_tokens: Annotated[int, Field(ge=0)]  # 0 for models that do not generate
    languages: Annotated[list[str], Field(min_length=1)]
    capabilities: Annotated[list[Capability], Field(min_length=1)]
    description: str = ""
    aliases: list[str] = []
    created: Annotated[int, Field(ge=0)] = 0

    @field_validator("languages")
    @classmethod
    def _iso_codes(cls, languages: list[str]) -> list[str]:
        for code in languages:
            if not (2 <= len(code) <= 3 and code.isalpha() and code.islower()):
                raise ValueError(f"'{code}' is not an ISO 639 language code such as 'en' or 'fr'")
        return languages


class _UpstreamEntry(_Strict):
    base_url: Annotated[str, Field(pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$")]
    model: Annotated[str, Field(min_length=1)]
    credential: Annotated[str, Field(pattern=r"^(env:[A-Za-z_][A-Za-z0-9_]*|file:/.+)$")] | None = (
        None
    )
    connect_timeout_s: Annotated[float, Field(gt=0, le=60)] = 5.0
    read_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 120.0
    idle_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 60.0
    total_timeout_s: Annotated[float, Field(gt=0, le=7200)] = 600.0
    flavor: Literal["azure_openai", "ai_inference"] | None = None
    api_version: Annotated[str, Field(pattern=r"^\d{4}-\d{2}-\d{2}(-preview)?$")] | None = None
    # Bedrock only: the AWS region its requests are signed for.
    aws_region: Annotated[str, Field(pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")] | None = None

    def build(self) -> Upstream:
        return Upstream(
            base_url=self.base_url.rstrip("/"),
            model=self.model,
            credential=self.credential,
            connect_timeout_s=self.connect_timeout_s,
            read_timeout_s=self.read_timeout_s,
            idle_timeout_s=self.idle_timeout_s,
            total_timeout_s=self.total_timeout_s,
            flavor=self.flavor,
            api_version=self.api_version,
            aws_region=self.aws_region,
        )


class _DeploymentEntry(_Strict):
    id: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
    model: str
    provider: Literal[
        "llamacpp",
        "sentence_transformers",
        "openai_compat",
        "azure",
        "anthropic",
        "cohere",
        "bedrock",
    ]
    region: str
    price: _PriceEntry
    limits: _LimitsEntry = _LimitsEntry()
    data_policy: _DataPolicyEntry
    weights: _WeightsEntry | None = None
    upstream: _UpstreamEntry | None = None
    options: dict[str, int | str | bool] = {}


class _CatalogFile(_Strict):
    models: list[_ModelEntry]
    deployments: list[_DeploymentEntry] = []
    routes: list[RouteDefinition] = []


def load_catalog(path: Path) -> Catalog:
    """Parse and validate the catalog at `path`, or raise CatalogError naming what is wrong."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CatalogError(f"catalog {path}: cannot read the file ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise CatalogError(f"catalog {path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise CatalogError(
            f"catalog {path}: expected a mapping with 'models', 'deployments' and 'routes'"
        )
    try:
        parsed = _CatalogFile.model_validate(raw)
    except ValidationError as exc:
        raise CatalogError(_describe(path, raw, exc)) from None
    return _build(path, parsed)


def _build(path: Path, parsed: _CatalogFile) -> Catalog:
    cards: list[ModelCard] = []
    names: dict[str, str] = {}
    for index, entry in enumerate(parsed.models):
        where = f"catalog {path}: models[{index}] '{entry.id}'"
        for name in (entry.id, *entry.aliases):
            if name in names:
                raise CatalogError(
                    f"{where}: name '{name}' is already used by model '{names[name]}'"
                )
            names[name] = entry.id
        if entry.max_output_tokens > entry.context_window:
            raise CatalogError(f"{where}: max_output_tokens: must not exceed context_window")
        cards.append(
            ModelCard(
                id=entry.id,
                display_name=entry.display_name or entry.id,
                publisher=entry.publisher,
                license=entry.license,
                context_window=entry.context_window,
                max_output_tokens=entry.max_output_tokens,
                languages=tuple(entry.languages),
                capabilities=frozenset(entry.capabilities),
                description=entry.description,
                aliases=tuple(entry.aliases),
                created=entry.created,
            )
        )
    deployments: list[Deployment] = []
    seen: set[str] = set()
    for index, dep in enumerate(parsed.deployments):
        where = f"catalog {path}: deployments[{index}] '{dep.id}'"
        if dep.id in seen:
            raise CatalogError(f"{where}: id: '{dep.id}' is used by another deployment")
        seen.add(dep.id)
        if dep.model not in {card.id for card in cards}:
            raise CatalogError(f"{where}: model: no model card has the id '{dep.model}'")
        weights = None
        if dep.provider in LOCAL_PROVIDERS:
            if dep.weights is None:
                raise CatalogError(f"{where}: weights: required for provider '{dep.provider}'")
            try:
                weights = dep.weights.source(path.parent)
            except ValueError as exc:
                raise CatalogError(f"{where}: weights: {exc}") from None
            card = next(card for card in cards if card.id == dep.model)
            _check_engine_options(where, dep.options, card)
        elif dep.upstream is None:
            raise CatalogError(f"{where}: upstream: required for provider '{dep.provider}'")
        elif dep.provider == "azure" and (
            dep.upstream.flavor is None or not dep.upstream.api_version
        ):
            raise CatalogError(f"{where}: upstream: provider 'azure' needs flavor and api_version")
        elif dep.provider == "bedrock" and dep.upstream.aws_region is None:
            raise CatalogError(f"{where}: upstream: provider 'bedrock' needs aws_region")
        deployments.append(
            Deployment(
                id=dep.id,
                model=dep.model,
                provider=dep.provider,
                region=dep.region,
                price=Price(
                    input_per_1m_micros=to_micros(dep.price.input_per_1m),
                    output_per_1m_micros=to_micros(dep.price.output_per_1m),
                    cached_input_per_1m_micros=to_micros(
                        dep.price.cached_input_per_1m
                        if dep.price.cached_input_per_1m is not None
                        else dep.price.input_per_1m
                    ),
                ),
                limits=DeploymentLimits(
                    requests_per_minute=dep.limits.requests_per_minute,
                    tokens_per_minute=dep.limits.tokens_per_minute,
                ),
                data_policy=DataPolicy(
                    retention_days=dep.data_policy.retention_days,
                    used_for_training=dep.data_policy.used_for_training,
                    summary=dep.data_policy.summary,
                ),
                weights=weights,
                upstream=dep.upstream.build() if dep.upstream is not None else None,
                options=dict(dep.options),
            )
        )
    catalog = Catalog(cards, deployments)
    routes: list[RouteSpec] = []
    for index, route_entry in enumerate(parsed.routes):
        route = route_entry.spec()
        if route.id in {r.id for r in routes}:
            raise CatalogError(f"catalog {path}: routes[{index}] '{route.id}': id: used twice")
        try:
            catalog.check_route(route)
        except ValueError as exc:
            raise CatalogError(f"catalog {path}: routes[{index}] '{route.id}': {exc}") from None
        routes.append(route)
    return Catalog(cards, deployments, routes)


ENGINE_OPTION_BOUNDS = {"parallel": (1, 64), "context_window": (16, None)}


def _check_engine_options(
    where: str, options: dict[str, int | str | bool], card: ModelCard
) -> None:
    """A local engine's `parallel` (sequences decoded together) and `context_window` (tokens per
    sequence, at most the card's) are whole numbers in range; `flash_attention` and
    `constrained_decoding` are booleans."""
    for flag in ("flash_attention", "constrained_decoding"):
        if not isinstance(options.get(flag, False), bool):
            raise CatalogError(f"{where}: options.{flag}: must be true or false")
    for name, (low, high) in ENGINE_OPTION_BOUNDS.items():
        if name not in options:
            continue
        value = options[name]
        high = high if high is not None else card.context_window
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise CatalogError(
                f"{where}: options.{name}: must be a whole number from {low} to {high}"
            )


def _describe(path: Path, raw: dict[str, Any], exc: ValidationError) -> str:
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = list(error["loc"])
        entry = ""
        if len(loc) >= 2 and isinstance(loc[0], str) and isinstance(loc[1], int):
            section, index = loc[0], loc[1]
            items = raw.get(section)
            item = items[index] if isinstance(items, list) and index < len(items) else None
            name = item.get("id") if isinstance(item, dict) else None
            entry = f"{section}[{index}]" + (f" '{name}'" if isinstance(name, str) else "") + ": "
            loc = loc[2:]
        field = ".".join(str(part) for part in loc) or "(entry)"
        problems.append(f"catalog {path}: {entry}{field}: {error['msg']}")
    return "\n".join(problems)
