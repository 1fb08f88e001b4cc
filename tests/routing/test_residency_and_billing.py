"""Data residency fails closed, a refusal says why for each candidate, and a request whose
attempts fail in every way is billed once for exactly what each attempt consumed.

Two gateways. The residency one has every out-of-region deployment behind its own
`ByteCountingProxy`, so that "never contacted" is counted in bytes, and in-region deployments
of which one fails every third request. The billing one has a priority route over three
upstreams that fail about 30% of the time in mixed ways, and a weighted A/B route whose usage
report is read back by route and arm, over the API and the CLI.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import os
import random
import re
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pytest

from modelyard.protocol.chat import ChatCompletionRequest, estimate_prompt_tokens
from modelyard.testing.fake_upstream import JsonReply, StreamReply, stream_events
from tests.routing.world import (
    CUT_REPLY,
    WEATHER_TOOL,
    Deployment,
    Reply,
    ScriptedUpstream,
    Served,
    chat,
    error_reply,
    reported_usage,
    routing_gateway,
    success_reply,
)
from tests.support.gateway import GatewayProcess
from tests.support.ledger_rows import wait_rows
from tests.support.network_faults import ByteCountingProxy, closed_port

AZURE_API_VERSION = "2024-10-21"


@dataclass(frozen=True)
class Answer:
    status: int
    headers: httpx.Headers
    text: str
    elapsed_ms: float

    def error(self) -> dict[str, Any]:
        error: dict[str, Any] = httpx.Response(self.status, text=self.text).json()["error"]
        return error


def ask(
    client: httpx.Client, gateway: GatewayProcess, key: str, body: dict[str, Any], path: str = ""
) -> Answer:
    """One chat request, streamed or not, read to its end."""
    started = time.monotonic()
    with client.stream(
        "POST",
        gateway.base_url + (path or "/v1/chat/completions"),
        json=body,
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    ) as reply:
        received = bytearray()
        # A stream that fails after its first byte ends with an error event, then the
        # connection is dropped: what arrived is the answer.
        with contextlib.suppress(httpx.RemoteProtocolError):
            for chunk in reply.iter_bytes():
                received += chunk
    elapsed_ms = (time.monotonic() - started) * 1000
    return Answer(reply.status_code, reply.headers, received.decode(), elapsed_ms)


def new_project(gateway: GatewayProcess, project: str, **fields: Any) -> None:
    made = gateway.admin("POST", "/admin/projects", {"id": project, **fields})
    assert made.status_code == 201, made.text


def new_key(gateway: GatewayProcess, project: str, **fields: Any) -> str:
    made = gateway.admin("POST", f"/admin/projects/{project}/keys", {"name": "k", **fields})
    assert made.status_code == 201, made.text
    key: str = made.json()["key"]
    return key


def assert_openai_error(answer: Answer, status: int, code: str) -> dict[str, Any]:
    assert answer.status == status, answer.text
    error = answer.error()
    assert set(error) == {"message", "type", "param", "code"}, error
    assert error["code"] == code, error
    return error


# -- residency ------------------------------------------------------------------------------------

OUTSIDE = {
    "alpha-us": ("alpha", "us-east"),
    "alpha-ap": ("alpha", "ap-south"),
    "gamma-us": ("gamma", "us-east"),
    "gamma-ap": ("gamma", "ap-south"),
    "beta-us": ("beta", "us-east"),
}
IN_REGION = {"alpha-eu", "alpha-eu2"}
# Out-of-region deployments are the cheapest, so `cheapest` would pick them first.
CHEAP = ("0.1", "0.2")
# Upstream timeouts no busy test machine reaches: every failure here is a scripted one.
PATIENT: dict[str, Any] = {"read_timeout_s": 30.0, "idle_timeout_s": 30.0}


def _route(
    route_id: str, strategy: str, candidates: Sequence[str | tuple[str, int]]
) -> dict[str, Any]:
    listed = [c if isinstance(c, tuple) else (c, 1) for c in candidates]
    return {
        "id": route_id,
        "strategy": strategy,
        "candidates": [{"deployment": d, "weight": w} for d, w in listed],
    }


# Every strategy, with out-of-region candidates first (or, weighted, heaviest).
RESIDENCY_ROUTES = [
    _route("res-priority", "priority", ["alpha-us", "gamma-ap", "alpha-eu", "alpha-eu2"]),
    _route(
        "res-weighted",
        "weighted",
        [("alpha-us", 1000), ("gamma-us", 1000), ("alpha-eu", 1), ("alpha-eu2", 1)],
    ),
    _route("res-latency", "least_latency", ["alpha-ap", "gamma-us", "alpha-eu", "alpha-eu2"]),
    _route("res-cheapest", "cheapest", ["gamma-us", "alpha-ap", "alpha-eu", "alpha-eu2"]),
    _route("res-busy", "least_busy", ["alpha-us", "gamma-ap", "alpha-eu", "alpha-eu2"]),
    _route("res-outside", "priority", ["alpha-us", "gamma-ap", "beta-us"]),
    _route("res-breaker", "priority", ["alpha-ap", "beta-eu-down"]),
    _route("res-mixed", "priority", ["alpha-us", "beta-eu-down"]),
]


@dataclass
class ResidencyWorld:
    gateway: GatewayProcess
    proxies: dict[str, ByteCountingProxy]
    outside: ScriptedUpstream
    in_region: list[ScriptedUpstream]
    pinned_key: str
    roaming_key: str

    def outside_traffic(self) -> dict[str, tuple[int, int]]:
        """Connections and bytes each out-of-region deployment has received so far."""
        return {d: (p.connections, p.bytes_received) for d, p in self.proxies.items()}


def _every_third_fails(index: int, body: Any) -> Reply:
    return error_reply(503) if index % 3 == 2 else success_reply(body, 12, 6)


@pytest.fixture(scope="module")
def residency(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ResidencyWorld]:
    outside = ScriptedUpstream("outside", lambda index, body: success_reply(body, 10, 5))
    flaky = ScriptedUpstream("alpha-eu", _every_third_fails)
    steady = ScriptedUpstream("alpha-eu2", lambda index, body: success_reply(body, 8, 4))
    with contextlib.ExitStack() as stack:
        for upstream in (outside, flaky, steady):
            stack.enter_context(upstream.running())
        proxies = {d: stack.enter_context(ByteCountingProxy(outside.port)) for d in OUTSIDE}
        deployments = [
            Deployment(d, model, proxies[d].base_url, region=region, price=CHEAP)
            for d, (model, region) in OUTSIDE.items()
        ]
        deployments += [
            Deployment("alpha-eu", "alpha", flaky.base_url, price=("5", "10"), **PATIENT),
            Deployment("alpha-eu2", "alpha", steady.base_url, price=("6", "12"), **PATIENT),
            Deployment("beta-eu-down", "beta", f"http://127.0.0.1:{closed_port()}/v1"),
        ]
        directory = tmp_path_factory.mktemp("residency")
        gateway = stack.enter_context(routing_gateway(directory, deployments, RESIDENCY_ROUTES))
        new_project(gateway, "pinned", allowed_regions=["eu-west"])
        new_project(gateway, "roaming")
        yield ResidencyWorld(
            gateway,
            proxies,
            outside,
            [flaky, steady],
            pinned_key=new_key(gateway, "pinned"),
            roaming_key=new_key(gateway, "roaming"),
        )


def _residency_load() -> list[tuple[str, dict[str, Any]]]:
    """(path, body): every strategy's route and the model with an in-region deployment,
    streamed and not, with tools and without, twice over."""
    load: list[tuple[str, dict[str, Any]]] = []
    names = [r["id"] for r in RESIDENCY_ROUTES[:5]] + ["alpha"]
    for round_ in range(2):
        for name in names:
            for stream in (False, True):
                for tools in (False, True):
                    extra: dict[str, Any] = {"stream": stream}
                    if tools:
                        extra["tools"] = [WEATHER_TOOL]
                    load.append(("", chat(name, f"Round {round_}: weather in Paris?", **extra)))
    return load


def _refused_load() -> list[tuple[str, dict[str, Any], int, str]]:
    """(path, body, status, code): names that only out-of-region deployments serve."""
    refused: list[tuple[str, dict[str, Any], int, str]] = []
    for deployment in OUTSIDE:
        path = f"/openai/deployments/{deployment}/chat/completions?api-version={AZURE_API_VERSION}"
        refused.append((path, chat(deployment), 400, "no_eligible_deployment"))
        refused.append((path, chat(deployment, stream=True), 400, "no_eligible_deployment"))
        # A deployment id called as the model pins that deployment: refused for its region.
        refused.append(("", chat(deployment), 400, "no_eligible_deployment"))
        refused.append(("", chat(deployment, stream=True), 400, "no_eligible_deployment"))
    for name in ("gamma", "res-outside"):
        refused.append(("", chat(name), 400, "no_eligible_deployment"))
        refused.append(("", chat(name, stream=True), 400, "no_eligible_deployment"))
    return refused


def test_a_pinned_project_never_sends_a_byte_out_of_region_whatever_the_strategy(
    residency: ResidencyWorld,
) -> None:
    gateway, key = residency.gateway, residency.pinned_key
    before = residency.outside_traffic()
    served_outside = len(residency.outside.served)
    failures_before = sum(
        isinstance(s.reply, JsonReply) and s.reply.status >= 500
        for s in residency.in_region[0].served
    )
    load = _residency_load()
    refused = _refused_load()
    with httpx.Client() as client, ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda job: ask(client, gateway, key, job[1], job[0]), load))
        refusals = list(pool.map(lambda job: ask(client, gateway, key, job[1], job[0]), refused))
    for (_, body), answer in zip(load, answers, strict=True):
        assert answer.status == 200, (body, answer.text)
        assert answer.headers["x-modelyard-deployment"] in IN_REGION, body
        assert '"error"' not in answer.text, answer.text
        if body.get("tools"):
            assert "get_weather" in answer.text
        reason = answer.headers["x-modelyard-route-reason"]
        assert "is not allowed for this project" in reason, reason
    for (_, _, status, code), answer in zip(refused, refusals, strict=True):
        assert_openai_error(answer, status, code)
    # The in-region deployment failed part of the time, and those requests moved on in region.
    failures = sum(
        isinstance(s.reply, JsonReply) and s.reply.status >= 500
        for s in residency.in_region[0].served
    )
    assert failures > failures_before
    assert any(int(a.headers["x-modelyard-attempts"]) > 1 for a in answers)
    assert residency.outside_traffic() == before
    assert len(residency.outside.served) == served_outside


def test_the_same_routes_reach_other_regions_for_a_project_without_a_pin(
    residency: ResidencyWorld,
) -> None:
    """The positive control: the proxies do count what the gateway sends through them."""
    gateway, key = residency.gateway, residency.roaming_key
    before = residency.outside_traffic()
    with httpx.Client() as client:
        for deployment in OUTSIDE:
            path = (
                f"/openai/deployments/{deployment}/chat/completions?api-version={AZURE_API_VERSION}"
            )
            answer = ask(client, gateway, key, chat(deployment), path)
            assert answer.status == 200, answer.text
            assert answer.headers["x-modelyard-deployment"] == deployment
        first = ask(client, gateway, key, chat("res-priority", stream=True))
        assert first.status == 200 and first.headers["x-modelyard-deployment"] == "alpha-us"
    after = residency.outside_traffic()
    for deployment in OUTSIDE:
        assert after[deployment][0] > before[deployment][0], deployment
        assert after[deployment][1] > before[deployment][1], deployment
    assert residency.proxies["alpha-us"].bytes_sent > 0


# -- refusals and what they reveal ---------------------------------------------------------------

ALL_DEPLOYMENTS = [*OUTSIDE, "alpha-eu", "alpha-eu2", "beta-eu-down"]


def named_deployments(message: str) -> set[str]:
    return {d for d in ALL_DEPLOYMENTS if re.search(rf"\b{re.escape(d)}\b", message)}


def test_a_route_with_no_allowed_candidate_is_refused_with_each_candidates_reason(
    residency: ResidencyWorld,
) -> None:
    gateway = residency.gateway
    new_project(gateway, "narrow", allowed_regions=["eu-west"], allowed_models=["res-outside"])
    key = new_key(gateway, "narrow")
    before = residency.outside_traffic()
    with httpx.Client() as client:
        answer = ask(client, gateway, key, chat("res-outside"))
        error = assert_openai_error(answer, 400, "no_eligible_deployment")
        assert error["type"] == "invalid_request_error" and error["param"] == "model"
        message = error["message"]
        assert message.startswith("No deployment of route 'res-outside' can serve this request")
        for deployment in ("alpha-us", "gamma-ap", "beta-us"):
            region = OUTSIDE[deployment][1]
            assert f"{deployment}: its region '{region}' is not allowed for this project" in message
        # It names what the caller can read about the route anyway, and nothing else.
        card = client.get(
            f"{gateway.base_url}/v1/models/res-outside",
            headers={"Authorization": f"Bearer {key}"},
        )
        assert card.status_code == 200, card.text
        listed = {d["id"] for d in card.json()["deployments"]}
        assert named_deployments(message) == listed == {"alpha-us", "gamma-ap", "beta-us"}
        # A name the caller may not use is refused before any candidate is considered.
        other = assert_openai_error(
            ask(client, gateway, key, chat("res-priority")), 403, "permission_denied"
        )
        assert named_deployments(other["message"]) == set()
        limited = new_key(gateway, "pinned", models=["res-priority"])
        by_key = assert_openai_error(
            ask(client, gateway, limited, chat("res-outside")), 403, "permission_denied"
        )
        assert named_deployments(by_key["message"]) == set()
        # A model name refuses the same way, naming only that model's deployments.
        gamma = assert_openai_error(
            ask(client, gateway, residency.pinned_key, chat("gamma")), 400, "no_eligible_deployment"
        )
        assert gamma["message"].startswith("No deployment of model 'gamma'")
        assert named_deployments(gamma["message"]) == {"gamma-us", "gamma-ap"}
    assert residency.outside_traffic() == before


def test_a_refusal_names_the_language_each_candidate_cannot_serve(
    residency: ResidencyWorld,
) -> None:
    gateway = residency.gateway
    route = {"candidates": [{"deployment": "gamma-us"}, {"deployment": "beta-eu-down"}]}
    made = gateway.admin("PUT", "/admin/routes/res-french", route | {"languages": ["en", "fr"]})
    assert made.status_code == 200, made.text
    before = residency.outside_traffic()
    prompt = "Bonjour, pourriez-vous me dire quel temps il fera demain à Paris, s'il vous plaît ?"
    with httpx.Client() as client:
        answer = ask(client, gateway, residency.pinned_key, chat("res-french", prompt))
    message = assert_openai_error(answer, 400, "no_eligible_deployment")["message"]
    assert "gamma-us: its region 'us-east' is not allowed for this project" in message
    assert "beta-eu-down: its model does not list the prompt's language 'fr'" in message
    assert "(the prompt's language is 'fr')" in message
    assert residency.outside_traffic() == before


def test_a_refusal_names_the_capability_a_candidate_lacks(residency: ResidencyWorld) -> None:
    """Every candidate of `res-mixed` is out of region but `beta-eu-down`, whose model has no
    tools: a request with tools has nowhere to go, and is refused before any attempt."""
    gateway = residency.gateway
    before = residency.outside_traffic()
    with httpx.Client() as client:
        answer = ask(client, gateway, residency.pinned_key, chat("res-mixed", tools=[WEATHER_TOOL]))
    error = assert_openai_error(answer, 400, "no_eligible_deployment")
    assert "alpha-us: its region 'us-east' is not allowed for this project" in error["message"]
    assert "beta-eu-down: it does not support tools" in error["message"]
    assert named_deployments(error["message"]) == {"alpha-us", "beta-eu-down"}
    assert residency.outside_traffic() == before


def test_a_refusal_names_an_open_breaker_as_a_passing_reason(residency: ResidencyWorld) -> None:
    """`beta-eu-down` refuses connections: after three failures its breaker opens, and with
    the other candidate out of region the answer is a 503 that names both reasons."""
    gateway = residency.gateway
    before = residency.outside_traffic()
    codes = []
    with httpx.Client() as client:
        for _ in range(12):
            answer = ask(client, gateway, residency.pinned_key, chat("res-breaker"))
            codes.append(answer.error()["code"])
            if codes[-1] == "no_healthy_deployment":
                break
    assert codes[-1] == "no_healthy_deployment", codes
    assert set(codes[:-1]) <= {"upstream_unavailable"}, codes
    error = assert_openai_error(answer, 503, "no_healthy_deployment")
    assert "alpha-ap: its region 'ap-south' is not allowed for this project" in error["message"]
    assert "beta-eu-down: its circuit breaker is open" in error["message"]
    assert residency.outside_traffic() == before


# -- billing across attempts --------------------------------------------------------------------

BILLING_PRICES = {"bill-1": ("3", "7"), "bill-2": ("2", "5"), "bill-3": ("1", "4")}
ARM_PRICES = {"arm-a": ("1", "2"), "arm-b": ("4", "8")}
ARM_B_DELAY_S = 0.05
CUT_PIECES = ["Hel", "lo", " the", "re", "!"]


def mixed_failures(name: str) -> Callable[[int, Any], Reply]:
    """About 30% failures: 500 reporting usage, plain 503, 429, cut answers; successes report
    random usage. Fixed by the upstream's name and arrival index."""

    def script(index: int, body: Any) -> Reply:
        draw = random.Random(f"{name}:{index}")
        roll = draw.random()
        usage = (draw.randint(5, 400), draw.randint(1, 300))
        if roll < 0.08:
            return error_reply(500, usage=usage)
        if roll < 0.15:
            return error_reply(503)
        if roll < 0.22:
            return error_reply(429)
        if roll < 0.30:
            if not body.get("stream"):
                return CUT_REPLY
            events = stream_events(CUT_PIECES, usage={"prompt_tokens": 1, "completion_tokens": 1})
            # Cut after the role chunk and up to every piece: before the finish and usage.
            return StreamReply(events, reset_after=draw.randint(1, 1 + len(CUT_PIECES)))
        return success_reply(body, *usage)

    return script


