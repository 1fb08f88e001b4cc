"""The gateway's Prometheus metrics over HTTP: who may read /metrics, and what requests,
refusals, failures and budgets leave there, against a real gateway on a fake upstream."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from modelyard.observability.metrics import MetricSample, StateMetrics
from modelyard.testing.fake_upstream import FakeUpstream, JsonReply
from tests.remote.fixtures import NO_BREAKERS, remote_catalog
from tests.support.gateway import GatewayProcess
from tests.support.ledger_rows import request_record

SCRAPE_TOKEN = "scrape-token-7c1f0e2a9b"
CHAT = {"model": "acme-large", "messages": [{"role": "user", "content": "hello"}]}


def start_gateway(root: Path, upstream: FakeUpstream, **env: str) -> GatewayProcess:
    catalog = remote_catalog(root / "catalog.yaml", upstream.base_url)
    return GatewayProcess(
        root / "data",
        env={
            "MODELYARD_CATALOG": str(catalog),
            "ACME_KEY": "sk-acme",
            **NO_BREAKERS,
            **env,
        },
    ).start()


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, fake: FakeUpstream
) -> Iterator[GatewayProcess]:
    process = start_gateway(
        tmp_path_factory.mktemp("metrics"), fake, MODELYARD_METRICS_TOKEN=SCRAPE_TOKEN
    )
    yield process
    process.stop()


def scrape(gateway: GatewayProcess, token: str | None) -> httpx.Response:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return httpx.get(f"{gateway.base_url}/metrics", headers=headers, timeout=10)


def samples(text: str, name: str, **labels: str) -> list[Any]:
    return [
        sample
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    ]


def value(gateway: GatewayProcess, name: str, **labels: str) -> float:
    try:
        return gateway.metric(name, **labels)
    except KeyError:
        return 0.0


def new_project(gateway: GatewayProcess, name: str, limits: dict[str, Any]) -> str:
    assert gateway.admin("POST", "/admin/projects", {"id": name}).status_code == 201
    changed = gateway.admin("PUT", f"/admin/projects/{name}/limits", limits)
    assert changed.status_code == 200, changed.text
    made = gateway.admin("POST", f"/admin/projects/{name}/keys", {"name": "k"})
    assert made.status_code == 201, made.text
    key: str = made.json()["key"]
    return key


def chat(gateway: GatewayProcess, key: str | None) -> httpx.Response:
    return httpx.post(
        f"{gateway.base_url}/v1/chat/completions",
        json=CHAT,
        headers={"Authorization": f"Bearer {key or gateway.admin_key}"},
        timeout=30,
    )


def test_metrics_are_read_with_the_scrape_token_or_an_owners_key(gateway: GatewayProcess) -> None:
    with_token = scrape(gateway, SCRAPE_TOKEN)
    assert with_token.status_code == 200
    assert with_token.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert samples(with_token.text, "modelyard_build_info")
    assert scrape(gateway, gateway.admin_key).status_code == 200
    for refused in (None, "scrape-token-wrong", SCRAPE_TOKEN[:-1]):
        answer = scrape(gateway, refused)
        assert answer.status_code == 401, refused
        assert answer.json()["error"]["code"] == "invalid_api_key"
        assert SCRAPE_TOKEN not in answer.text


def test_a_member_key_may_not_read_metrics(gateway: GatewayProcess) -> None:
    key = new_project(gateway, "metrics-member", {})
    answer = scrape(gateway, key)
    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "permission_denied"


def test_an_answered_request_is_counted_with_its_tokens_and_cost(
    gateway: GatewayProcess, fake: FakeUpstream
) -> None:
    where = {"deployment": "acme-large-eu"}
    before = {
        "requests": value(gateway, "modelyard_requests_total", status_class="2xx", **where),
        "input": value(gateway, "modelyard_tokens_total", gen_ai_token_type="input", **where),
        "output": value(gateway, "modelyard_tokens_total", gen_ai_token_type="output", **where),
        "cost": value(gateway, "modelyard_cost_micros_total", project="default", **where),
        "attempts": value(gateway, "gen_ai_client_operation_duration_seconds_count", **where),
    }
    answer = chat(gateway, None)
    assert answer.status_code == 200, answer.text
    record = request_record(gateway, answer.headers["x-request-id"])
    after_requests = value(gateway, "modelyard_requests_total", status_class="2xx", **where)
    assert after_requests == before["requests"] + 1
    assert (
        value(gateway, "modelyard_tokens_total", gen_ai_token_type="input", **where)
        == before["input"] + record["prompt_tokens"]
    )
    assert (
        value(gateway, "modelyard_tokens_total", gen_ai_token_type="output", **where)
        == before["output"] + record["completion_tokens"]
    )
    assert (
        value(gateway, "modelyard_cost_micros_total", project="default", **where)
        == before["cost"] + record["cost_micros"]
    )
    assert (
        value(gateway, "gen_ai_client_operation_duration_seconds_count", **where)
        == before["attempts"] + 1
    )
    text = scrape(gateway, SCRAPE_TOKEN).text
    server = samples(
        text,
        "gen_ai_server_request_duration_seconds_bucket",
        gen_ai_request_model="acme-large",
        gen_ai_response_model="acme-large",
        gen_ai_operation_name="chat",
    )
    bounds = sorted({float(s.labels["le"]) for s in server})
    assert bounds[0] == 0.0003 and bounds[-2] == 60.0 and bounds[-1] == float("inf")
    # Labels are names from the catalog and the configuration: never a key or a prompt.
    assert "hello" not in text
    assert gateway.admin_key is not None and gateway.admin_key not in text


def test_a_failed_upstream_is_counted_by_status_class_and_code(
    gateway: GatewayProcess, fake: FakeUpstream
) -> None:
    where = {"deployment": "acme-large-eu", "status_class": "5xx"}
    before = value(gateway, "modelyard_requests_total", **where)
    fake.enqueue(JsonReply({"error": {"message": "boom", "type": "server_error"}}, status=500))
    answer = chat(gateway, None)
    assert answer.status_code >= 500
    code = answer.json()["error"]["code"]
    assert value(gateway, "modelyard_requests_total", code=code, **where) >= 1
    assert value(gateway, "modelyard_requests_total", **where) == before + 1


def test_a_rate_limit_refusal_is_counted_by_reason(gateway: GatewayProcess) -> None:
    made = gateway.admin("POST", "/admin/projects", {"id": "metrics-rpm"})
    assert made.status_code == 201
    key = gateway.admin("POST", "/admin/projects/metrics-rpm/keys", {"name": "k"}).json()
    limits = gateway.admin(
        "PUT",
        f"/admin/projects/metrics-rpm/keys/{key['id']}/limits",
        {"requests_per_minute": 1},
    )
    assert limits.status_code == 200, limits.text
    before = value(gateway, "modelyard_limit_refusals_total", reason="rpm_key")
    assert chat(gateway, key["key"]).status_code == 200
    refused = chat(gateway, key["key"])
    assert refused.status_code == 429
    assert value(gateway, "modelyard_limit_refusals_total", reason="rpm_key") == before + 1


def test_a_projects_budget_shows_its_limit_spend_and_remainder(gateway: GatewayProcess) -> None:
    key = new_project(gateway, "metrics-budget", {"budgets_usd": {"day": "2"}})
    answer = chat(gateway, key)
    assert answer.status_code == 200, answer.text
    record = request_record(gateway, answer.headers["x-request-id"])
    where = {"project": "metrics-budget", "period": "day"}
    assert value(gateway, "modelyard_budget_limit_micros", **where) == 2_000_000
    # The spend settles once the ledger has the record.
    spent = value(gateway, "modelyard_budget_spent_micros", **where)
    assert spent == record["cost_micros"] > 0
    assert value(gateway, "modelyard_budget_remaining_micros", **where) == 2_000_000 - spent
    assert not samples(scrape(gateway, SCRAPE_TOKEN).text, "modelyard_budget_limit_micros",
                       project="metrics-member")  # fmt: skip


def test_metrics_can_be_public_and_labelled_by_project_when_the_operator_says_so(
    tmp_path: Path, fake: FakeUpstream
) -> None:
    gateway = start_gateway(
        tmp_path,
        fake,
        MODELYARD_METRICS_PUBLIC="true",
        MODELYARD_METRICS_PROJECT_LABEL="true",
    )
    try:
        assert chat(gateway, None).status_code == 200
        answer = scrape(gateway, None)
        assert answer.status_code == 200
        counted = samples(answer.text, "modelyard_requests_total", deployment="acme-large-eu")
        assert [s.labels["project"] for s in counted] == ["default"]
    finally:
        gateway.stop()


def test_metrics_turned_off_answer_not_found(tmp_path: Path, fake: FakeUpstream) -> None:
    gateway = start_gateway(tmp_path, fake, MODELYARD_METRICS="false")
    try:
        answer = scrape(gateway, gateway.admin_key)
        assert answer.status_code == 404
        assert "MODELYARD_METRICS=false" in answer.json()["error"]["message"]
        assert chat(gateway, None).status_code == 200
    finally:
        gateway.stop()


def test_a_state_counter_advances_by_increases_and_survives_its_source_restarting() -> None:
    registry = CollectorRegistry()
    state = StateMetrics(registry)

    def report(completed: float) -> float:
        labels = {"deployment": "d"}
        state.update([MetricSample("jobs_completed_total", "counter", "Jobs", completed, labels)])
        found = registry.get_sample_value("jobs_completed_total", labels)
        assert found is not None
        return found

    assert report(3) == 3
    assert report(5) == 5
    assert report(5) == 5
    # The engine restarted and counts from zero again: the counter keeps going.
    assert report(2) == 7
    assert report(4) == 9
