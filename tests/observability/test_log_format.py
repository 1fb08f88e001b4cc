"""The two log formats (text for a terminal, JSON for a log shipper) and turning the access log
off: the formatters on their own, and a real `modelyard serve` process in each setting."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from modelyard.observability.access_log import AccessLog
from modelyard.observability.logs import JsonFormatter, TextFormatter
from modelyard.observability.request_telemetry import (
    AdmittedFacts,
    AttemptFacts,
    RequestTelemetry,
)
from modelyard.testing.fake_upstream import FakeUpstream, JsonReply, completion_body
from tests.remote.fixtures import remote_gateway_at
from tests.support.gateway import GatewayProcess
from tests.support.ledger_rows import request_record

CANARY = "canary-log-format-51d0aa"


def written(formatter: logging.Formatter, emit: Callable[[logging.Logger], None]) -> str:
    """What one handler with `formatter` writes for the records that `emit(logger)` logs."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logger = logging.getLogger(f"test.log_format.{id(stream)}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        emit(logger)
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def finished_request(admitted: AdmittedFacts | None) -> RequestTelemetry:
    request = RequestTelemetry("a1b2c3", "POST", sinks=())
    request.http_route = "/v1/chat/completions"
    if admitted is not None:
        request.expect_admitted()
    request.http_finished(200)
    request.duration_s = 0.0414
    if admitted is not None:
        request.lifecycle_left(admitted)
    return request


ADMITTED = AdmittedFacts(
    project_id="research",
    request_model="fast-chat",
    deployment="acme-large-eu",
    provider="openai_compat",
    response_model="acme-large",
    route="fast-chat",
    status=200,
    error_code=None,
    prompt_tokens=12,
    completion_tokens=30,
    cost_micros=42,
    attempts=(AttemptFacts("acme-large-eu", "openai_compat", "acme-large", 0.03, 12, 30),),
    time_to_first_token_s=0.0123,
    time_per_output_token_s=0.001,
)


def test_a_text_access_line_reads_as_one_line_for_a_person() -> None:
    line = written(
        TextFormatter("%(levelname)s %(name)s: %(message)s"),
        lambda logger: AccessLog(logger).request_finished(finished_request(ADMITTED)),
    )
    assert line.endswith(
        ": POST /v1/chat/completions 200 41ms req=a1b2c3 project=research model=fast-chat "
        "route=fast-chat deployment=acme-large-eu ttft=12ms tokens=12+30 cost=$0.000042 "
        "attempts=1\n"
    )


def test_a_json_access_line_has_the_fields_as_top_level_keys() -> None:
    text = written(
        JsonFormatter(),
        lambda logger: AccessLog(logger).request_finished(finished_request(ADMITTED)),
    )
    line = orjson.loads(text)
    assert line["message"] == "POST /v1/chat/completions 200"
    assert line["latency_ms"] == 41.4
    assert line["ttft_ms"] == 12.3
    assert line["cost_usd"] == "0.000042"
    assert (line["route"], line["request_model"], line["attempts"]) == ("fast-chat", "fast-chat", 1)


def test_a_refused_request_s_line_has_no_admitted_fields() -> None:
    line = orjson.loads(
        written(
            JsonFormatter(),
            lambda logger: AccessLog(logger).request_finished(finished_request(None)),
        )
    )
    assert set(line) == {
        "ts", "level", "logger", "message", "request_id", "trace_id", "method",
        "http_route", "status", "error_code", "latency_ms",
    }  # fmt: skip


def raise_with_canary() -> None:
    raise ValueError(f"input was {CANARY}")