def arm_script(name: str) -> Callable[[int, Any], Reply]:
    def script(index: int, body: Any) -> Reply:
        draw = random.Random(f"{name}:{index}")
        if name == "arm-b" and index % 4 == 3:
            reply: Reply = error_reply(503)
        else:
            reply = success_reply(body, draw.randint(5, 200), draw.randint(1, 100))
        if name == "arm-b":
            assert isinstance(reply, JsonReply)
            reply = dataclasses.replace(reply, delay_s=ARM_B_DELAY_S)
        return reply

    return script


@dataclass
class BillingWorld:
    gateway: GatewayProcess
    upstreams: dict[str, ScriptedUpstream]


@pytest.fixture(scope="module")
def billing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BillingWorld]:
    upstreams = {name: ScriptedUpstream(name, mixed_failures(name)) for name in BILLING_PRICES}
    upstreams |= {name: ScriptedUpstream(name, arm_script(name)) for name in ARM_PRICES}
    prices = BILLING_PRICES | ARM_PRICES
    with contextlib.ExitStack() as stack:
        for upstream in upstreams.values():
            stack.enter_context(upstream.running())
        deployments = [
            Deployment(name, "alpha", u.base_url, price=prices[name], **PATIENT)
            for name, u in upstreams.items()
        ]
        routes = [
            _route("billing", "priority", list(BILLING_PRICES)),
            _route("ab", "weighted", list(ARM_PRICES)) | {"max_attempts": 1},
        ]
        gateway = stack.enter_context(
            routing_gateway(
                tmp_path_factory.mktemp("billing"),
                deployments,
                routes,
                # Breakers off: every request tries all three candidates while they fail.
                env={"MODELYARD_BREAKER_FAILURES": "0"},
            )
        )
        yield BillingWorld(gateway, upstreams)


