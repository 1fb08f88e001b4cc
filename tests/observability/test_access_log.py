"""The JSON access log of a real `modelyard serve` process (MODELYARD_LOG_FORMAT=json) on a
remote deployment of the fake OpenAI upstream: one line per request, with the id the client and
the usage ledger see, what the request cost, and never its content."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest

from modelyard.testing.fake_upstream import (
    FakeUpstream,
    JsonReply,
    StreamReply,
    completion_body,
    stream_events,
)
from tests.remote.fixtures import UPSTREAM_SECRET, remote_gateway_at
from tests.support.gateway import GatewayProcess
from tests.support.ledger_rows import request_record
from tests.support.otlp_receiver import OtlpReceiver

CANARY = "canary-access-log-7f3e1c"
# What the process prints for the person who started it (stdout), not log lines.
BANNER = "Modelyard listening on "


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, upstream_server: FakeUpstream
) -> Iterator[GatewayProcess]:
    process = remote_gateway_at(
        tmp_path_factory.mktemp("access-log"),
        upstream_server.base_url,
        {"MODELYARD_LOG_FORMAT": "json"},
    )
    yield process
    process.stop()


@pytest.fixture()
def client(gateway: GatewayProcess) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{gateway.base_url}/v1", api_key=gateway.admin_key, max_retries=0
    )


def log_lines(log_path: Path) -> list[dict[str, Any]]:
    """Every log line of the process, parsed (a line that is not JSON fails the caller)."""
    lines = log_path.read_text().splitlines()
    return [orjson.loads(line) for line in lines if line and not line.startswith(BANNER)]


def access_lines(gateway: GatewayProcess, request_id: str) -> list[dict[str, Any]]:
    return [
        line
        for line in log_lines(gateway.log_path)
        if line["logger"] == "modelyard.access" and line["request_id"] == request_id
    ]


def access_line(
    gateway: GatewayProcess, request_id: str, timeout_s: float = 10.0
) -> dict[str, Any]:
    """The request's one access line, once it is written; fails on none by then, or several."""
    deadline = time.monotonic() + timeout_s
    while not access_lines(gateway, request_id):
        assert time.monotonic() < deadline, f"no access line for {request_id}"
        time.sleep(0.05)
    time.sleep(0.2)  # a second line, if one were to come, would come now
    (line,) = access_lines(gateway, request_id)
    return line


def test_a_completion_has_one_line_with_the_ledger_s_request_id_tokens_and_cost(
    gateway: GatewayProcess, client: openai.OpenAI, upstream: FakeUpstream
) -> None:
    upstream.enqueue(JsonReply(completion_body("Bonjour.")))
    raw = client.chat.completions.with_raw_response.create(
        model="acme-large", messages=[{"role": "user", "content": "Hello"}]
    )
    request_id = raw.headers["x-request-id"]
    record = request_record(gateway, request_id)
    line = access_line(gateway, request_id)
    assert line["level"] == "INFO"
    assert line["method"] == "POST"
    assert line["http_route"] == "/v1/chat/completions"
    assert line["status"] == 200 == record["status"]
    assert line["error_code"] is None
    assert line["project"] == record["project_id"]
    assert line["request_model"] == "acme-large"
    assert line["deployment"] == "acme-large-eu" == record["deployment"]
    assert line["route"] is None
    assert (line["prompt_tokens"], line["completion_tokens"]) == (11, 5)
    assert line["prompt_tokens"] == record["prompt_tokens"]
    assert line["completion_tokens"] == record["completion_tokens"]
    assert line["cost_micros"] == record["cost_micros"] > 0
    assert line["cost_usd"] == f"0.{record['cost_micros']:06d}"
    assert line["attempts"] == 1
    assert line["client_left"] is False
    assert line["trace_id"] is None  # tracing is off
    assert 0 < line["ttft_ms"] <= line["latency_ms"]
    assert line["ts"].endswith("Z")


def test_a_request_without_a_key_has_a_line_with_its_status_and_code(
    gateway: GatewayProcess,
) -> None:
    response = httpx.post(
        f"{gateway.base_url}/v1/chat/completions",
        json={"model": "acme-large", "messages": [{"role": "user", "content": "Hi"}]},
    )
    assert response.status_code == 401
    line = access_line(gateway, response.headers["x-request-id"])
    assert line["status"] == 401
    assert line["error_code"] == response.json()["error"]["code"]
    assert line["http_route"] == "/v1/chat/completions"
    assert "project" not in line  # never admitted


