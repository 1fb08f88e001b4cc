"""Which deployment a route picks, over HTTP against a real gateway and scripted upstreams: the
circuit breaker's cycle, each strategy's choice, the requirements that exclude a candidate
(tools, JSON schema, context window, the prompt's language), and the card a route shows in
/v1/models and /models/info. One gateway serves every test; each test has its own deployments,
so one test's breakers and in-flight counts never steer another's."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from modelyard.testing.fake_upstream import JsonReply, completion_body
from tests.routing.world import (
    WEATHER_ARGUMENTS,
    WEATHER_TOOL,
    Deployment,
    Reply,
    ScriptedUpstream,
    chat,
    error_reply,
    routing_gateway,
    success_reply,
)
from tests.support.gateway import GatewayProcess
from tests.support.network_faults import closed_port

# A prompt with this word is answered HOLD_S late: the request stays in flight until then.
HOLD = "HOLD"
HOLD_S = 3.0
SLOW_UPSTREAM_S = 0.2

CITY_SCHEMA: dict[str, Any] = {
    "type": "json_schema",
    "json_schema": {
        "name": "city",
        "schema": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}

PROMPTS = {
    "en": "Could you please tell me what the weather will be like tomorrow afternoon in London, "
    "since we are planning a picnic with our friends?",
    "fr": "Pourriez-vous me dire quel temps il fera demain après-midi à Paris, car nous avons "
    "prévu un pique-nique au parc avec nos amis ?",
    "es": "¿Podrías decirme qué tiempo hará mañana por la tarde en Madrid, porque hemos "
    "planeado un picnic en el parque con nuestros amigos?",
    "de": "Könnten Sie mir bitte sagen, wie das Wetter morgen Nachmittag in Berlin wird, weil "
    "wir mit unseren Freunden ein Picknick im Park geplant haben?",
    "it": "Potresti dirmi che tempo farà domani pomeriggio a Roma, perché abbiamo organizzato "
    "un picnic nel parco con i nostri amici di scuola?",
}


@dataclass
class Selection:
    gateway: GatewayProcess
    client: httpx.Client
    # By deployment id (a deployment on a closed port has none).
    upstreams: dict[str, ScriptedUpstream]
    # Deployments whose upstream answers 500 for now.
    failing: set[str]

    def send(self, model: str, content: str = "Say hello.", **extra: Any) -> httpx.Response:
        return self.client.post("/v1/chat/completions", json=chat(model, content, **extra))

    def served_by(self, model: str, content: str = "Say hello.", **extra: Any) -> str:
        reply = self.send(model, content, **extra)
        assert reply.status_code == 200, reply.text
        return reply.headers["x-modelyard-deployment"]

    def received(self, deployment_id: str) -> int:
        """Requests the deployment's upstream has received so far."""
        return len(self.upstreams[deployment_id].requests)

    def deployment(self, deployment_id: str) -> dict[str, Any]:
        listed = self.gateway.admin("GET", "/admin/deployments")
        assert listed.status_code == 200, listed.text
        (entry,) = [d for d in listed.json()["data"] if d["id"] == deployment_id]
        return dict(entry)

    def wait_for_breaker(self, deployment_id: str, state: str, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.deployment(deployment_id)["breaker"]["state"] != state:
            assert time.monotonic() < deadline, f"{deployment_id}'s breaker never read {state}"
            time.sleep(0.05)

    def breaker_metric(self, deployment_id: str, state: str) -> float:
        return self.gateway.metric(
            "modelyard_deployment_breaker_state", deployment=deployment_id, state=state
        )


def scripted(name: str, failing: set[str], delay_s: float = 0.0) -> ScriptedUpstream:
    def script(index: int, body: Any) -> Reply:
        if name in failing:
            return error_reply(500)
        reply = (
            JsonReply(completion_body(WEATHER_ARGUMENTS))
            if body.get("response_format")
            else success_reply(body, 11, 5)
        )
        assert isinstance(reply, JsonReply)  # these tests never stream
        held = HOLD in str(body["messages"][-1]["content"])
        return dataclasses.replace(reply, delay_s=HOLD_S if held else delay_s)

    return ScriptedUpstream(name, script)


def candidates(*ids: str) -> list[dict[str, Any]]:
    return [{"deployment": i} for i in ids]


ROUTES: list[dict[str, Any]] = [
    {"id": "guarded", "candidates": candidates("flaky", "steady")},
    {"id": "prio", "candidates": candidates("prio-dead", "prio-first", "prio-second")},
    {
        "id": "ab",
        "strategy": "weighted",
        "candidates": [
            {"deployment": "w-three", "weight": 3},
            {"deployment": "w-one", "weight": 1},
        ],
    },
    {"id": "cheap", "strategy": "cheapest", "candidates": candidates("c-dear", "c-in", "c-out")},
    {"id": "busy", "strategy": "least_busy", "candidates": candidates("lb-a", "lb-b")},
    {"id": "fast", "strategy": "least_latency", "candidates": candidates("ll-slow", "ll-fast")},
    {"id": "needs", "candidates": candidates("req-beta", "req-alpha", "req-gamma")},
    {
        "id": "speak",
        "languages": ["en", "fr", "es", "de", "it"],
        "candidates": candidates("req-beta", "req-gamma", "req-alpha"),
    },
    {
        "id": "speak-narrow",
        "languages": ["en", "fr", "es", "de", "it"],
        "candidates": candidates("req-beta", "req-gamma"),
    },
]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Selection]:
    failing: set[str] = set()
    models = {"req-beta": "beta", "req-gamma": "gamma"}
    prices = {"c-dear": ("20", "20"), "c-in": ("1", "10"), "c-out": ("10", "1")}
    names = [
        "flaky", "steady", "prio-first", "prio-second", "w-three", "w-one",
        "c-dear", "c-in", "c-out", "lb-a", "lb-b", "ll-slow", "ll-fast",
        "req-beta", "req-alpha", "req-gamma",
    ]  # fmt: skip
    upstreams = {
        name: scripted(name, failing, SLOW_UPSTREAM_S if name == "ll-slow" else 0.0)
        for name in names
    }
    with contextlib.ExitStack() as stack:
        for upstream in upstreams.values():
            stack.enter_context(upstream.running())
        deployments = [
            Deployment(
                name, models.get(name, "alpha"), u.base_url, price=prices.get(name, ("1", "2"))
            )
            for name, u in upstreams.items()
        ]
        dead = Deployment("prio-dead", "alpha", f"http://127.0.0.1:{closed_port()}/v1")
        directory = tmp_path_factory.mktemp("selection")
        gateway = stack.enter_context(routing_gateway(directory, [*deployments, dead], ROUTES))
        client = stack.enter_context(
            httpx.Client(
                base_url=gateway.base_url,
                headers={"Authorization": f"Bearer {gateway.admin_key}"},
                timeout=30,
            )
        )
        yield Selection(gateway, client, upstreams, failing)


