"""Fallbacks on `priority` routes (issue 14): which failures move a request to the next candidate
and which do not, the deadline and `max_attempts` that bound the attempts, the one usage record
that tells and bills every attempt, and the official SDKs seeing a normal answer throughout.

One gateway serves every route here. The `flaky` upstream plays the fault named by the first
word of the prompt; `backup` always answers. Each route has its own first deployment, so that
what one test does to a deployment's stats (a 429's pause) never reaches another test. Circuit
breakers are off: they are pinned elsewhere, and here they would skip a deployment that failed
in an earlier test.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import httpx2
import openai
import orjson
import pytest
import sqlalchemy as sa
from azure.ai.inference import ChatCompletionsClient
from azure.ai.inference.models import ChatRequestMessage, UserMessage
from azure.core.credentials import AzureKeyCredential
from azure.core.pipeline import PipelineResponse
from mistralai.client import Mistral

from modelyard.catalog.cards import Price
from modelyard.db.schema import usage_records
from modelyard.ledger.cost import COST_HEADER, cost_micros
from modelyard.money import dollars
from modelyard.protocol.generation import Usage
from modelyard.testing.fake_upstream import JsonReply, StreamReply, completion_body, stream_events
from tests.routing.world import (
    CUT_REPLY,
    Deployment,
    Reply,
    ScriptedUpstream,
    chat,
    error_reply,
    routing_gateway,
    success_reply,
)
from tests.support.gateway import GatewayProcess
from tests.support.network_faults import ResettingServer, SilentServer, closed_port

BACKUP_USAGE = (12, 3)
BILLED_FAILURE_USAGE = (100, 7)  # what the failing upstream of route `billed` reports using
RETRY_AFTER_S = 2
SILENT_READ_TIMEOUT_S = 0.5
# Read and idle timeouts of the deadline route's candidates: the first times out well before
# the 1 s deadline, the second would only after it.
SLOW_TIMEOUTS_S = (0.4, 0.8, 0.8)
ROLE_ONLY = stream_events([])[0]  # an opening chunk: a role, no content


def _rate_limited(body: Any) -> Reply:
    error = {"error": {"message": "slow down", "type": "rate_limit_error"}}
    return JsonReply(error, status=429, headers={"retry-after": str(RETRY_AFTER_S)})


def _too_long(body: Any) -> Reply:
    error = {
        "message": "This model's maximum context length is 32000 tokens.",
        "type": "invalid_request_error",
        "param": "messages",
        "code": "context_length_exceeded",
    }
    return JsonReply({"error": error}, status=400)


# What `flaky` answers, by the prompt's first word.
FLAKY: dict[str, Callable[[Any], Reply]] = {
    "ok": lambda body: success_reply(body, 5, 2),
    "status-500": lambda body: error_reply(500),
    "status-503": lambda body: error_reply(503),
    "status-429": _rate_limited,
    "bad-request": lambda body: error_reply(400),
    "too-long": _too_long,
    "billed-500": lambda body: error_reply(500, usage=BILLED_FAILURE_USAGE),
    # Headers, then the connection dropped before any byte of the body.
    "cut": lambda body: CUT_REPLY,
    "malformed": lambda body: StreamReply([ROLE_ONLY, b"data: {not json"]),
    # A clean end of the body after the opening chunk: no content, no [DONE].
    "ends-early": lambda body: StreamReply([ROLE_ONLY]),
    # Two pieces of content reach the client, then the connection is reset.
    "mid-stream": lambda body: StreamReply(
        stream_events(["Hello", " there", " friend."]), reset_after=3
    ),
}


def prompt_of(body: Any) -> str:
    content: str = body["messages"][-1]["content"]
    return content


def flaky_reply(index: int, body: Any) -> Reply:
    return FLAKY[prompt_of(body).split()[0]](body)


def backup_reply(index: int, body: Any) -> Reply:
    return success_reply(body, *BACKUP_USAGE)


def slow_reply(index: int, body: Any) -> Reply:
    """Slower than the deadline route's timeouts, before the head or before the first event."""
    if body.get("stream"):
        return StreamReply(stream_events(["late"]), delay_s=1.5)
    return JsonReply(completion_body("late"), delay_s=1.5)


