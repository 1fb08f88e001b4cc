"""The router: from the name a client sent to a plan of deployments to try, with the reason for
every inclusion and exclusion.

A name is a route (several candidates and a strategy, `route_book.py`) or a model (its
deployments, in catalog order, as a priority route). Every candidate is checked against the
request's requirements first (`requirements.py`: region, capabilities, context window,
language), then against its health (a local engine that is down, an open circuit breaker); the
strategy orders what is left (`strategies.py`), a deployment resting after a 429's Retry-After
goes last, and the route's `max_attempts` cuts the list. Nothing here calls a model: the
request lifecycle runs the plan (`serving/attempts.py`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from modelyard.auth.directory import ProjectRecord
from modelyard.catalog.cards import Capability, Deployment, ModelCard
from modelyard.catalog.catalog import Catalog
from modelyard.catalog.routes import MAX_ATTEMPTS_CAP, RouteSpec, Strategy
from modelyard.errors import (
    EngineUnavailable,
    ModelNotFound,
    ModelyardError,
    NoEligibleDeployment,
    NoHealthyDeployment,
)
from modelyard.protocol.chat import ChatCompletionRequest
from modelyard.providers.base import ChatProvider
from modelyard.providers.registry import ProviderRegistry
from modelyard.routing.breaker import BreakerState
from modelyard.routing.deployment_stats import Fleet
from modelyard.routing.requirements import Requirements, requirements_for
from modelyard.routing.route_book import RouteBook
from modelyard.routing.strategies import Option, Situation, order


@dataclass(frozen=True)
class PlannedAttempt:
    deployment: Deployment
    card: ModelCard
    provider: ChatProvider


@dataclass(frozen=True)
class Exclusion:
    deployment_id: str
    reason: str
    # Excluded for its health (it may serve again soon), not for what the request needs.
    transient: bool
    # What the deployment itself answers now, when asked alone (a local engine that is down).
    own_error: ModelyardError | None = None


@dataclass(frozen=True)
class RoutePlan:
    name: str
    route: RouteSpec | None
    strategy: Strategy
    attempts: tuple[PlannedAttempt, ...]
    excluded: tuple[Exclusion, ...]
    requirements: Requirements
    reason: str

    @property
    def arm(self) -> PlannedAttempt:
        return self.attempts[0]


class Router:
    def __init__(
        self,
        catalog: Catalog,
        book: RouteBook,
        providers: ProviderRegistry,
        fleet: Fleet,
        detect_language: Callable[[str, tuple[str, ...]], str | None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._catalog = catalog
        self._book = book
        self._providers = providers
        self._fleet = fleet
        self._detect = detect_language
        self._clock = clock

    def target(
        self, name: str, deployment_id: str | None = None
    ) -> tuple[str, ModelCard, frozenset[Capability]]:
        """What a name stands for: the route's or model's id (what access rules name), its
        card, and what some deployment behind the name can give beyond the card: for a model,
        what the gateway enforces on its deployments; for a route (whose card promises only
        what every candidate gives), what any candidate gives, natively or enforced. A request
        needing more is refused at once; within that, the plan excludes the candidates that
        lack what it needs. ModelNotFound for neither."""
        route = None if deployment_id is not None else self._book.route(name)
        if route is not None:
            route_card = self._book.card(route)
            return route.id, route_card.card, route_card.reachable
        resolution = self._catalog.resolve(name)
        enforced: set[Capability] = set()
        for deployment in resolution.deployments:
            if deployment_id in (None, deployment.id):
                provider = self._providers.for_deployment(deployment)
                enforced |= provider.enforced_capabilities()
        return resolution.card.id, resolution.card, frozenset(enforced)

    def plan(
        self,
        request: ChatCompletionRequest,
        needs: frozenset[Capability],
        project: ProjectRecord,
        caller: str,
        deployment_id: str | None = None,
    ) -> RoutePlan:
        """`needs`: what the output contract requires; `deployment_id` pins one deployment of a
        model (Azure OpenAI paths name it)."""
        name = request.model
        route = None if deployment_id is not None else self._book.route(name)
        if route is not None:
            options = list(self._route_options(route))
            strategy, languages = route.strategy, route.languages
            max_attempts = route.attempts_allowed()
        else:
            deployments = self._catalog.resolve(name).deployments
            options = [Option(d, 1) for d in deployments if deployment_id in (None, d.id)]
            if not options:
                raise ModelNotFound(f"The model '{name}' has no deployment.", param="model")
            strategy, languages = Strategy.PRIORITY, None
            max_attempts = min(len(options), MAX_ATTEMPTS_CAP)
        requirements = requirements_for(
            request, needs, project.allowed_regions, languages, self._detect
        )
        eligible: list[Option] = []
        excluded: list[Exclusion] = []
        for option in options:
            exclusion = self._exclusion(option.deployment, requirements)
            if exclusion is None:
                eligible.append(option)
            else:
                excluded.append(exclusion)
        if not eligible:
            raise _nothing_eligible(name, route is not None, excluded, requirements)
        situation = Situation(
            caller=caller,
            prompt_tokens=requirements.prompt_tokens,
            output_tokens=requirements.output_tokens,
            fleet=self._fleet,
            now=self._clock(),
        )
        ordered = order(strategy, route.id if route else name, eligible, situation)
        # Last come, in this order: candidates the request seems too long for (largest window
        # first: the estimate may be pessimistic, and if not, their exact refusal is the
        # answer), then those that asked for a pause with a 429's Retry-After (if they alone
        # remain, it is their own 429 the client sees).
        ordered.sort(key=lambda o: self._lateness(o.deployment, requirements))
        attempts = tuple(self._planned(o.deployment) for o in ordered[:max_attempts])
        return RoutePlan(
            name=name,
            route=route,
            strategy=strategy,
            attempts=attempts,
            excluded=tuple(excluded),
            requirements=requirements,
            reason=_reason(name, route, strategy, attempts, len(options), excluded),
        )

    def _lateness(self, deployment: Deployment, requirements: Requirements) -> tuple[bool, int]:
        """Sorts stably after the strategy's order: 0-ish first (fits, not resting)."""
        card = self._catalog.card(deployment.model)
        too_small = 0 if requirements.fits(card) else 1_000_000_000 - card.context_window
        return self._fleet.of(deployment.id).resting_s() > 0, too_small

    def _route_options(self, route: RouteSpec) -> Iterable[Option]:
        for candidate in route.candidates:
            deployment = self._catalog.deployment(candidate.deployment)
            if deployment is not None:  # a stored route may outlive a catalog entry
                yield Option(deployment, candidate.weight)

    def _exclusion(self, deployment: Deployment, requirements: Requirements) -> Exclusion | None:
        card = self._catalog.card(deployment.model)
        chat = self._providers.chat_or_none(deployment)
        provider = chat if chat is not None else self._providers.for_deployment(deployment)
        reason = requirements.exclusion(deployment, card, provider.enforced_capabilities())
        if reason is not None:
            return Exclusion(deployment.id, reason, transient=False)
        if chat is None:
            return Exclusion(deployment.id, "it does not serve chat", transient=False)
        if not chat.healthy(deployment.id):
            why = chat.unready().get(deployment.id, "not ready")
            down = EngineUnavailable(
                f"The local model deployment '{deployment.id}' is not available: {why}.",
                retry_after_s=2,
            )
            return Exclusion(
                deployment.id, f"its local engine is down ({why})", transient=True, own_error=down
            )
        stats = self._fleet.of(deployment.id)
        if stats.breaker.state is not BreakerState.OPEN:  # a property: no snapshot built
            return None
        breaker = stats.breaker.snapshot()
        if breaker.state is BreakerState.OPEN and breaker.retry_in_s:
            return Exclusion(
                deployment.id,
                f"its circuit breaker is open (next try in {breaker.retry_in_s:.0f} s)",
                transient=True,
            )
        return None

    def _planned(self, deployment: Deployment) -> PlannedAttempt:
        provider = self._providers.chat(deployment)  # InternalError if none: excluded above
        return PlannedAttempt(deployment, self._catalog.card(deployment.model), provider)