# -- the circuit breaker ---------------------------------------------------------------------------


def test_a_failing_deployment_opens_its_breaker_is_skipped_and_probed_after_the_cool_down(
    world: Selection,
) -> None:
    world.failing.add("flaky")
    for _ in range(3):  # BREAKER_ENV: three failures in a row open it
        reply = world.send("guarded")
        assert reply.headers["x-modelyard-deployment"] == "steady"
        assert reply.headers["x-modelyard-attempts"] == "2"
    assert world.received("flaky") == 3
    # Open: skipped without a request reaching its upstream (well within the 1 s cool-down).
    skipped = world.send("guarded")
    assert skipped.headers["x-modelyard-deployment"] == "steady"
    assert skipped.headers["x-modelyard-attempts"] == "1"
    assert (
        "excluded flaky (its circuit breaker is open" in skipped.headers["x-modelyard-route-reason"]
    )
    assert world.received("flaky") == 3
    flaky = world.deployment("flaky")
    assert flaky["health"] == "failing"
    assert flaky["breaker"]["consecutive_failures"] == 3
    assert flaky["last_error"]["code"] == "upstream_error"
    assert flaky["last_error"]["status"] == 502
    assert world.deployment("steady")["breaker"]["state"] == "closed"

    # The cool-down passes: the breaker reads half-open, and the next request is the probe.
    world.wait_for_breaker("flaky", "half_open")
    assert world.breaker_metric("flaky", "half_open") == 1
    assert world.gateway.metric("modelyard_deployment_breaker_open", deployment="flaky") == 1
    probe = world.send("guarded")
    assert probe.headers["x-modelyard-deployment"] == "steady"
    assert probe.headers["x-modelyard-attempts"] == "2"
    assert world.received("flaky") == 4
    # Still failing: open again, for twice the cool-down.
    reopened = world.deployment("flaky")["breaker"]
    assert reopened["state"] == "open" and reopened["retry_in_s"] > 1.0
    assert world.breaker_metric("flaky", "open") == 1

    world.failing.discard("flaky")
    world.wait_for_breaker("flaky", "half_open")
    assert world.served_by("guarded") == "flaky"
    assert world.received("flaky") == 5
    closed = world.deployment("flaky")
    assert closed["health"] == "ready"
    assert closed["breaker"]["state"] == "closed"
    assert closed["breaker"]["consecutive_failures"] == 0
    assert world.breaker_metric("flaky", "closed") == 1
    assert world.breaker_metric("flaky", "open") == 0
    assert world.gateway.metric("modelyard_deployment_breaker_open", deployment="flaky") == 0
    assert world.served_by("guarded") == "flaky"


