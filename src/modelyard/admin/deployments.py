"""`GET /admin/deployments`: every deployment as the router sees it now, for owners.

Health (the provider's readiness and the circuit breaker), requests in flight from this
replica, moving averages of latency, the last error (its code and status, never its message),
and a pause an upstream asked for. Each replica keeps its own view: this is the answering one's.
"""

from __future__ import annotations

from modelyard.admin.shapes import JsonObject
from modelyard.auth.principal import Principal
from modelyard.catalog.catalog import Catalog
from modelyard.policy.access import AccessPolicy
from modelyard.policy.rbac import Action
from modelyard.providers.registry import ProviderRegistry
from modelyard.routing.breaker import BreakerState
from modelyard.routing.deployment_stats import Fleet


class DeploymentsView:
    def __init__(
        self, catalog: Catalog, providers: ProviderRegistry, fleet: Fleet, policy: AccessPolicy
    ) -> None:
        self._catalog = catalog
        self._providers = providers
        self._fleet = fleet
        self._policy = policy

    def list_deployments(self, principal: Principal) -> JsonObject:
        self._policy.require_owner(principal, Action.METRICS_READ, "every deployment's health")
        return {"object": "list", "data": [self._entry(d.id) for d in self._catalog.deployments]}

    def _entry(self, deployment_id: str) -> JsonObject:
        deployment = self._catalog.deployment(deployment_id)
        assert deployment is not None
        provider = self._providers.for_deployment(deployment)
        unready = provider.unready().get(deployment_id)
        stats = self._fleet.of(deployment_id)
        breaker = stats.breaker.snapshot()
        if unready is not None or not provider.healthy(deployment_id):
            health = "unavailable"
        elif breaker.state is not BreakerState.CLOSED:
            health = "failing"
        else:
            health = "ready"
        last = stats.last_error
        return {
            "id": deployment_id,
            "model": deployment.model,
            "provider": deployment.provider,
            "region": deployment.region,
            "health": health,
            "reason": unready,
            "breaker": {
                "state": str(breaker.state),
                "consecutive_failures": breaker.consecutive_failures,
                "recent_attempts": breaker.recent_attempts,
                "recent_failures": breaker.recent_failures,
                "retry_in_s": breaker.retry_in_s,
            },
            "in_flight": stats.in_flight,
            "latency": {
                "ttft_ms": _ms(stats.ttft_s),
                "per_token_ms": _ms(stats.per_token_s),
                "samples": stats.samples,
            },
            "resting_s": round(stats.resting_s(), 3),
            "last_error": None
            if last is None
            else {"code": last.code, "status": last.status, "at": last.at.isoformat()},
        }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)
