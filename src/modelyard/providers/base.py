"""The Provider protocol and the values that cross it.

A provider turns the canonical chat request into generation on one kind of upstream and reports
back a stream of events. Errors that can be known before generation starts (bad parameters,
context too long, queue full) are raised by `open_chat`, so they become real HTTP statuses;
anything after that arrives as a `Failed` event.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol

from modelyard.catalog.cards import Capability, Deployment, ModelCard
from modelyard.errors import ModelyardError
from modelyard.observability.metrics import MetricSample
from modelyard.protocol.chat import ChatCompletionRequest
from modelyard.protocol.embeddings import EmbeddingsRequest
from modelyard.structured.contract import OutputContract


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    # True when an upstream reported no usage and the gateway counted it itself.
    estimated: bool = False
    # Of the prompt tokens, how many the upstream served from its prompt cache.
    cached_prompt_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class TextDelta:
    choice: int
    text: str


@dataclass(frozen=True)
class ToolCallDelta:
    """One complete tool call (the only streamed form every SDK accepts, CLIENTS.md §4)."""

    choice: int
    index: int
    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ChoiceFinished:
    choice: int
    finish_reason: str


@dataclass(frozen=True)
class Finished:
    """The last event of a successful generation: exact token usage for the whole request."""

    usage: Usage


@dataclass(frozen=True)
class Failed:
    error: ModelyardError


ChatEvent = TextDelta | ToolCallDelta | ChoiceFinished | Finished | Failed


@dataclass(frozen=True)
class Embeddings:
    vectors: list[list[float]]
    prompt_tokens: int


class ChatStream(Protocol):
    """One admitted generation. Iterate it for events; `cancel` stops generation promptly."""

    @property
    def prompt_tokens(self) -> int: ...

    def __aiter__(self) -> AsyncIterator[ChatEvent]: ...

    def cancel(self) -> None: ...

    def on_usage(self, callback: Callable[[Usage], None]) -> None:
        """Call `callback` once, on the event loop, with the final usage of the generation,
        also when it was cancelled or failed part-way (then with what was generated)."""


class Provider(Protocol):
    async def start(self) -> None:
        """Load what the provider needs (models, connection pools) before serving."""

    async def stop(self) -> None:
        """Release everything `start` acquired; in-flight generations are cancelled."""

    def unready(self) -> dict[str, str]:
        """Deployments of this provider that cannot serve yet (or any more), with the reason;
        empty when all are ready. Readiness of the gateway is that of every provider."""
        ...

    def healthy(self, deployment_id: str) -> bool:
        """Whether this deployment can take a request now (a broken local engine cannot)."""
        ...

    def metric_samples(self) -> list[MetricSample]: ...

    def enforced_capabilities(self) -> frozenset[Capability]:
        """Capabilities this provider guarantees for any model, beyond what the card declares."""
        ...

    async def embed(
        self, request: EmbeddingsRequest, card: ModelCard, deployment: Deployment
    ) -> Embeddings:
        """Embed the request's inputs, or raise (CapabilityUnavailable when it cannot)."""
        ...

    async def open_chat(
        self,
        request: ChatCompletionRequest,
        card: ModelCard,
        deployment: Deployment,
        contract: OutputContract,
        caller: str = "",
    ) -> ChatStream:
        """Admit a chat request, or raise a ModelyardError before any output exists. `caller`
        names who asks (a key), for providers that share capacity fairly between callers."""
        ...