# -- strategies ------------------------------------------------------------------------------------


def test_priority_takes_the_first_healthy_candidate_in_written_order(world: Selection) -> None:
    replies = [world.send("prio") for _ in range(6)]
    assert [r.headers["x-modelyard-deployment"] for r in replies] == ["prio-first"] * 6
    assert world.received("prio-first") == 6
    assert world.received("prio-second") == 0
    # prio-dead refuses connections: tried first until its breaker opens, then left out.
    assert replies[0].headers["x-modelyard-attempts"] == "2"
    assert (
        replies[0]
        .headers["x-modelyard-route-reason"]
        .startswith("route 'prio' (priority) chose prio-dead, then prio-first, prio-second;")
    )
    assert any(
        "chose prio-first, then prio-second; excluded prio-dead (its circuit breaker is open"
        in r.headers["x-modelyard-route-reason"]
        for r in replies[3:]
    )
    assert world.deployment("prio-dead")["last_error"]["code"] == "upstream_unavailable"


def test_weighted_splits_distinct_callers_near_the_weights(world: Selection) -> None:
    # One key, many end users: the arm is sticky per key and `user`.
    callers = 400
    arms = Counter(world.served_by("ab", user=f"caller-{number}") for number in range(callers))
    # 3:1 is 75%; with 400 callers hashed at random, 65-85% is over four standard deviations.
    assert 0.65 <= arms["w-three"] / callers <= 0.85, arms
    assert arms["w-three"] + arms["w-one"] == callers


def test_weighted_splits_keys_without_a_user_too(world: Selection) -> None:
    arms: Counter[str] = Counter()
    for number in range(40):
        made = world.gateway.admin(
            "POST", "/admin/projects/default/keys", {"name": f"caller-{number}"}
        )
        assert made.status_code == 201, made.text
        key = {"Authorization": f"Bearer {made.json()['key']}"}
        served = {
            world.client.post("/v1/chat/completions", json=chat("ab"), headers=key).headers[
                "x-modelyard-deployment"
            ]
            for _ in range(3)
        }
        assert len(served) == 1, served  # each key keeps its arm
        arms[served.pop()] += 1
    assert set(arms) == {"w-three", "w-one"}, arms


def test_weighted_keeps_one_caller_on_its_arm_until_that_arm_fails(world: Selection) -> None:
    before = {arm: world.received(arm) for arm in ("w-three", "w-one")}
    arms = Counter(world.served_by("ab", user="one-caller") for _ in range(1000))
    assert len(arms) == 1, arms
    ((home, _),) = arms.items()
    other = "w-one" if home == "w-three" else "w-three"
    assert world.received(home) - before[home] == 1000
    assert world.received(other) == before[other]

    world.failing.add(home)
    try:
        moved = [world.served_by("ab", user="one-caller") for _ in range(5)]
        assert moved == [other] * 5
        assert world.deployment(home)["breaker"]["state"] != "closed"
    finally:
        world.failing.discard(home)
    world.wait_for_breaker(home, "half_open")
    back = [world.served_by("ab", user="one-caller") for _ in range(5)]
    assert back == [home] * 5


def test_cheapest_picks_the_lowest_expected_cost_of_prompt_and_max_tokens(
    world: Selection,
) -> None:
    # c-in: $1 in, $10 out per 1M tokens; c-out: $10 in, $1 out; c-dear: $20 both.
    long_prompt = "Summarise this sentence about routing and prices. " * 80  # ~1,000 tokens
    assert world.served_by("cheap", max_tokens=1) == "c-in"  # about 7 prompt tokens
    assert world.served_by("cheap", max_tokens=100) == "c-out"
    assert world.served_by("cheap") == "c-out"  # 256 output tokens assumed
    assert world.served_by("cheap", long_prompt, max_tokens=100) == "c-in"
    reply = world.send("cheap", max_tokens=1)
    assert reply.headers["x-modelyard-route-reason"] == (
        "route 'cheap' (cheapest) chose c-in, then c-out, c-dear"
    )
    assert world.received("c-dear") == 0