def billed_usage(served: Served, request_body: dict[str, Any]) -> tuple[int, int]:
    """What the gateway bills for one attempt: what the upstream reported, or, for a stream
    cut after it began without a usage chunk, its estimate (the prompt's, and one token per
    content event that arrived)."""
    reply = served.reply
    if isinstance(reply, StreamReply) and reply.reset_after:
        delivered = reply.events[: reply.reset_after]
        content = sum(b'"content":"' in e and b'"content":""' not in e for e in delivered)
        prompt = estimate_prompt_tokens(ChatCompletionRequest.model_validate(request_body))
        return prompt, content
    return reported_usage(reply)


def cost_of(deployment: str, usage: tuple[int, int]) -> int:
    """In micro-dollars; whole-dollar prices per 1M tokens make it exact."""
    price_in, price_out = (BILLING_PRICES | ARM_PRICES)[deployment]
    return usage[0] * int(price_in) + usage[1] * int(price_out)


def kind_of(reply: Reply) -> str:
    if isinstance(reply, StreamReply):
        return "cut" if reply.reset_after is not None else "stream"
    if reply.status == 500 and "usage" in reply.body:
        return "500+usage"
    return str(reply.status)


BILLING_CLIENTS = 16
REQUESTS_PER_CLIENT = 20