# (fault, streamed, the failed attempt's outcome in the usage record). Below HTTP: `refused` (a
# port where nothing listens), `reset` (a TCP reset before any byte of the head) and `silent`
# (no byte at all, past the deployment's read timeout); the others are played by `flaky`.
FALLBACKS = [
    ("status-500", False, "upstream_error"),
    ("status-500", True, "upstream_error"),
    ("status-503", False, "upstream_unavailable"),
    ("status-503", True, "upstream_unavailable"),
    ("status-429", False, "rate_limited"),
    ("status-429", True, "rate_limited"),
    ("refused", False, "upstream_unavailable"),
    ("refused", True, "upstream_unavailable"),
    ("reset", False, "upstream_unavailable"),
    ("reset", True, "upstream_unavailable"),
    ("cut", False, "upstream_unavailable"),
    ("cut", True, "upstream_stream_broken"),
    ("silent", False, "upstream_timeout"),
    ("silent", True, "upstream_timeout"),
    ("malformed", True, "upstream_stream_broken"),
    ("ends-early", True, "upstream_stream_broken"),
]


def fallback_route(fault: str, stream: bool) -> str:
    return f"{fault}-{'streamed' if stream else 'whole'}"


def priority(route: str, *candidates: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": route,
        "strategy": "priority",
        "candidates": [{"deployment": c} for c in candidates],
        **extra,
    }


@dataclass(frozen=True)
class World:
    gateway: GatewayProcess
    flaky: ScriptedUpstream
    backup: ScriptedUpstream
    slow: list[ScriptedUpstream]
    ledger: sa.Engine

    def record(self, request_id: str) -> dict[str, Any]:
        """The request's usage record, once the ledger's writer has written it."""
        deadline = time.monotonic() + 10
        while True:
            with self.ledger.connect() as connection:
                rows = connection.execute(
                    sa.select(usage_records).where(usage_records.c.request_id == request_id)
                ).all()
            if rows:
                (row,) = rows
                return dict(row._mapping)
            assert time.monotonic() < deadline, f"no usage record for {request_id}"
            time.sleep(0.05)

    def records_of_route(self, route: str) -> list[dict[str, Any]]:
        with self.ledger.connect() as connection:
            rows = connection.execute(
                sa.select(usage_records).where(usage_records.c.route == route)
            )
            return [dict(row._mapping) for row in rows]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    directory = tmp_path_factory.mktemp("fallbacks")
    with contextlib.ExitStack() as stack:
        flaky = ScriptedUpstream("flaky", flaky_reply)
        backup = ScriptedUpstream("backup", backup_reply)
        slow = [ScriptedUpstream(f"slow-{n}", slow_reply) for n in range(1, 4)]
        for upstream in [flaky, backup, *slow]:
            stack.enter_context(upstream.running())
        refused_url = f"http://127.0.0.1:{closed_port()}/v1"
        socket_faults = {
            "refused": refused_url,
            "reset": stack.enter_context(ResettingServer()).base_url,
            "silent": stack.enter_context(SilentServer()).base_url,
        }
        deployments = [Deployment("backup", "alpha", backup.base_url)]
        routes: list[dict[str, Any]] = []

        def route_to_backup(
            route: str, base_url: str = flaky.base_url, read_timeout_s: float = 5.0
        ) -> None:
            first = Deployment(f"first-{route}", "alpha", base_url, read_timeout_s=read_timeout_s)
            deployments.append(first)
            routes.append(priority(route, f"first-{route}", "backup"))

        for fault, stream, _ in FALLBACKS:
            route_to_backup(
                fallback_route(fault, stream),
                socket_faults.get(fault, flaky.base_url),
                SILENT_READ_TIMEOUT_S if fault == "silent" else 5.0,
            )
        for route in ("rest", "rejects", "mid-stream", "sdk-status-503"):
            route_to_backup(route)
        route_to_backup("sdk-refused", refused_url)
        deployments.append(Deployment("first-rest-alone", "alpha", flaky.base_url))
        routes.append(priority("rest-alone", "first-rest-alone"))
        # Too long for both: the larger window (alpha's) goes first whatever the listed order.
        deployments += [
            Deployment("small-too-long", "beta", backup.base_url),
            Deployment("large-too-long", "alpha", flaky.base_url),
        ]
        routes.append(priority("too-long", "small-too-long", "large-too-long"))
        # Fits beta's window by the gateway's count, yet refused as too long by its upstream.
        deployments.append(Deployment("small-refuses", "beta", flaky.base_url))
        routes.append(priority("window-refusal", "small-refuses", "backup"))
        deployments += [Deployment(f"capped-{n}", "alpha", flaky.base_url) for n in (1, 2)]
        routes += [
            priority("capped", "capped-1", "capped-2", "backup", max_attempts=2),
            priority("uncapped", "capped-1", "capped-2", "backup"),
        ]
        deployments += [
            Deployment(
                f"slow-{n}", "alpha", upstream.base_url, read_timeout_s=after, idle_timeout_s=after
            )
            for n, (upstream, after) in enumerate(zip(slow, SLOW_TIMEOUTS_S, strict=True), 1)
        ]
        routes.append(priority("deadline", "slow-1", "slow-2", "slow-3"))
        deployments += [
            Deployment("billed-refused", "alpha", refused_url, price=("7", "9")),
            Deployment("billed-failing", "alpha", flaky.base_url, price=("3", "5")),
        ]
        routes.append(priority("billed", "billed-refused", "billed-failing", "backup"))
        gateway = stack.enter_context(
            routing_gateway(directory, deployments, routes, env={"MODELYARD_BREAKER_FAILURES": "0"})
        )
        ledger = sa.create_engine(f"sqlite:///{gateway.data_dir / 'modelyard.db'}")
        stack.callback(ledger.dispose)
        yield World(gateway, flaky, backup, slow, ledger)