def test_an_unknown_model_has_a_line_with_its_status_and_code(
    gateway: GatewayProcess, client: openai.OpenAI, upstream: FakeUpstream
) -> None:
    with pytest.raises(openai.NotFoundError) as refused:
        client.chat.completions.create(
            model="no-such-model", messages=[{"role": "user", "content": "Hi"}]
        )
    line = access_line(gateway, refused.value.response.headers["x-request-id"])
    assert line["status"] == 404
    assert line["error_code"] == "model_not_found" == refused.value.code
    assert upstream.requests == []


def test_a_stream_the_client_abandons_has_one_line_saying_so(
    gateway: GatewayProcess, upstream: FakeUpstream
) -> None:
    upstream.enqueue(StreamReply(stream_events([f"w{i} " for i in range(60)]), delay_s=0.05))
    with httpx.stream(
        "POST",
        f"{gateway.base_url}/v1/chat/completions",
        json={
            "model": "acme-large",
            "messages": [{"role": "user", "content": "Hi"}],
            "stream": True,
        },
        headers={"Authorization": f"Bearer {gateway.admin_key}"},
        timeout=30,
    ) as response:
        request_id = response.headers["x-request-id"]
        lines = response.iter_lines()
        received = [line for line in (next(lines) for _ in range(8)) if line.startswith("data: {")]
    record = request_record(gateway, request_id)
    line = access_line(gateway, request_id)
    assert line["client_left"] is True
    assert record["client_disconnected"] is True
    assert line["status"] == record["status"]
    assert line["completion_tokens"] == record["completion_tokens"]
    assert len(received) - 1 <= line["completion_tokens"] < 60
    assert line["cost_micros"] == record["cost_micros"]


def test_every_line_is_json_and_none_holds_the_prompt_or_a_key(
    gateway: GatewayProcess, client: openai.OpenAI, upstream: FakeUpstream
) -> None:
    ask = [{"role": "user", "content": f"Say {CANARY}"}]
    upstream.enqueue(JsonReply(completion_body(f"You said {CANARY}.")))
    answered = client.chat.completions.with_raw_response.create(model="acme-large", messages=ask)
    upstream.enqueue(StreamReply(stream_events(["You said ", CANARY]), delay_s=0.01))
    with client.chat.completions.with_streaming_response.create(
        model="acme-large", messages=ask, stream=True
    ) as streamed:
        list(streamed.iter_lines())
    # An invalid request whose bad value is the canary: the refusal's text may quote it to the
    # client, but no log line may.
    refused = httpx.post(
        f"{gateway.base_url}/v1/chat/completions",
        json={"model": "acme-large", "messages": ask, "temperature": CANARY},
        headers={"Authorization": f"Bearer {gateway.admin_key}"},
    )
    assert refused.status_code == 400
    for request_id in (
        answered.headers["x-request-id"],
        streamed.headers["x-request-id"],
        refused.headers["x-request-id"],
    ):
        access_line(gateway, request_id)
    text = gateway.log_path.read_text()
    assert CANARY not in text
    assert UPSTREAM_SECRET not in text
    assert str(gateway.admin_key) not in text
    lines = log_lines(gateway.log_path)  # every line parses
    assert {"ts", "level", "logger", "message"} <= set(lines[0])
    assert any(line["logger"].startswith("uvicorn") for line in lines)


def test_a_traced_request_s_line_names_the_trace_its_server_span_is_in(
    tmp_path: Path, upstream_server: FakeUpstream
) -> None:
    trace_id, parent_id = os.urandom(16).hex(), os.urandom(8).hex()
    with OtlpReceiver().running() as receiver:
        traced = remote_gateway_at(
            tmp_path,
            upstream_server.base_url,
            {
                "MODELYARD_LOG_FORMAT": "json",
                "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.http_endpoint,
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_BSP_SCHEDULE_DELAY": "100",
            },
        )
        try:
            upstream_server.enqueue(JsonReply(completion_body("Bonjour.")))
            response = httpx.post(
                f"{traced.base_url}/v1/chat/completions",
                json={"model": "acme-large", "messages": [{"role": "user", "content": "Hi"}]},
                headers={
                    "Authorization": f"Bearer {traced.admin_key}",
                    "traceparent": f"00-{trace_id}-{parent_id}-01",
                },
            )
            assert response.status_code == 200
            request_id = response.headers["x-request-id"]
            line = access_line(traced, request_id)
            spans = receiver.wait_for(
                lambda spans: any(s.trace_id == trace_id and s.kind == "SERVER" for s in spans)
            )
        finally:
            traced.stop()
    assert line["trace_id"] == trace_id
    (server,) = [s for s in spans if s.trace_id == trace_id and s.kind == "SERVER"]
    assert server.attributes["modelyard.request_id"] == request_id
    assert request_record(traced, request_id)["request_id"] == request_id
    log_lines(traced.log_path)  # tracing's own lines are JSON too
