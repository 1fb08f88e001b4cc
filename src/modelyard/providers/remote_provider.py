"""What every provider of remote upstreams shares: it owns its connection pool (the shared
transport) and closes it on stop, and it is always ready, with no metrics and no capability of
its own beyond the card's: a remote deployment's health is what its circuit breaker learns
from attempts (`routing/breaker.py`), not something the provider knows in advance."""

from __future__ import annotations

from modelyard.catalog.cards import Capability
from modelyard.observability.metrics import MetricSample
from modelyard.providers.transport import UpstreamTransport


class RemoteProvider:
    def __init__(self, transport: UpstreamTransport) -> None:
        self._transport = transport

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        await self._transport.aclose()

    def unready(self) -> dict[str, str]:
        return {}

    def healthy(self, deployment_id: str) -> bool:
        return True

    def metric_samples(self) -> list[MetricSample]:
        return []

    def enforced_capabilities(self) -> frozenset[Capability]:
        return frozenset()