# -- asking the gateway ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    prompt: str
    status: int
    headers: httpx.Headers
    # The JSON body; for a stream, each event's data, parsed ("[DONE]" as it is).
    body: Any

    @property
    def request_id(self) -> str:
        return self.headers["x-request-id"]

    def text(self) -> str:
        if not isinstance(self.body, list):
            content: str = self.body["choices"][0]["message"]["content"]
            return content
        return "".join(
            event["choices"][0]["delta"].get("content") or ""
            for event in self.body
            if isinstance(event, dict) and event.get("choices")
        )


def ask(
    gateway: GatewayProcess,
    route: str,
    marker: str,
    *,
    stream: bool = False,
    headers: Mapping[str, str] | None = None,
    padding: str = "",
) -> Answer:
    """A chat request whose prompt starts with `marker` and is unique to this call."""
    prompt = f"{marker} {uuid.uuid4().hex}{padding}"
    with httpx.stream(
        "POST",
        f"{gateway.base_url}/v1/chat/completions",
        json=chat(route, prompt, stream=stream),
        headers={"Authorization": f"Bearer {gateway.admin_key}", **(headers or {})},
        timeout=30,
    ) as reply:
        if not reply.headers["content-type"].startswith("text/event-stream"):
            return Answer(prompt, reply.status_code, reply.headers, orjson.loads(reply.read()))
        events: list[Any] = []
        with contextlib.suppress(httpx.RemoteProtocolError):  # a failed stream is cut short
            for line in reply.iter_lines():
                if line.startswith("data: "):
                    data = line.removeprefix("data: ")
                    events.append(data if data == "[DONE]" else orjson.loads(data))
        return Answer(prompt, reply.status_code, reply.headers, events)