def test_every_attempt_is_billed_once_at_its_deployments_price_under_concurrent_failures(
    billing: BillingWorld,
) -> None:
    """Each attempt is billed what its upstream reported, a 500's error body included; a stream
    cut before its usage chunk is billed the gateway's estimate, and its record says so."""
    gateway = billing.gateway
    new_project(gateway, "billed")
    key = new_key(gateway, "billed")
    bodies = {
        f"billing request {n:04d}": chat(
            "billing", f"billing request {n:04d}: say hello" + " again" * (n % 7), stream=n % 2 == 1
        )
        for n in range(BILLING_CLIENTS * REQUESTS_PER_CLIENT)
    }
    tags = list(bodies)

    def client_run(first: int) -> list[tuple[str, Answer]]:
        with httpx.Client() as client:
            return [
                (tag, ask(client, gateway, key, bodies[tag]))
                for tag in tags[first::BILLING_CLIENTS]
            ]

    with ThreadPoolExecutor(BILLING_CLIENTS) as pool:
        answered = [pair for run in pool.map(client_run, range(BILLING_CLIENTS)) for pair in run]
    request_ids = {tag: answer.headers["x-request-id"] for tag, answer in answered}
    assert len(set(request_ids.values())) == len(bodies)

    rows = wait_rows(gateway, "billed", len(bodies), timeout_s=30)
    assert len(rows) == len(bodies)
    by_id = {row["request_id"]: row for row in rows}
    assert set(by_id) == set(request_ids.values())  # one record per request, no other

    attempts_by_tag: dict[str, list[Served]] = defaultdict(list)
    for upstream in (billing.upstreams[name] for name in BILLING_PRICES):
        for served in upstream.served:
            attempts_by_tag[served.body["messages"][0]["content"].split(":")[0]].append(served)
    assert set(attempts_by_tag) <= set(bodies)

    totals = Counter[str]()
    for tag, body in bodies.items():
        row = by_id[request_ids[tag]]
        expected = []
        for served in sorted(attempts_by_tag[tag], key=lambda s: s.arrival):
            usage = billed_usage(served, body)
            expected.append((served.upstream, *usage, cost_of(served.upstream, usage)))
        recorded = [
            (a["deployment"], a["prompt_tokens"], a["completion_tokens"], a["cost_micros"])
            for a in row["attempts"]
        ]
        assert recorded == expected, (tag, row)
        assert row["prompt_tokens"] == sum(e[1] for e in expected)
        assert row["completion_tokens"] == sum(e[2] for e in expected)
        assert row["cost_micros"] == sum(e[3] for e in expected)
        totals.update(prompt=row["prompt_tokens"], completion=row["completion_tokens"])
        totals.update(cost=row["cost_micros"])

    # The same totals straight from what the upstreams served, request by request.
    everything = Counter[str]()
    for tag, attempts in attempts_by_tag.items():
        for served in attempts:
            usage = billed_usage(served, bodies[tag])
            everything.update(prompt=usage[0], completion=usage[1])
            everything.update(cost=cost_of(served.upstream, usage))
    assert totals == everything
    report = gateway.admin("GET", "/admin/usage?group_by=project_id&project=billed").json()
    (total,) = report["data"]
    assert total["requests"] == len(bodies)
    assert (total["prompt_tokens"], total["completion_tokens"], total["cost_micros"]) == (
        everything["prompt"],
        everything["completion"],
        everything["cost"],
    )
    # The load was what it claims to be: every kind of failure, and fallbacks.
    kinds = Counter(kind_of(s.reply) for ss in attempts_by_tag.values() for s in ss)
    assert {"500+usage", "503", "429", "cut", "stream", "200"} <= set(kinds), kinds
    assert sum(kinds[k] for k in ("500+usage", "503", "429", "cut")) > 0.2 * kinds.total()
    assert any(len(row["attempts"]) == 3 for row in rows)
    assert any(row["usage_estimated"] for row in rows)