def test_least_busy_sends_to_the_candidate_with_fewer_requests_in_flight(
    world: Selection,
) -> None:
    def arrived() -> int:
        return world.received("lb-a") + world.received("lb-b")

    def send_and_wait_for_arrival(pool: ThreadPoolExecutor) -> Future[str]:
        expected = arrived() + 1
        sent = pool.submit(world.served_by, "busy", f"{HOLD} this request, please.")
        deadline = time.monotonic() + HOLD_S / 2
        while arrived() < expected:
            assert time.monotonic() < deadline, "a held request never reached its upstream"
            time.sleep(0.01)
        return sent

    with ThreadPoolExecutor(3) as pool:
        held = [send_and_wait_for_arrival(pool) for _ in range(3)]
        # Ties go to the written order: lb-a, then lb-b (lb-a busy), then lb-a (1 each).
        assert world.deployment("lb-a")["in_flight"] == 2
        assert world.deployment("lb-b")["in_flight"] == 1
        assert world.served_by("busy") == "lb-b"
        assert [f.result() for f in held] == ["lb-a", "lb-b", "lb-a"]
    assert world.deployment("lb-a")["in_flight"] == 0
    assert world.served_by("busy") == "lb-a"


def test_least_latency_prefers_the_faster_upstream_and_still_explores(world: Selection) -> None:
    # ll-slow is written first but answers 0.2 s late. An unmeasured candidate goes first, so
    # both are measured at the start (unless exploring picks ll-slow three times in a row).
    assert {world.served_by("fast") for _ in range(4)} == {"ll-slow", "ll-fast"}
    calls = 400
    arms = Counter(world.served_by("fast") for _ in range(calls))
    # 5% of requests explore a random candidate: about 2.5% reach ll-slow (10 of 400; none in
    # 400 has a chance of 0.975^400, about 4e-5).
    assert arms["ll-fast"] >= 0.85 * calls, arms
    assert arms["ll-slow"] >= 1, arms
    slow, quick = world.deployment("ll-slow"), world.deployment("ll-fast")
    assert slow["latency"]["ttft_ms"] > quick["latency"]["ttft_ms"]


# -- requirements ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "missing"),
    [
        ({"tools": [WEATHER_TOOL]}, "tools"),
        ({"tools": [WEATHER_TOOL], "tool_choice": "required"}, "tools"),
        (
            {
                "tools": [WEATHER_TOOL],
                "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            },
            "tools",
        ),
        ({"response_format": CITY_SCHEMA}, "json_schema"),
    ],
    ids=["tools", "tool-choice-required", "tool-choice-named", "json-schema"],
)
def test_a_candidate_without_a_needed_capability_is_skipped(
    world: Selection, extra: dict[str, Any], missing: str
) -> None:
    assert world.served_by("needs") == "req-beta"  # first when nothing special is needed
    beta_before = world.received("req-beta")
    reply = world.send("needs", "What is the weather in Paris?", **extra)
    assert reply.status_code == 200, reply.text
    assert reply.headers["x-modelyard-deployment"] == "req-alpha"
    assert reply.headers["x-modelyard-route-reason"] == (
        f"route 'needs' (priority) chose req-alpha, then req-gamma; "
        f"excluded req-beta (it does not support {missing})"
    )
    assert world.received("req-beta") == beta_before


def test_a_prompt_too_long_for_a_candidates_window_goes_to_a_larger_one(
    world: Selection,
) -> None:
    beta_before = world.received("req-beta")
    long_prompt = "Please read this sentence about context windows carefully. " * 160
    assert len(long_prompt) // 4 > 2048  # beyond req-beta's window by the gateway's estimate
    reply = world.send("needs", long_prompt)
    assert reply.status_code == 200, reply.text
    assert reply.headers["x-modelyard-deployment"] == "req-alpha"
    # Not excluded (the estimate may be pessimistic) but tried last.
    assert reply.headers["x-modelyard-route-reason"] == (
        "route 'needs' (priority) chose req-alpha, then req-gamma, req-beta"
    )
    assert world.received("req-beta") == beta_before


