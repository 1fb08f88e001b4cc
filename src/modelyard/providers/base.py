"""The provider protocols: what the serving layer asks of an upstream kind.

Every provider has the lifecycle and health of `Provider`; one that serves chat is also a
`ChatProvider`, one that serves embeddings an `EmbeddingProvider` (OpenAI-compatible upstreams
are both). A chat provider turns the canonical chat request into a `ChatStream` of events (see
`protocol/generation.py`). Errors that can be known before generation starts (bad parameters,
context too long, queue full) are raised by `open_chat`, so they become real HTTP statuses;
anything after that arrives as a `Failed` event.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Protocol, runtime_checkable

from modelyard.catalog.cards import Capability, Deployment, ModelCard
from modelyard.observability.metrics import MetricSample
from modelyard.protocol.chat import ChatCompletionRequest
from modelyard.protocol.embeddings import EmbeddingsRequest
from modelyard.protocol.generation import ChatEvent, Embeddings, Usage
from modelyard.structured.contract import OutputContract


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


@runtime_checkable
class ChatProvider(Provider, Protocol):
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


@runtime_checkable
class EmbeddingProvider(Provider, Protocol):
    async def embed(
        self, request: EmbeddingsRequest, card: ModelCard, deployment: Deployment
    ) -> Embeddings:
        """Embed the request's inputs, or raise (CapabilityUnavailable when it cannot)."""
        ...


@runtime_checkable
class TokenCounter(Protocol):
    """A chat provider that can count a request's prompt tokens exactly, as its deployment
    would read them (what `/v1/messages/count_tokens` answers); others are estimated."""

    async def count_prompt_tokens(
        self,
        request: ChatCompletionRequest,
        card: ModelCard,
        deployment: Deployment,
        contract: OutputContract,
    ) -> int: ...