def _nothing_eligible(
    name: str, is_route: bool, excluded: list[Exclusion], requirements: Requirements
) -> ModelyardError:
    if len(excluded) == 1 and excluded[0].own_error is not None:
        return excluded[0].own_error  # one deployment: its own answer is the clearest
    kind = "route" if is_route else "model"
    reasons = "; ".join(f"{e.deployment_id}: {e.reason}" for e in excluded)
    if requirements.language is not None:
        reasons += f" (the prompt's language is '{requirements.language}')"
    if any(e.transient for e in excluded):
        return NoHealthyDeployment(
            f"No deployment of {kind} '{name}' can take this request now: {reasons}.",
            retry_after_s=5,
        )
    return NoEligibleDeployment(
        f"No deployment of {kind} '{name}' can serve this request: {reasons}.", param="model"
    )


def _reason(
    name: str,
    route: RouteSpec | None,
    strategy: Strategy,
    attempts: tuple[PlannedAttempt, ...],
    candidates: int,
    excluded: list[Exclusion],
) -> str:
    arm = attempts[0].deployment.id
    if route is None and candidates == 1:
        return "the only deployment of this model"
    if route is None:
        head = f"{arm}: first of {candidates} deployments of model '{name}'"
    else:
        head = f"route '{route.id}' ({strategy}) chose {arm}"
    if len(attempts) > 1:
        head += f", then {', '.join(a.deployment.id for a in attempts[1:])}"
    if excluded:
        head += "; excluded " + ", ".join(f"{e.deployment_id} ({e.reason})" for e in excluded)
    return head
