"""Budgets, rate limits, the cost header, the ledger and usage reports, through a real gateway in
front of a fake OpenAI-compatible upstream (prices from the catalog: $0.40 in, $1.60 out per 1M).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelyard.catalog.cards import Price
from modelyard.ledger.cost import cost_micros, worst_case_micros
from modelyard.protocol.chat import ChatCompletionRequest
from modelyard.protocol.generation import Usage
from modelyard.serving.chat import chat_prompt_bound
from modelyard.testing.fake_upstream import FakeUpstream, StreamReply, stream_events
from tests.remote.fixtures import remote_catalog
from tests.support.gateway import GatewayProcess
from tests.support.ledger_rows import wait_rows

PRICE = Price(400_000, 1_600_000, 400_000)
CHAT: dict[str, Any] = {
    "model": "acme-large",
    "messages": [{"role": "user", "content": "Hi"}],
    "max_tokens": 10,
}


@pytest.fixture(scope="module")
def spend_gateway(
    tmp_path_factory: pytest.TempPathFactory, upstream_server: FakeUpstream
) -> Iterator[GatewayProcess]:
    directory = tmp_path_factory.mktemp("spend")
    catalog = remote_catalog(directory / "catalog.yaml", upstream_server.base_url)
    gateway = GatewayProcess(
        directory / "data", env={"ACME_KEY": "sk-x"}, args=("--catalog", str(catalog))
    ).start()
    yield gateway
    gateway.stop()


def admin(gateway: GatewayProcess) -> dict[str, str]:
    return {"Authorization": f"Bearer {gateway.admin_key}"}


def new_project(gateway: GatewayProcess, name: str, limits: dict[str, Any]) -> str:
    url = gateway.base_url
    assert (
        httpx.post(f"{url}/admin/projects", json={"id": name}, headers=admin(gateway)).status_code
        == 201
    )
    set_limits = httpx.put(
        f"{url}/admin/projects/{name}/limits", json=limits, headers=admin(gateway)
    )
    assert set_limits.status_code == 200, set_limits.text
    key: str = httpx.post(
        f"{url}/admin/projects/{name}/keys", json={"name": "k"}, headers=admin(gateway)
    ).json()["key"]
    return key


def chat(gateway: GatewayProcess, key: str, body: dict[str, Any] = CHAT) -> httpx.Response:
    return httpx.post(
        f"{gateway.base_url}/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


def test_a_day_budget_admits_exactly_what_fits_then_refuses_with_the_remainder(
    spend_gateway: GatewayProcess, upstream: FakeUpstream
) -> None:
    reserved = worst_case_micros(
        PRICE, chat_prompt_bound(ChatCompletionRequest.model_validate(CHAT)), 10
    )
    actual = cost_micros(PRICE, Usage(11, 5))  # what the fake upstream reports
    budget = reserved + 4 * actual + actual // 2
    key = new_project(
        spend_gateway, "budgeted", {"budgets_usd": {"day": str(Decimal(budget) / 1_000_000)}}
    )
    statuses = []
    for _ in range(8):
        statuses.append(chat(spend_gateway, key))
        # A reservation is settled once its record is committed; until then it holds the worst
        # case. Waiting for each record makes the count exact.
        wait_rows(spend_gateway, "budgeted", sum(r.status_code == 200 for r in statuses))
    admitted = [r for r in statuses if r.status_code == 200]
    # Spent before the n-th request is (n - 1) * actual, and it needs `reserved` free.
    assert len(admitted) == 5
    assert admitted[0].headers["x-modelyard-cost-usd"] == str(Decimal(actual) / 1_000_000)
    refused = statuses[5]
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["code"] == "insufficient_quota" and error["type"] == "insufficient_quota"
    assert "day budget" in error["message"] and "Remaining: $" in error["message"]
    remaining = Decimal(refused.headers["x-modelyard-budget-remaining-usd"])
    assert remaining == Decimal(budget - 5 * actual) / 1_000_000
    rows = wait_rows(spend_gateway, "budgeted", 5)
    assert sorted(r["cost_micros"] for r in rows) == [actual] * 5
    assert all(r["reserved_micros"] == reserved for r in rows)


def test_requests_per_minute_are_limited_with_headers(spend_gateway: GatewayProcess) -> None:
    key = new_project(spend_gateway, "paced", {"requests_per_minute": 3})
    responses = [chat(spend_gateway, key) for _ in range(4)]
    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    assert responses[0].headers["x-ratelimit-limit-requests"] == "3"
    assert responses[2].headers["x-ratelimit-remaining-requests"] == "0"
    throttled = responses[3]
    assert throttled.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(throttled.headers["retry-after"]) <= 60
    assert throttled.headers["x-ratelimit-remaining-requests"] == "0"


def test_a_stream_abandoned_mid_way_is_billed_for_what_was_generated(
    spend_gateway: GatewayProcess, upstream: FakeUpstream
) -> None:
    key = new_project(spend_gateway, "streams", {})
    pieces = [f" w{i}" for i in range(40)]
    upstream.enqueue(
        StreamReply(
            stream_events(
                pieces, usage={"prompt_tokens": 9, "completion_tokens": 40, "total_tokens": 49}
            ),
            delay_s=0.05,
        )
    )
    with httpx.stream(
        "POST",
        f"{spend_gateway.base_url}/v1/chat/completions",
        json={**CHAT, "stream": True, "max_tokens": 100},
        headers={"Authorization": f"Bearer {key}"},
    ) as response:
        lines = response.iter_lines()
        received = [next(lines) for _ in range(10)]
    assert any(line.startswith("data: {") for line in received)
    (row,) = wait_rows(spend_gateway, "streams", 1)
    assert row["client_disconnected"] and row["outcome"] == "client_disconnected"
    # The upstream's usage never arrived: the gateway counted the chunks it had relayed.
    assert 1 <= row["completion_tokens"] < 40
    assert row["usage_estimated"]
    assert row["cost_micros"] == cost_micros(
        PRICE, Usage(row["prompt_tokens"], row["completion_tokens"])
    )


def test_usage_report_as_json_csv_and_cli(spend_gateway: GatewayProcess) -> None:
    key = new_project(spend_gateway, "reported", {})
    for _ in range(3):
        assert chat(spend_gateway, key).status_code == 200
    wait_rows(spend_gateway, "reported", 3)
    url = f"{spend_gateway.base_url}/admin/usage?group_by=project_id,model&project=reported"
    report = httpx.get(url, headers=admin(spend_gateway)).json()
    (row,) = report["data"]
    assert (row["project_id"], row["model"], row["requests"]) == ("reported", "acme-large", 3)
    assert row["cost_micros"] == 3 * cost_micros(PRICE, Usage(11, 5))
    csv_text = httpx.get(url + "&format=csv", headers=admin(spend_gateway)).text.splitlines()
    assert csv_text[0] == (
        "project_id,model,requests,prompt_tokens,completion_tokens,cost_usd,errors,error_rate,"
        "latency_ms_avg"
    )
    assert csv_text[1].startswith("reported,acme-large,3,33,15,")
    # Narrowed to some values of a dimension: the others are left out.
    narrowed = httpx.get(url + "&model=acme-large&model=elsewhere", headers=admin(spend_gateway))
    assert narrowed.json()["data"] == report["data"]
    none = httpx.get(url + "&model=elsewhere", headers=admin(spend_gateway))
    assert none.json()["data"] == []
    too_many = httpx.get(url + "&model=m" * 101, headers=admin(spend_gateway))
    assert too_many.status_code == 400
    assert too_many.json()["error"]["param"] == "model"
    # The project's own key may read its usage, but not another project's.
    own = httpx.get(url, headers={"Authorization": f"Bearer {key}"})
    assert own.status_code == 200
    other = httpx.get(
        url.replace("reported", "budgeted"), headers={"Authorization": f"Bearer {key}"}
    )
    assert other.status_code == 404
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "modelyard",
            "usage",
            "--group-by",
            "model",
            "--project",
            "reported",
        ],
        env={
            "MODELYARD_URL": spend_gateway.base_url,
            "MODELYARD_API_KEY": key,
            "PATH": "/usr/bin:/bin",
        },
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parent,
    )
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout.splitlines()[1].split()[:2] == ["acme-large", "3"]
