"""A real Prometheus scrapes `modelyard serve --workers 2` under load: what PromQL says over the
scraped counters equals the usage ledger per deployment (requests, tokens by type, cost, status
classes), also after a worker is killed with SIGKILL while a request is in flight and replaced
(nothing lost, no counter reset, the unfinished request recorded and counted once as
`interrupted` on deployment "unknown"); /metrics is open to the scrape token and owners only.

The load (tests/observability/metrics_world.py) comes from six concurrent clients, each call on
a connection of its own: chat streamed and not on two deployments, a route that falls back from
a failing deployment, upstream 500s, embeddings, and a project whose rate limit refuses some.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.worker_processes import running, worker_pids
from tests.observability import metrics_world as world
from tests.routing.world import ScriptedUpstream
from tests.support.gateway import GatewayProcess
from tests.support.prometheus import PrometheusServer
from tests.support.services import RedisServer

# A Redis database of its own on the session's server, away from other tests' counters.
REDIS_DB = 5

View = dict[str, dict[tuple[str, ...], float]]


@dataclass(frozen=True)
class Scraped:
    gateway: GatewayProcess
    prometheus: PrometheusServer
    keys: world.Keys
    upstream: ScriptedUpstream


@pytest.fixture(scope="module")
def scraped(
    tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer, prometheus_binary: Path
) -> Iterator[Scraped]:
    with world.scripted_upstream() as upstream:
        gateway = world.start_gateway(
            tmp_path_factory.mktemp("scraped"), upstream.base_url, redis_server.url(REDIS_DB)
        )
        try:
            prometheus = world.prometheus_for(prometheus_binary, gateway)
            try:
                yield Scraped(gateway, prometheus, world.make_projects(gateway), upstream)
            finally:
                prometheus.stop()
        finally:
            gateway.stop()
    assert world.UPSTREAM_KEY not in gateway.log()
    assert world.SCRAPE_TOKEN not in gateway.log()


def ledger_view(rows: list[dict[str, Any]]) -> View:
    """Requests, tokens by type, cost and status classes per deployment, from usage records
    (zero sums left out: a counter nothing was added to may not exist)."""
    view: View = {"requests": {}, "tokens": {}, "cost": {}, "status": {}}
    for row in rows:
        deployment = row["deployment"]
        _add(view["requests"], (deployment,), 1)
        _add(view["tokens"], (deployment, "input"), row["prompt_tokens"])
        _add(view["tokens"], (deployment, "output"), row["completion_tokens"])
        _add(view["cost"], (deployment,), row["cost_micros"])
        _add(view["status"], (deployment, f"{row['status'] // 100}xx"), 1)
    return {name: {k: v for k, v in sums.items() if v} for name, sums in view.items()}


def prometheus_view(prometheus: PrometheusServer) -> View:
    view = {
        "requests": prometheus.vector(
            "sum by (deployment) (modelyard_requests_total)", "deployment"
        ),
        "tokens": prometheus.vector(
            "sum by (deployment, gen_ai_token_type) (modelyard_tokens_total)",
            "deployment",
            "gen_ai_token_type",
        ),
        "cost": prometheus.vector(
            "sum by (deployment) (modelyard_cost_micros_total)", "deployment"
        ),
        "status": prometheus.vector(
            "sum by (deployment, status_class) (modelyard_requests_total)",
            "deployment",
            "status_class",
        ),
    }
    return {name: {k: v for k, v in sums.items() if v} for name, sums in view.items()}


def _add(sums: dict[tuple[str, ...], float], key: tuple[str, ...], value: float) -> None:
    sums[key] = sums.get(key, 0) + value


def assert_prometheus_equals_ledger(
    scraped: Scraped, rows: list[dict[str, Any]], timeout_s: float = 15.0
) -> View:
    """Prometheus' view equals the ledger's, once a scrape has caught up with the ledger (the
    ledger is complete when this is called; counters are at most one scrape behind it)."""
    expected = ledger_view(rows)
    deadline = time.monotonic() + timeout_s
    while True:
        scraped.prometheus.wait_for_scrape()
        seen = prometheus_view(scraped.prometheus)
        if seen == expected or time.monotonic() > deadline:
            break
    assert seen == expected
    return seen


def admitted(statuses: Counter[int]) -> int:
    """Requests that reach a model leave a usage record; the limiter's 429s do not."""
    return sum(statuses.values()) - statuses[429]


