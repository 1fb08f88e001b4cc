"""The assets shipped for operators (deploy/): the alerting rules pass `promtool check rules` and
their unit tests (`promtool test rules`), the example Prometheus configuration passes `promtool
check config`, and the Grafana dashboard is well formed, with every query parsing and, against a
real Prometheus scraping a loaded `--workers 2` gateway (tests/observability/metrics_world.py,
with the bundled SmolLM2 on the local engine), returning data; every alert rule evaluates there
without error.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.observability import metrics_world as world
from tests.support.gateway import GatewayProcess
from tests.support.prometheus import PrometheusServer
from tests.support.services import RedisServer

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yaml"
ALERT_TESTS = DEPLOY / "prometheus" / "alerts_test.yaml"
EXAMPLE_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
DASHBOARD = DEPLOY / "grafana" / "modelyard.json"
REDIS_DB = 6

# Grafana's variables, as a query against the test Prometheus takes them.
VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "5m",
    "${job}": ".*",
    "$job": ".*",
}
ALERT_NAMES = {
    "ModelyardHighErrorRate",
    "ModelyardHighLatencyP95",
    "ModelyardBudgetAbove80Percent",
    "ModelyardBreakerOpen",
    "ModelyardLedgerBacklogGrowing",
    "ModelyardLedgerBacklogNearCapacity",
    "ModelyardEngineQueueFull",
}
# What an operator looks for on the dashboard: a panel whose title holds each of these.
PANELS = (
    "Requests/s by deployment and status class",
    "Error rate",
    "p50 / p95 / p99",
    "Time to first token",
    "Time per output token",
    "Tokens/s by type",
    "Cost per project",
    "Budget used",
    "Limiter refusals",
    "Local engine queue",
    "Local engine busy",
    "Circuit breakers",
    "Fallback attempts",
    "Writer backlog",
    "Ledger write latency",
    "Config version per replica",
)


@dataclass(frozen=True)
class Loaded:
    gateway: GatewayProcess
    prometheus: PrometheusServer


@pytest.fixture(scope="module")
def loaded(
    tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer, prometheus_binary: Path
) -> Iterator[Loaded]:
    with world.scripted_upstream() as upstream:
        gateway = world.start_gateway(
            tmp_path_factory.mktemp("assets"),
            upstream.base_url,
            redis_server.url(REDIS_DB),
            local=True,
        )
        try:
            prometheus = world.prometheus_for(prometheus_binary, gateway, rules=(ALERTS,))
            try:
                # A first scrape before the load, so that rates see the counters grow.
                prometheus.wait_for_scrape()
                keys = world.make_projects(gateway)
                statuses = world.run_load(gateway, keys, local=True)
                world.wait_ledger(gateway, sum(statuses.values()) - statuses[429])
                # Two scrapes after the load: every new series has two samples to rate.
                prometheus.wait_for_scrape()
                prometheus.wait_for_scrape()
                yield Loaded(gateway, prometheus)
            finally:
                prometheus.stop()
        finally:
            gateway.stop()


def dashboard() -> dict[str, Any]:
    found: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return found


def panels() -> list[dict[str, Any]]:
    return [panel for panel in dashboard()["panels"] if panel["type"] != "row"]


def queries() -> list[tuple[str, str]]:
    """(panel title, PromQL with Grafana's variables substituted) for every panel target."""
    found = []
    for panel in panels():
        for target in panel["targets"]:
            promql = target["expr"]
            for variable, value in VARIABLES.items():
                promql = promql.replace(variable, value)
            assert "$" not in promql, f"{panel['title']}: a variable left in {promql}"
            found.append((panel["title"], promql))
    return found


def test_alert_rules_pass_promtool_check_and_their_unit_tests(promtool_binary: Path) -> None:
    checked = subprocess.run(
        [str(promtool_binary), "check", "rules", str(ALERTS)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(ALERT_NAMES)} rules found" in checked.stdout, checked.stdout
    tested = subprocess.run(
        [str(promtool_binary), "test", "rules", ALERT_TESTS.name],
        capture_output=True,
        text=True,
        cwd=ALERT_TESTS.parent,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_alert_rules_cover_what_operators_are_paged_for() -> None:
    rules = [
        rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]
    ]
    assert {rule["alert"] for rule in rules} == ALERT_NAMES
    for rule in rules:
        assert rule["for"], rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]


def test_the_example_configuration_passes_promtool_check_config(
    promtool_binary: Path, tmp_path: Path
) -> None:
    config = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    (job,) = config["scrape_configs"]
    # The gateway refuses an anonymous scrape; the token is read from a file.
    authorization = job["authorization"]
    assert authorization["type"] == "Bearer"
    assert config["rule_files"] == [ALERTS.name]
    # promtool checks that the token file exists: give it one, beside copies of both files.
    token = tmp_path / "scrape-token"
    token.write_text("token\n")
    authorization["credentials_file"] = str(token)
    (tmp_path / ALERTS.name).write_text(ALERTS.read_text())
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    checked = subprocess.run(
        [str(promtool_binary), "check", "config", "prometheus.yml"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 7 rules found" in checked.stdout, checked.stdout


def test_the_dashboard_is_a_grafana_dashboard_with_a_datasource_variable() -> None:
    board = dashboard()
    assert board["schemaVersion"] >= 39
    assert board["uid"] and board["title"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    titles = [panel["title"] for panel in panels()]
    for wanted in PANELS:
        assert any(wanted in title for title in titles), f"no panel for {wanted}"
    for panel in panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]


def test_every_dashboard_query_parses_and_returns_data_from_a_loaded_gateway(
    loaded: Loaded,
) -> None:
    empty = []
    for title, promql in queries():
        answer = loaded.prometheus.answer(promql)
        assert answer["status"] == "success", f"{title}: {promql}: {answer}"
        assert answer["data"]["resultType"] == "vector", f"{title}: {promql}"
        if not answer["data"]["result"]:
            empty.append((title, promql))
    assert empty == []


def test_every_alert_rule_evaluates_against_the_loaded_gateways_metrics(loaded: Loaded) -> None:
    (group,) = loaded.prometheus.rules()
    rules = {rule["name"]: rule for rule in group["rules"]}
    assert set(rules) == ALERT_NAMES
    for name, rule in rules.items():
        assert rule["health"] == "ok", f"{name}: {rule.get('lastError')}"
        assert loaded.prometheus.answer(rule["query"])["status"] == "success", name
    # Only the error rate may be pending: the load has upstream 500s. Budgets, breakers, the
    # ledger and the engine queue are nowhere near their thresholds.
    alerting = {alert["labels"]["alertname"] for alert in loaded.prometheus.alerts()}
    assert alerting <= {"ModelyardHighErrorRate"}, alerting


def test_the_alert_expressions_select_series_the_gateway_exposes(loaded: Loaded) -> None:
    """Each rule's metric names exist in the scraped data: a renamed metric would leave its
    alert silently empty for ever."""
    names: set[str] = set()
    for group in yaml.safe_load(ALERTS.read_text())["groups"]:
        for rule in group["rules"]:
            # Label names in by (...) clauses look like metric names; leave them out.
            expr = re.sub(r"\b(by|without)\s*\([^)]*\)", "", rule["expr"])
            names |= set(re.findall(r"\b(?:modelyard|gen_ai)_[a-z_]+\b", expr))
    assert names, "no metric named in the rules"
    for name in sorted(names):
        found = loaded.prometheus.query(f"count({name})")
        assert found, f"{name} has no series"