def received(upstream: ScriptedUpstream, prompt: str) -> int:
    """How many requests with this prompt the upstream received."""
    return sum(1 for served in upstream.served if prompt_of(served.body) == prompt)


def error_of(answer: Answer, code: str) -> dict[str, Any]:
    """The OpenAI-shaped error of a failed answer, after checking its code."""
    error: dict[str, Any] = answer.body["error"]
    assert set(error) == {"message", "type", "param", "code"}, answer.body
    assert error["code"] == code, error
    return error


def attempts_of(record: Mapping[str, Any]) -> list[tuple[str, str]]:
    return [(a["deployment"], a["outcome"]) for a in record["attempts"]]


# -- what moves to the next candidate -----------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "stream", "code"),
    FALLBACKS,
    ids=[fallback_route(fault, stream) for fault, stream, _ in FALLBACKS],
)
def test_a_failure_before_any_output_is_answered_by_the_next_candidate(
    world: World, fault: str, stream: bool, code: str
) -> None:
    route = fallback_route(fault, stream)
    answer = ask(world.gateway, route, fault, stream=stream)
    assert answer.status == 200, answer.body
    assert answer.headers["x-modelyard-attempts"] == "2"
    assert answer.headers["x-modelyard-deployment"] == "backup"
    assert answer.headers["x-modelyard-route"] == route
    assert f"first-{route} ({code})" in answer.headers["x-modelyard-route-reason"]
    assert answer.text() == "Hello from upstream."
    if stream:
        assert answer.body[-1] == "[DONE]"
    assert received(world.backup, answer.prompt) == 1
    record = world.record(answer.request_id)
    assert (record["route"], record["arm"]) == (route, f"first-{route}")
    assert (record["status"], record["outcome"]) == (200, "completed")
    assert attempts_of(record) == [(f"first-{route}", code), ("backup", "completed")]
    assert all(
        isinstance(a["latency_ms"], int) and a["latency_ms"] >= 0 for a in record["attempts"]
    )
    if fault == "silent":  # it was given its whole read timeout before the gateway moved on
        assert record["attempts"][0]["latency_ms"] >= SILENT_READ_TIMEOUT_S * 1000 - 50


def test_a_429_with_retry_after_sends_its_deployment_to_the_back_for_that_long(
    world: World,
) -> None:
    asked_at = time.monotonic()
    limited = ask(world.gateway, "rest", "status-429")
    assert limited.status == 200, limited.body
    assert limited.headers["x-modelyard-attempts"] == "2"
    rested_at = time.monotonic()  # the pause began between these two readings
    # During the pause the resting deployment would answer, but is not asked first.
    during = ask(world.gateway, "rest", "ok")
    assert time.monotonic() - asked_at < RETRY_AFTER_S, "too slow to ask within the pause"
    assert during.headers["x-modelyard-deployment"] == "backup"
    assert during.headers["x-modelyard-attempts"] == "1"
    assert received(world.flaky, during.prompt) == 0
    time.sleep(max(0.0, rested_at + RETRY_AFTER_S + 0.3 - time.monotonic()))
    after = ask(world.gateway, "rest", "ok")
    assert after.headers["x-modelyard-deployment"] == "first-rest"
    assert after.headers["x-modelyard-attempts"] == "1"


def test_a_lone_deployment_resting_after_a_429_is_still_tried_and_its_429_passed_on(
    world: World,
) -> None:
    for _ in range(2):  # the second within the first's pause
        answer = ask(world.gateway, "rest-alone", "status-429")
        assert answer.status == 429
        assert error_of(answer, "rate_limited")["type"] == "rate_limit_error"
        assert answer.headers["retry-after"] == str(RETRY_AFTER_S)
        assert received(world.flaky, answer.prompt) == 1