def test_metrics_answer_the_scrape_token_and_owners_only(scraped: Scraped) -> None:
    gateway = scraped.gateway
    assert world.metrics_status(gateway, None) == 401
    assert world.metrics_status(gateway, "Bearer not-the-scrape-token-0123456789") == 401
    assert world.metrics_status(gateway, f"Bearer {scraped.keys.observed}") == 403
    assert world.metrics_status(gateway, f"Bearer {world.SCRAPE_TOKEN}") == 200
    assert world.metrics_status(gateway, f"Bearer {gateway.admin_key}") == 200
    scraped.prometheus.wait_for_scrape()
    (target,) = scraped.prometheus.targets()
    assert target["health"] == "up", target


def test_prometheus_totals_equal_the_ledger_per_deployment_across_a_killed_worker(
    scraped: Scraped,
) -> None:
    gateway, prometheus = scraped.gateway, scraped.prometheus
    assert gateway.process is not None
    supervisor = gateway.process.pid

    first = world.run_load(gateway, scraped.keys)
    assert first[200] > 20 and first[502] == 3 and first[429] >= 1, first
    victim, survivor = sorted(worker_pids(supervisor))
    # The victim has served requests of its own, whose counts must outlive it.
    for _ in range(3):
        world.ask_worker(gateway, victim, scraped.keys.observed)
    rows = world.wait_ledger(gateway, admitted(first) + 3)
    seen = assert_prometheus_equals_ledger(scraped, rows)
    assert {"alpha-eu", "beta-eu", "embed-eu"} <= {d for (d,) in seen["requests"]}
    assert ("alpha-eu", "5xx") in seen["status"]
    assert prometheus.vector("sum(modelyard_limit_refusals_total)") == {(): first[429]}

    # The victim dies while one of its requests waits for the upstream's answer.
    held = f"{world.HOLD_PREFIX} on, the worker dies"
    connection = world.worker_connection(gateway, victim)
    with ThreadPoolExecutor(max_workers=1) as pool:
        in_flight = pool.submit(world.chat_on, connection, scraped.keys.observed, held)
        try:
            world.wait_until_received(scraped.upstream, held)
            os.kill(victim, signal.SIGKILL)
            with pytest.raises(ConnectionError):  # the connection closes without an answer
                in_flight.result(timeout=30)
        finally:
            connection.close()
    deadline = time.monotonic() + 30
    while running(victim) or len(worker_pids(supervisor) - {victim}) < 2:
        assert time.monotonic() < deadline, "no replacement for the killed worker"
        time.sleep(0.1)
    world.wait_for_every_worker(gateway)
    # The replacement settled what the victim left open: the unanswered request has one record.
    answered = {row["request_id"] for row in rows}
    rows = world.wait_ledger(gateway, len(rows) + 1)
    (interrupted,) = [row for row in rows if row["request_id"] not in answered]
    assert interrupted["outcome"] == "interrupted", interrupted
    assert interrupted["project_id"] == world.OBSERVED
    assert (interrupted["deployment"], interrupted["status"]) == ("unknown", 500)
    assert (interrupted["prompt_tokens"], interrupted["completion_tokens"]) == (0, 0)
    assert interrupted["cost_micros"] == interrupted["reserved_micros"] > 0
    # Nothing the killed worker counted is lost, and the interrupted request is counted once.
    seen = assert_prometheus_equals_ledger(scraped, rows)
    assert seen["requests"][("unknown",)] == 1
    interrupted_requests = prometheus.vector(
        'sum(modelyard_requests_total{deployment="unknown", code="interrupted"})'
    )
    assert interrupted_requests == {(): 1.0}

    second = world.run_load(gateway, scraped.keys)
    rows = world.wait_ledger(gateway, len(rows) + admitted(second))
    assert_prometheus_equals_ledger(scraped, rows)
    assert survivor in worker_pids(supervisor)
    # The interrupted request stays one record: nothing settled it a second time.
    outcomes = Counter(row["outcome"] for row in rows)
    assert outcomes["interrupted"] == 1, outcomes
    (again,) = [row for row in rows if row["outcome"] == "interrupted"]
    assert again["request_id"] == interrupted["request_id"]
    assert world.received(scraped.upstream, held) == 1  # and was never sent again
    # Prometheus never saw a counter go down: the sums stayed sums over workers throughout.
    resets = prometheus.vector("sum(resets(modelyard_requests_total[10m]))")
    assert resets == {(): 0.0}
    token_resets = prometheus.vector("sum(resets(modelyard_tokens_total[10m]))")
    assert token_resets == {(): 0.0}
    assert prometheus.vector("sum(modelyard_limit_refusals_total)") == {
        (): first[429] + second[429]
    }
    # Every answered request has a duration; the interrupted one never answered.
    requests = prometheus.vector("sum(gen_ai_server_request_duration_seconds_count)")
    assert requests == {(): len(rows) - 1}