# -- usage by route and arm -------------------------------------------------------------------


def modelyard_cli(gateway: GatewayProcess, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    env |= {"MODELYARD_URL": gateway.base_url, "MODELYARD_API_KEY": gateway.admin_key or ""}
    done = subprocess.run(
        [sys.executable, "-m", "modelyard", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_usage_report_compares_the_arms_of_a_weighted_route(billing: BillingWorld) -> None:
    gateway = billing.gateway
    new_project(gateway, "abtest")
    arm_a, arm_b = billing.upstreams["arm-a"], billing.upstreams["arm-b"]
    assert (len(arm_a.served), len(arm_b.served)) == (0, 0)  # the arms serve this test alone
    # The weighted strategy keeps each key on one arm: make keys until both arms have some.
    keys: dict[str, list[str]] = defaultdict(list)
    with httpx.Client() as client:
        while min(len(keys["arm-a"]), len(keys["arm-b"])) < 3:
            assert len(keys["arm-a"]) + len(keys["arm-b"]) < 40, keys
            key = new_key(gateway, "abtest")
            served_by_a = len(arm_a.served)
            ask(client, gateway, key, chat("ab"))  # arm-b's errors say no deployment
            keys["arm-a" if len(arm_a.served) > served_by_a else "arm-b"].append(key)

    def run(arm: str, key: str) -> None:
        with httpx.Client() as client:
            for n in range(6):
                answer = ask(client, gateway, key, chat("ab", f"Question {n}."))
                # A key stays on its arm; only arm-b fails, and with max_attempts 1 it shows.
                if answer.status == 200:
                    assert answer.headers["x-modelyard-deployment"] == arm
                else:
                    assert arm == "arm-b" and answer.status == 503, answer.text

    with ThreadPoolExecutor(8) as pool:
        jobs = [(arm, key) for arm, arm_keys in keys.items() for key in arm_keys]
        list(pool.map(lambda job: run(*job), jobs))

    expected: dict[str, dict[str, Any]] = {}
    for name, upstream in (("arm-a", arm_a), ("arm-b", arm_b)):
        usages = [reported_usage(s.reply) for s in upstream.served]
        errors = sum(
            isinstance(s.reply, JsonReply) and s.reply.status >= 400 for s in upstream.served
        )
        requests = len(upstream.served)
        expected[name] = {
            "requests": requests,
            "prompt_tokens": sum(u[0] for u in usages),
            "completion_tokens": sum(u[1] for u in usages),
            "cost_micros": sum(cost_of(name, u) for u in usages),
            "errors": errors,
            "error_rate": round(errors / requests, 4),
        }
    assert expected["arm-a"]["errors"] == 0 and expected["arm-b"]["errors"] > 0
    rows = wait_rows(gateway, "abtest", sum(e["requests"] for e in expected.values()), timeout_s=30)
    latencies: dict[str, list[int]] = defaultdict(list)
    for row in rows:
        assert row["route"] == "ab" and row["deployment"] == row["arm"]
        latencies[row["arm"]].append(row["latency_ms"])

    report = gateway.admin("GET", "/admin/usage?group_by=route,arm&project=abtest")
    assert report.status_code == 200, report.text
    assert report.json()["group_by"] == ["route", "arm"]
    data = report.json()["data"]
    assert [(r["route"], r["arm"]) for r in data] == [("ab", "arm-a"), ("ab", "arm-b")]
    for row in data:
        want = expected[row["arm"]]
        assert {k: row[k] for k in want} == want, row
        assert Decimal(row["cost_usd"]) * 1_000_000 == want["cost_micros"]
        arm_latencies = latencies[row["arm"]]
        assert row["latency_ms_avg"] == round(sum(arm_latencies) / len(arm_latencies), 1)
    (arm_b_row,) = [r for r in data if r["arm"] == "arm-b"]
    assert arm_b_row["latency_ms_avg"] >= ARM_B_DELAY_S * 1000  # every arm-b answer waited

    table = modelyard_cli(gateway, "usage", "--group-by", "route,arm", "--project", "abtest")
    header, *lines = [line.split() for line in table.strip().splitlines()]
    assert header[:2] == ["route", "arm"]
    printed = [dict(zip(header, line, strict=True)) for line in lines]
    assert printed == [{c: str(row[c]) for c in header} for row in data]
    as_csv = modelyard_cli(
        gateway, "usage", "--group-by", "route,arm", "--project", "abtest", "--csv"
    )
    parsed = list(csv.DictReader(io.StringIO(as_csv)))
    assert parsed == [{c: str(row[c]) for c in parsed[0]} for row in data]
