"""The Responses API in front of a remote model (a fake OpenAI-compatible upstream on 127.0.0.1),
through the official `openai` SDK: what the upstream is sent, stored responses and the
conversations they continue, isolation between projects, zero retention, expiry, routes, and
failures part-way through a stream.

Projects `alpha` and `beta` keep content (they store responses); the default project, where the
admin key acts, keeps none.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from modelyard.testing.fake_upstream import (
    FakeUpstream,
    JsonReply,
    StreamReply,
    completion_body,
    stream_events,
)
from tests.remote.fixtures import NO_BREAKERS, UPSTREAM_SECRET, remote_catalog
from tests.responses.stored import billed, post, project_with_key, sdk, stored_rows
from tests.support.gateway import GatewayProcess

MODEL = "acme-large"
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def routed_catalog(directory: Path, upstream_url: str) -> Path:
    path = remote_catalog(directory / "catalog.yaml", upstream_url, read_timeout_s=5.0)
    document = yaml.safe_load(path.read_text())
    document["routes"] = [
        {"id": "acme-chat", "strategy": "priority", "candidates": [{"deployment": "acme-large-eu"}]}
    ]
    path.write_text(yaml.safe_dump(document))
    return path


def start_gateway(directory: Path, upstream_url: str, **env: str) -> GatewayProcess:
    return GatewayProcess(
        directory / "data",
        env={"ACME_KEY": UPSTREAM_SECRET, **NO_BREAKERS, **env},
        args=("--catalog", str(routed_catalog(directory, upstream_url))),
    ).start()


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, upstream_server: FakeUpstream
) -> Iterator[GatewayProcess]:
    process = start_gateway(tmp_path_factory.mktemp("responses"), upstream_server.base_url)
    yield process
    process.stop()
    assert UPSTREAM_SECRET not in process.log()


@pytest.fixture(scope="module")
def projects(gateway: GatewayProcess) -> dict[str, tuple[str, str]]:
    """alpha and beta, which keep content: their project ids and keys."""
    return {
        name: project_with_key(gateway, name, content_retention_days=7)
        for name in ("alpha", "beta")
    }


@pytest.fixture()
def alpha(gateway: GatewayProcess, projects: dict[str, tuple[str, str]]) -> openai.OpenAI:
    return sdk(gateway, projects["alpha"][1])


@pytest.fixture()
def beta(gateway: GatewayProcess, projects: dict[str, tuple[str, str]]) -> openai.OpenAI:
    return sdk(gateway, projects["beta"][1])


def tool_call_body(call_id: str, arguments: str) -> dict[str, Any]:
    body = completion_body()
    body["choices"][0]["message"] = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": call_id,
                "type": "function",
                "function": {"name": "get_weather", "arguments": arguments},
            }
        ],
    }
    body["choices"][0]["finish_reason"] = "tool_calls"
    return body


def test_request_is_translated_for_the_upstream_and_billed_once(
    gateway: GatewayProcess,
    projects: dict[str, tuple[str, str]],
    alpha: openai.OpenAI,
    upstream: FakeUpstream,
) -> None:
    upstream.enqueue(JsonReply(completion_body("Bonjour.")))
    raw = alpha.responses.with_raw_response.create(
        model=MODEL,
        instructions="Be terse.",
        input=[{"role": "user", "content": "Hello"}],
        max_output_tokens=50,
        temperature=0.2,
        metadata={"ticket": "T-1"},
        user="end-user-1",
    )
    response = raw.parse()
    sent = upstream.requests[-1].body
    assert sent["model"] == "large-2026"
    assert sent["messages"] == [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "Hello"},
    ]
    assert (sent["max_completion_tokens"], sent["temperature"], sent["user"]) == (
        50,
        0.2,
        "end-user-1",
    )
    assert "metadata" not in sent and "store" not in sent
    assert response.output_text == "Bonjour."
    assert response.metadata == {"ticket": "T-1"}
    assert (response.store, response.max_output_tokens, response.temperature) == (True, 50, 0.2)
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (11, 5)
    record = billed(gateway, projects["alpha"][0], raw.headers["x-request-id"])
    assert (record["prompt_tokens"], record["completion_tokens"], record["status"]) == (11, 5, 200)
    assert record["cost_micros"] > 0
    assert raw.headers["x-modelyard-cost-usd"] != "0.000000"


def test_previous_response_id_continues_the_conversation_without_old_instructions(
    alpha: openai.OpenAI, upstream: FakeUpstream
) -> None:
    upstream.enqueue(JsonReply(completion_body("Hello Ada.")), JsonReply(completion_body("Ada.")))
    first = alpha.responses.create(model=MODEL, instructions="Be terse.", input="I am Ada.")
    second = alpha.responses.create(
        model=MODEL,
        instructions="Answer in French.",
        previous_response_id=first.id,
        input="What is my name?",
    )
    assert upstream.requests[-1].body["messages"] == [
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "I am Ada."},
        {"role": "assistant", "content": "Hello Ada."},
        {"role": "user", "content": "What is my name?"},
    ]
    assert second.previous_response_id == first.id
    assert second.output_text == "Ada."


def test_function_call_output_continues_the_call_by_previous_response_id(
    alpha: openai.OpenAI, upstream: FakeUpstream
) -> None:
    upstream.enqueue(
        JsonReply(tool_call_body("call_7", '{"city":"Paris"}')),
        JsonReply(completion_body("It is sunny.")),
    )
    called = alpha.responses.create(
        model=MODEL,
        input="Weather in Paris?",
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice="required",
    )
    assert upstream.requests[-1].body["tool_choice"] == "required"
    assert upstream.requests[-1].body["tools"] == [
        {
            "type": "function",
            "function": {"name": "get_weather", "parameters": WEATHER["parameters"]},
        }
    ]
    [call] = called.output
    assert call.type == "function_call"
    assert (call.call_id, call.name) == ("call_7", "get_weather")
    assert call.arguments == '{"city":"Paris"}'
    answered = alpha.responses.create(
        model=MODEL,
        previous_response_id=called.id,
        input=[{"type": "function_call_output", "call_id": "call_7", "output": "sunny"}],
        tools=[WEATHER],  # type: ignore[list-item]
    )
    messages = upstream.requests[-1].body["messages"]
    assert messages[1:] == [
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": "call_7",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_7", "content": "sunny"},
    ]
    assert answered.output_text == "It is sunny."


def test_stored_response_is_read_listed_and_deleted(
    alpha: openai.OpenAI, upstream: FakeUpstream
) -> None:
    upstream.enqueue(JsonReply(completion_body("Noted.")))
    items: Any = [
        {"role": "user", "content": "one"},
        {"role": "user", "content": [{"type": "input_text", "text": "two"}]},
        {"type": "message", "id": "msg_mine", "role": "user", "content": "three"},
    ]
    made = alpha.responses.create(model=MODEL, input=items, metadata={"k": "v"})
    got = alpha.responses.retrieve(made.id)
    assert got.model_dump() == made.model_dump()
    newest_first = alpha.responses.input_items.list(made.id)
    texts = [item.content[0].text for item in newest_first.data]  # type: ignore[union-attr]
    assert texts == ["three", "two", "one"]
    assert newest_first.data[0].id == "msg_mine"
    assert newest_first.has_more is False  # type: ignore[attr-defined]
    # The SDK pages with `after` until has_more is false: one item a page.
    paged = list(alpha.responses.input_items.list(made.id, order="asc", limit=1))
    assert [item.content[0].text for item in paged] == ["one", "two", "three"]  # type: ignore[union-attr]
    deleted = alpha.responses.with_raw_response.delete(made.id)
    assert deleted.status_code == 200
    assert deleted.http_response.json() == {"id": made.id, "object": "response", "deleted": True}
    reads = (alpha.responses.retrieve, alpha.responses.delete, alpha.responses.input_items.list)
    for read in reads:
        with pytest.raises(openai.NotFoundError):
            read(made.id)


def test_another_projects_response_is_not_found_never_forbidden(
    alpha: openai.OpenAI, beta: openai.OpenAI, upstream: FakeUpstream
) -> None:
    made = alpha.responses.create(model=MODEL, input="Secret plans.")
    for read in (beta.responses.retrieve, beta.responses.delete, beta.responses.input_items.list):
        with pytest.raises(openai.NotFoundError) as hidden:
            read(made.id)
        assert hidden.value.code == "not_found"
        assert made.id in hidden.value.message
    with pytest.raises(openai.NotFoundError) as hidden:
        beta.responses.create(model=MODEL, input="Go on.", previous_response_id=made.id)
    assert hidden.value.param == "previous_response_id"
    assert len(upstream.requests) == 1  # the refused continuation reached no model
    assert alpha.responses.retrieve(made.id).id == made.id  # beta's delete did nothing


def test_zero_retention_project_stores_nothing(
    gateway: GatewayProcess, upstream: FakeUpstream
) -> None:
    admin = sdk(gateway)  # acts in the default project, which keeps no content
    made = admin.responses.create(model=MODEL, input="Hello", store=True)
    assert made.store is False
    assert stored_rows(gateway, made.id) == []
    with pytest.raises(openai.BadRequestError) as refused:
        admin.responses.create(model=MODEL, input="Again", previous_response_id=made.id)
    assert (refused.value.code, refused.value.param) == ("invalid_request", "previous_response_id")
    with pytest.raises(openai.NotFoundError):
        admin.responses.retrieve(made.id)
    assert len(upstream.requests) == 1


def test_store_false_keeps_nothing_even_where_content_is_kept(
    gateway: GatewayProcess, alpha: openai.OpenAI, upstream: FakeUpstream
) -> None:
    made = alpha.responses.create(model=MODEL, input="Hello", store=False)
    assert made.store is False
    assert stored_rows(gateway, made.id) == []
    with pytest.raises(openai.NotFoundError):
        alpha.responses.create(model=MODEL, input="Again", previous_response_id=made.id)


def test_streamed_response_is_stored_before_it_is_announced(
    gateway: GatewayProcess, alpha: openai.OpenAI, upstream: FakeUpstream
) -> None:
    usage = {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}
    upstream.enqueue(StreamReply(stream_events(["Hel", "lo!"], usage=usage)))
    with alpha.responses.stream(model=MODEL, input="Hello") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert deltas == ["Hel", "lo!"]
    assert final.output_text == "Hello!"
    assert final.usage is not None and final.usage.total_tokens == 15
    # Read at once: the row was committed before `response.completed` left.
    assert alpha.responses.retrieve(final.id).output_text == "Hello!"
    assert len(stored_rows(gateway, final.id)) == 1


def test_a_failure_mid_stream_is_an_error_event_then_response_failed(
    gateway: GatewayProcess,
    projects: dict[str, tuple[str, str]],
    alpha: openai.OpenAI,
    upstream: FakeUpstream,
) -> None:
    upstream.enqueue(StreamReply(stream_events(["a", "b", "c", "d"]), reset_after=3))
    raw = alpha.responses.with_raw_response.create(model=MODEL, input="Hello", stream=True)
    events = list(raw.parse())
    kinds = [event.type for event in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-2:] == ["error", "response.failed"]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    error, failed = events[-2], events[-1]
    assert error.code == "upstream_stream_broken"  # type: ignore[union-attr]
    assert failed.response.status == "failed"  # type: ignore[union-attr]
    assert failed.response.error is not None  # type: ignore[union-attr]
    assert failed.response.error.code == "upstream_stream_broken"  # type: ignore[union-attr]
    assert failed.response.id == events[0].response.id  # type: ignore[union-attr]
    record = billed(gateway, projects["alpha"][0], raw.headers["x-request-id"])
    assert (record["status"], record["outcome"]) == (502, "failed")
    assert stored_rows(gateway, failed.response.id) == []  # type: ignore[union-attr]
    # The stream helper yields the same events, then says there was no completed response.
    upstream.enqueue(StreamReply(stream_events(["a", "b", "c", "d"]), reset_after=3))
    with alpha.responses.stream(model=MODEL, input="Hello") as stream:
        assert [event.type for event in stream][-2:] == ["error", "response.failed"]
        with pytest.raises(RuntimeError, match=r"response\.completed"):
            stream.get_final_response()


def test_client_leaving_mid_stream_cancels_and_is_recorded_as_gone(
    gateway: GatewayProcess, projects: dict[str, tuple[str, str]], upstream: FakeUpstream
) -> None:
    project, key = projects["alpha"]
    upstream.enqueue(StreamReply(stream_events(["tick"] * 50), delay_s=0.1))
    with httpx.stream(
        "POST",
        f"{gateway.base_url}/v1/responses",
        json={"model": MODEL, "input": "Count.", "stream": True},
        headers={"authorization": f"Bearer {key}"},
        timeout=30,
    ) as streamed:
        request_id = streamed.headers["x-request-id"]
        for line in streamed.iter_lines():
            if "response.output_text.delta" in line:
                break
    record = billed(gateway, project, request_id)
    assert (record["status"], record["outcome"]) == (499, "client_disconnected")
    assert record["completion_tokens"] < 50


def test_a_route_serves_responses_like_a_model(
    alpha: openai.OpenAI, upstream: FakeUpstream
) -> None:
    upstream.enqueue(JsonReply(completion_body("Routed.")))
    raw = alpha.responses.with_raw_response.create(model="acme-chat", input="Hello")
    assert raw.parse().output_text == "Routed."
    assert raw.parse().model == "acme-large"
    assert raw.headers["x-modelyard-route"] == "acme-chat"
    assert upstream.requests[-1].body["model"] == "large-2026"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "acme-small", "tools": [WEATHER]}, "tools"),
        (
            {
                "model": "acme-small",
                "text": {"format": {"type": "json_schema", "name": "x", "schema": {}}},
            },
            "text.format",
        ),
        (
            {"tool_choice": {"type": "function", "name": "nope"}, "tools": [WEATHER]},
            "tool_choice.name",
        ),
    ],
)
def test_what_the_model_cannot_do_is_refused_before_the_upstream(
    gateway: GatewayProcess,
    projects: dict[str, tuple[str, str]],
    upstream: FakeUpstream,
    body: dict[str, Any],
    param: str,
) -> None:
    refused = post(gateway, projects["alpha"][1], {"model": MODEL, "input": "Hi", **body})
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["param"] == param
    assert upstream.requests == []


def test_upstream_rate_limit_reaches_the_sdk_as_one(
    alpha: openai.OpenAI, upstream: FakeUpstream
) -> None:
    upstream.enqueue(
        JsonReply({"error": {"message": "slow down"}}, status=429, headers={"Retry-After": "3"})
    )
    with pytest.raises(openai.RateLimitError) as limited:
        alpha.responses.create(model=MODEL, input="Hello")
    assert limited.value.response.headers["retry-after"] == "3"


def test_expired_responses_disappear_and_are_purged(tmp_path: Path, upstream: FakeUpstream) -> None:
    ttl_s = 3.0
    gateway = start_gateway(
        tmp_path, upstream.base_url, MODELYARD_RESPONSES_TTL_DAYS=str(ttl_s / 86400)
    )
    try:
        client = sdk(gateway, project_with_key(gateway, "brief", content_retention_days=30)[1])
        made = client.responses.create(model=MODEL, input="Hello")
        written = time.monotonic()
        assert client.responses.retrieve(made.id).id == made.id
        time.sleep(max(0.0, written + ttl_s + 0.5 - time.monotonic()))
        with pytest.raises(openai.NotFoundError):
            client.responses.retrieve(made.id)
        with pytest.raises(openai.NotFoundError):
            client.responses.create(model=MODEL, input="Again", previous_response_id=made.id)
        assert len(stored_rows(gateway, made.id)) == 1  # invisible, until the purge
    finally:
        gateway.stop()
    gateway.start()  # the purge runs at start
    try:
        deadline = time.monotonic() + 10
        while stored_rows(gateway, made.id):
            assert time.monotonic() < deadline, "the expired response was never purged"
            time.sleep(0.1)
    finally:
        gateway.stop()