# -- what does not --------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_an_upstream_400_caused_by_the_request_is_not_retried(world: World, stream: bool) -> None:
    answer = ask(world.gateway, "rejects", "bad-request", stream=stream)
    assert answer.status == 400
    assert error_of(answer, "upstream_rejected_request")["type"] == "invalid_request_error"
    assert received(world.flaky, answer.prompt) == 1
    assert received(world.backup, answer.prompt) == 0
    record = world.record(answer.request_id)
    assert (record["status"], record["outcome"]) == (400, "failed")
    assert attempts_of(record) == [("first-rejects", "upstream_rejected_request")]


def test_a_request_too_long_for_every_candidate_gets_the_largest_windows_refusal(
    world: World,
) -> None:
    # About 40,000 tokens: more than alpha's 32,000 and beta's 2,048.
    answer = ask(world.gateway, "too-long", "too-long", padding=" words" * 27_000)
    assert answer.status == 400
    error = error_of(answer, "context_length_exceeded")
    assert "maximum context length is 32000 tokens" in error["message"]
    assert received(world.flaky, answer.prompt) == 1
    assert received(world.backup, answer.prompt) == 0  # the smaller window was not tried
    record = world.record(answer.request_id)
    assert attempts_of(record) == [("large-too-long", "context_length_exceeded")]


def test_an_upstreams_too_long_refusal_moves_to_a_candidate_with_a_larger_window(
    world: World,
) -> None:
    answer = ask(world.gateway, "window-refusal", "too-long")
    assert answer.status == 200, answer.body
    assert answer.headers["x-modelyard-deployment"] == "backup"
    assert answer.headers["x-modelyard-attempts"] == "2"
    record = world.record(answer.request_id)
    assert attempts_of(record) == [
        ("small-refuses", "context_length_exceeded"),
        ("backup", "completed"),
    ]


def test_a_stream_cut_after_its_first_content_ends_with_an_error_event_and_no_retry(
    world: World,
) -> None:
    answer = ask(world.gateway, "mid-stream", "mid-stream", stream=True)
    assert answer.status == 200
    assert answer.headers["x-modelyard-attempts"] == "1"
    assert answer.text() == "Hello there"
    assert "[DONE]" not in answer.body
    assert answer.body[-1] == {
        "error": {
            "message": answer.body[-1]["error"]["message"],
            "type": "server_error",
            "param": None,
            "code": "upstream_stream_broken",
        }
    }
    assert received(world.backup, answer.prompt) == 0
    record = world.record(answer.request_id)
    assert (record["status"], record["outcome"]) == (502, "failed")
    assert attempts_of(record) == [("first-mid-stream", "upstream_stream_broken")]


def test_the_openai_sdk_raises_an_api_error_for_a_stream_cut_after_content(world: World) -> None:
    client = openai.OpenAI(
        base_url=f"{world.gateway.base_url}/v1", api_key=world.gateway.admin_key, max_retries=0
    )
    prompt = f"mid-stream {uuid.uuid4().hex}"
    stream = client.chat.completions.create(
        model="mid-stream", messages=[{"role": "user", "content": prompt}], stream=True
    )
    texts: list[str] = []
    with pytest.raises(openai.APIError) as failed:
        for chunk in stream:
            texts.extend(choice.delta.content or "" for choice in chunk.choices)
    assert "".join(texts) == "Hello there"
    assert failed.value.code == "upstream_stream_broken"
    assert received(world.backup, prompt) == 0


# -- what bounds the attempts ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "stream"),
    [("x-modelyard-timeout-s", False), ("x-stainless-timeout", True)],
    ids=["modelyard-header-whole", "stainless-header-streamed"],
)
def test_the_callers_deadline_cuts_the_attempt_in_flight_and_starts_no_other(
    world: World, header: str, stream: bool
) -> None:
    answer = ask(world.gateway, "deadline", "slow", stream=stream, headers={header: "1"})
    assert answer.status == 504
    assert error_of(answer, "deadline_exceeded")["type"] == "server_error"
    # slow-1 timed out at 0.4 s, slow-2 was cut at 1 s (before its own 0.8 s ran out), and the
    # third candidate was never contacted.
    assert [received(upstream, answer.prompt) for upstream in world.slow] == [1, 1, 0]
    record = world.record(answer.request_id)
    assert attempts_of(record) == [
        ("slow-1", "upstream_timeout"),
        ("slow-2", "deadline_exceeded"),
    ]
    assert (record["status"], record["outcome"]) == (504, "failed")