@pytest.mark.parametrize(
    ("language", "expected", "excluded"),
    [
        ("en", "req-beta", []),
        ("fr", "req-gamma", ["req-beta"]),
        ("es", "req-alpha", ["req-beta", "req-gamma"]),
        ("de", "req-alpha", ["req-beta", "req-gamma"]),
        ("it", "req-alpha", ["req-beta", "req-gamma"]),
    ],
)
def test_a_prompt_goes_to_a_candidate_whose_card_lists_its_language(
    world: Selection, language: str, expected: str, excluded: list[str]
) -> None:
    reply = world.send("speak", PROMPTS[language])
    assert reply.status_code == 200, reply.text
    assert reply.headers["x-modelyard-deployment"] == expected
    reason = reply.headers["x-modelyard-route-reason"]
    for deployment_id in excluded:
        assert (
            f"{deployment_id} (its model does not list the prompt's language '{language}')"
            in reason
        ), reason
    assert ("excluded" in reason) == bool(excluded), reason
    listed = world.client.get(f"/v1/models/{expected.removeprefix('req-')}").json()
    assert language in listed["languages"]


def test_a_language_no_candidate_lists_is_refused_naming_each_candidate(
    world: Selection,
) -> None:
    before = {d: world.received(d) for d in ("req-beta", "req-gamma")}
    reply = world.send("speak-narrow", PROMPTS["es"])
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["code"] == "no_eligible_deployment"
    assert error["type"] == "invalid_request_error"
    assert error["param"] == "model"
    assert error["message"] == (
        "No deployment of route 'speak-narrow' can serve this request: "
        "req-beta: its model does not list the prompt's language 'es'; "
        "req-gamma: its model does not list the prompt's language 'es' "
        "(the prompt's language is 'es')."
    )
    assert {d: world.received(d) for d in before} == before


# -- what a route shows ----------------------------------------------------------------------------


def test_routes_are_listed_with_the_card_every_candidate_guarantees(world: Selection) -> None:
    listed = world.client.get("/v1/models")
    assert listed.status_code == 200, listed.text
    entries = {entry["id"]: entry for entry in listed.json()["data"]}
    assert {r["id"] for r in ROUTES} <= set(entries)
    assert entries["alpha"]["type"] == "base"

    needs = entries["needs"]
    assert needs["type"] == "route"
    assert needs["owned_by"] == "modelyard route"
    # beta's limits: what every candidate guarantees.
    assert needs["context_window"] == needs["max_context_length"] == 2048
    assert needs["max_output_tokens"] == 512
    assert needs["languages"] == ["en"]
    assert needs["capabilities"]["completion_chat"] and needs["capabilities"]["streaming"]
    assert not needs["capabilities"]["function_calling"]
    assert not needs["capabilities"]["json_schema"]
    assert needs["route"] == {
        "strategy": "priority",
        "candidates": [
            {"deployment": "req-beta", "weight": 1},
            {"deployment": "req-alpha", "weight": 1},
            {"deployment": "req-gamma", "weight": 1},
        ],
        "languages": None,
        "max_attempts": 3,
        "regions": ["eu-west"],
    }
    assert [d["id"] for d in needs["deployments"]] == ["req-beta", "req-alpha", "req-gamma"]

    ab = entries["ab"]
    assert ab["route"]["strategy"] == "weighted"
    assert ab["route"]["candidates"] == [
        {"deployment": "w-three", "weight": 3},
        {"deployment": "w-one", "weight": 1},
    ]
    assert ab["context_window"] == 32000
    assert ab["languages"] == ["de", "en", "es", "fr", "it"]
    assert ab["capabilities"]["function_calling"] and ab["capabilities"]["json_schema"]

    speak = entries["speak"]
    assert speak["route"]["languages"] == ["en", "fr", "es", "de", "it"]
    assert speak["languages"] == ["en"]  # the route's languages that every candidate lists

    one = world.client.get("/v1/models/needs")
    assert one.status_code == 200 and one.json() == needs


@pytest.mark.parametrize("route", ["needs", "ab"])
def test_the_azure_model_info_names_a_route_by_its_deployment_header(
    world: Selection, route: str
) -> None:
    info = world.client.get(
        "/models/info",
        params={"api-version": "2024-05-01-preview"},
        headers={"azureml-model-deployment": route},
    )
    assert info.status_code == 200, info.text
    assert info.json() == {
        "model_name": route,
        "model_type": "chat_completion",
        "model_provider_name": "modelyard route",
    }