def test_a_json_exception_is_its_class_and_place_never_its_text() -> None:
    def emit(logger: logging.Logger) -> None:
        try:
            raise_with_canary()
        except ValueError:
            logger.exception("could not parse")

    text = written(JsonFormatter(), emit)
    assert CANARY not in text
    line = orjson.loads(text)
    assert line["level"] == "ERROR"
    assert line["message"] == "could not parse"
    assert line["exception"]["type"] == "ValueError"
    assert "test_log_format.py:" in line["exception"]["where"]
    assert line["exception"]["where"].startswith("test_log_format.py")
    assert "raise_with_canary" in line["exception"]["where"]


def test_json_timestamps_are_iso_8601_utc() -> None:
    text = written(JsonFormatter(), lambda logger: logger.info("hello %s", "there"))
    line = orjson.loads(text)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["ts"])
    assert line["message"] == "hello there"


@pytest.fixture(scope="module")
def text_gateway(
    tmp_path_factory: pytest.TempPathFactory, upstream_server: FakeUpstream
) -> Iterator[GatewayProcess]:
    process = remote_gateway_at(
        tmp_path_factory.mktemp("text-log"),
        upstream_server.base_url,
        {"MODELYARD_LOG_FORMAT": "text"},
    )
    yield process
    process.stop()


def chat(gateway: GatewayProcess, upstream: FakeUpstream) -> str:
    upstream.enqueue(JsonReply(completion_body("Bonjour.")))
    response = httpx.post(
        f"{gateway.base_url}/v1/chat/completions",
        json={"model": "acme-large", "messages": [{"role": "user", "content": "Hello"}]},
        headers={"Authorization": f"Bearer {gateway.admin_key}"},
    )
    assert response.status_code == 200
    request_id: str = response.headers["x-request-id"]
    request_record(gateway, request_id)  # the lifecycle has left: its line is written
    return request_id


def log_of(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_the_text_format_writes_a_readable_access_line(
    text_gateway: GatewayProcess, upstream: FakeUpstream
) -> None:
    request_id = chat(text_gateway, upstream)
    (line,) = [line for line in log_of(text_gateway.log_path) if f"req={request_id}" in line]
    assert re.search(
        r" INFO modelyard\.access: POST /v1/chat/completions 200 [\d.]+ms "
        rf"req={request_id} project=\S+ model=acme-large deployment=acme-large-eu "
        r"(ttft=[\d.]+ms )?tokens=11\+5 cost=\$0\.\d{6} attempts=1$",
        line,
    )
    # Every line, uvicorn's included, is in the one format.
    assert any(" INFO uvicorn.error: " in line for line in log_of(text_gateway.log_path))


def test_no_access_line_is_written_when_the_access_log_is_off(
    tmp_path: Path, upstream_server: FakeUpstream
) -> None:
    gateway = remote_gateway_at(
        tmp_path,
        upstream_server.base_url,
        {"MODELYARD_LOG_FORMAT": "json", "MODELYARD_ACCESS_LOG": "false"},
    )
    try:
        request_id = chat(gateway, upstream_server)
        refused = httpx.post(f"{gateway.base_url}/v1/chat/completions", json={})
        assert refused.status_code == 401
    finally:
        gateway.stop()
    lines = [orjson.loads(line) for line in log_of(gateway.log_path) if line.startswith("{")]
    assert lines, "the gateway logged nothing at all"
    assert not [line for line in lines if line["logger"] == "modelyard.access"]
    assert request_id not in gateway.log()


def test_a_request_no_route_matched_reads_as_unmatched() -> None:
    request = RequestTelemetry("d4e5f6", "GET", sinks=())
    request.error_code = "not_found"
    request.http_finished(404)
    text = written(JsonFormatter(), lambda logger: AccessLog(logger).request_finished(request))
    line = orjson.loads(text)
    assert line["message"] == "GET (unmatched) 404"
    assert (line["http_route"], line["error_code"]) == (None, "not_found")
    readable = written(
        TextFormatter("%(message)s"), lambda logger: AccessLog(logger).request_finished(request)
    )
    assert readable.startswith("GET (unmatched) 404 ")
    assert " error=not_found req=d4e5f6" in readable