def test_without_a_deadline_every_slow_candidate_is_tried(world: World) -> None:
    answer = ask(world.gateway, "deadline", "slow")
    assert answer.status == 504
    error_of(answer, "upstream_timeout")
    assert [received(upstream, answer.prompt) for upstream in world.slow] == [1, 1, 1]
    record = world.record(answer.request_id)
    assert [outcome for _, outcome in attempts_of(record)] == ["upstream_timeout"] * 3


def test_max_attempts_caps_the_candidates_tried(world: World) -> None:
    uncapped = ask(world.gateway, "uncapped", "status-500")
    assert uncapped.status == 200
    assert uncapped.headers["x-modelyard-attempts"] == "3"
    capped = ask(world.gateway, "capped", "status-500")
    assert capped.status == 502
    error_of(capped, "upstream_error")
    # The error says what was tried, as an answer would.
    assert capped.headers["x-modelyard-attempts"] == "2"
    assert capped.headers["x-modelyard-deployment"] == "capped-2"
    assert capped.headers["x-modelyard-route"] == "capped"
    assert (
        "attempts: capped-1 (upstream_error), capped-2 (upstream_error)"
        in (capped.headers["x-modelyard-route-reason"])
    )
    assert received(world.flaky, capped.prompt) == 2
    assert received(world.backup, capped.prompt) == 0
    record = world.record(capped.request_id)
    assert attempts_of(record) == [("capped-1", "upstream_error"), ("capped-2", "upstream_error")]


# -- what is recorded and billed ------------------------------------------------------------------


def price(input_usd: int, output_usd: int) -> Price:
    return Price(input_usd * 1_000_000, output_usd * 1_000_000, input_usd * 1_000_000)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_each_attempt_is_billed_once_for_what_it_consumed_at_its_own_price(
    world: World, stream: bool
) -> None:
    answer = ask(world.gateway, "billed", "billed-500", stream=stream)
    assert answer.status == 200, answer.body
    assert answer.headers["x-modelyard-attempts"] == "3"
    failed_cost = cost_micros(price(3, 5), Usage(*BILLED_FAILURE_USAGE))
    answer_cost = cost_micros(price(1, 2), Usage(*BACKUP_USAGE))
    record = world.record(answer.request_id)
    assert [
        (
            a["deployment"],
            a["outcome"],
            a["prompt_tokens"],
            a["completion_tokens"],
            a["cost_micros"],
        )
        for a in record["attempts"]
    ] == [
        ("billed-refused", "upstream_unavailable", 0, 0, 0),
        ("billed-failing", "upstream_error", *BILLED_FAILURE_USAGE, failed_cost),
        ("backup", "completed", *BACKUP_USAGE, answer_cost),
    ]
    assert record["prompt_tokens"] == BILLED_FAILURE_USAGE[0] + BACKUP_USAGE[0]
    assert record["completion_tokens"] == BILLED_FAILURE_USAGE[1] + BACKUP_USAGE[1]
    assert record["cost_micros"] == failed_cost + answer_cost
    if not stream:
        assert answer.headers[COST_HEADER] == dollars(failed_cost + answer_cost)
    # The daily rollup counts each record once.
    records = world.records_of_route("billed")
    report = world.gateway.admin("GET", "/admin/usage?group_by=route").json()["data"]
    (billed,) = [row for row in report if row["route"] == "billed"]
    assert billed["requests"] == len(records)
    assert billed["cost_micros"] == sum(r["cost_micros"] for r in records)
    assert billed["prompt_tokens"] == sum(r["prompt_tokens"] for r in records)


