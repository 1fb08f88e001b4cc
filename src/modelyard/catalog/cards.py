"""Catalog values: what a model is (ModelCard) and where it runs (Deployment).

These are frozen, validated once when the catalog loads, and shared by every request; nothing on
the request path re-validates them. Money is integer micro-dollars per million tokens.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


class Capability(enum.StrEnum):
    CHAT = "chat"
    STREAMING = "streaming"
    TOOLS = "tools"
    JSON_OUTPUT = "json_output"
    JSON_SCHEMA = "json_schema"
    EMBEDDINGS = "embeddings"
    VISION = "vision"


@dataclass(frozen=True)
class Price:
    """Price per one million tokens, in micro-dollars (1 USD = 1_000_000)."""

    input_per_1m_micros: int
    output_per_1m_micros: int
    cached_input_per_1m_micros: int = 0


@dataclass(frozen=True)
class DeploymentLimits:
    """What one deployment may take across every caller (None: unlimited)."""

    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None


@dataclass(frozen=True)
class DataPolicy:
    """What happens to prompts sent to a deployment."""

    retention_days: int
    used_for_training: bool
    summary: str


@dataclass(frozen=True)
class ModelCard:
    id: str
    display_name: str
    publisher: str
    license: str
    context_window: int
    max_output_tokens: int
    languages: tuple[str, ...]
    capabilities: frozenset[Capability]
    description: str = ""
    aliases: tuple[str, ...] = ()
    created: int = 0

    def supports(self, capability: Capability) -> bool:
        return capability in self.capabilities


@dataclass(frozen=True)
class WeightsSource:
    """Where a local model's weights are: a file inside an installed package, or a path."""

    package: str | None = None
    path: Path | None = None


@dataclass(frozen=True)
class Upstream:
    """A remote server a deployment forwards to. Only the catalog sets these, never a request."""

    base_url: str  # up to and including the API version segment, e.g. http://host:8000/v1
    model: str  # the model id the upstream expects
    # A reference resolved at start-up: "env:NAME" or "file:/path"; never the secret itself.
    credential: str | None = None
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 120.0  # until the response headers, or a non-streamed body
    idle_timeout_s: float = 60.0  # the longest silence allowed between stream events
    total_timeout_s: float = 600.0
    # Azure upstreams only: which Azure API, and its api-version.
    flavor: str | None = None  # "azure_openai" | "ai_inference"
    api_version: str | None = None
    # Bedrock upstreams only: the AWS region requests are signed for.
    aws_region: str | None = None


@dataclass(frozen=True)
class Deployment:
    id: str
    model: str
    provider: str
    region: str
    price: Price
    data_policy: DataPolicy
    weights: WeightsSource | None = None
    upstream: Upstream | None = None
    options: Mapping[str, int | str | bool] = field(default_factory=dict)
    limits: DeploymentLimits = DeploymentLimits()