# -- the official SDKs ----------------------------------------------------------------------------

# Each asks `route` for `prompt` with the SDK's own retries off, and returns the answer's text and
# the response headers.
AskWithSdk = Callable[[GatewayProcess, str, str, bool], tuple[str, Mapping[str, str]]]


def with_openai(
    gateway: GatewayProcess, route: str, prompt: str, stream: bool
) -> tuple[str, Mapping[str, str]]:
    client = openai.OpenAI(
        base_url=f"{gateway.base_url}/v1", api_key=gateway.admin_key, max_retries=0
    )
    messages: list[Any] = [{"role": "user", "content": prompt}]
    if stream:
        streamed = client.chat.completions.with_raw_response.create(
            model=route, messages=messages, stream=True
        )
        text = "".join(
            choice.delta.content or "" for chunk in streamed.parse() for choice in chunk.choices
        )
        return text, streamed.headers
    whole = client.chat.completions.with_raw_response.create(model=route, messages=messages)
    return whole.parse().choices[0].message.content or "", whole.headers


def with_azure_inference(
    gateway: GatewayProcess, route: str, prompt: str, stream: bool
) -> tuple[str, Mapping[str, str]]:
    seen: list[Mapping[str, str]] = []

    def keep_headers(response: PipelineResponse[Any, Any]) -> None:
        seen.append(response.http_response.headers)

    with ChatCompletionsClient(
        endpoint=f"{gateway.base_url}/models",
        credential=AzureKeyCredential(gateway.admin_key or ""),
        retry_total=0,
    ) as client:
        messages: list[ChatRequestMessage] = [UserMessage(prompt)]
        if stream:
            updates = client.complete(
                messages=messages, model=route, stream=True, raw_response_hook=keep_headers
            )
            text = "".join(u.choices[0].delta.content or "" for u in updates if u.choices)
        else:
            result = client.complete(messages=messages, model=route, raw_response_hook=keep_headers)
            text = result.choices[0].message.content
    return text, seen[-1]


def with_mistral(
    gateway: GatewayProcess, route: str, prompt: str, stream: bool
) -> tuple[str, Mapping[str, str]]:
    seen: list[Mapping[str, str]] = []

    def keep_headers(response: httpx2.Response) -> None:
        seen.append(response.headers)

    # The SDK retries only when given a retry_config; it is given none.
    with httpx2.Client(event_hooks={"response": [keep_headers]}) as http:
        mistral = Mistral(server_url=gateway.base_url, api_key=gateway.admin_key, client=http)
        messages: list[Any] = [{"role": "user", "content": prompt}]
        if stream:
            events = mistral.chat.stream(model=route, messages=messages)
            text = "".join(
                str(event.data.choices[0].delta.content or "")
                for event in events
                if event.data.choices
            )
        else:
            result = mistral.chat.complete(model=route, messages=messages)
            message = result.choices[0].message if result.choices else None
            assert message is not None
            text = str(message.content)
    return text, seen[-1]


SDKS: dict[str, AskWithSdk] = {
    "openai": with_openai,
    "azure-ai-inference": with_azure_inference,
    "mistralai": with_mistral,
}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("route", ["sdk-status-503", "sdk-refused"])
@pytest.mark.parametrize("sdk", list(SDKS))
def test_an_official_sdk_gets_a_normal_answer_when_the_first_candidate_fails(
    world: World, sdk: str, route: str, stream: bool
) -> None:
    prompt = f"status-503 {uuid.uuid4().hex}"  # what `flaky` plays; nothing listens for refused
    text, headers = SDKS[sdk](world.gateway, route, prompt, stream)
    assert text == "Hello from upstream."
    assert headers["x-modelyard-attempts"] == "2"
    assert headers["x-modelyard-deployment"] == "backup"
    assert received(world.backup, prompt) == 1
