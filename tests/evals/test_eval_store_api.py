"""Evaluation runs and feedback through a real gateway, on SQLite and on PostgreSQL: who may make,
feed and read a run; results stored once, outputs kept only where the project retains content;
settling cost and tokens from the ledger; feedback on served requests and its place in the usage
report beside cost."""

from __future__ import annotations

import hashlib
import itertools
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

import httpx
import pytest

from modelyard.evals.outcome import CaseResult
from modelyard.testing.fake_upstream import FakeUpstream
from tests.remote.fixtures import remote_catalog
from tests.support.gateway import GatewayProcess
from tests.support.services import PostgresServer

SERIAL = itertools.count()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def gateway(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    upstream_server: FakeUpstream,
) -> Iterator[GatewayProcess]:
    directory = tmp_path_factory.mktemp(f"evals-{request.param}")
    env = {"ACME_KEY": "sk-x"}
    if request.param == "postgresql":
        server: PostgresServer = request.getfixturevalue("postgres_server")
        env["MODELYARD_DATABASE_URL"] = server.create_database(f"evals_{uuid.uuid4().hex[:12]}")
    catalog = remote_catalog(directory / "catalog.yaml", upstream_server.base_url)
    process = GatewayProcess(directory / "data", env=env, args=("--catalog", str(catalog)))
    process.start()
    yield process
    process.stop()


class Caller:
    """httpx with one credential (a project key, or the admin key) against the gateway."""

    def __init__(self, gateway: GatewayProcess, key: str | None) -> None:
        self.gateway = gateway
        self.key = key or gateway.admin_key

    def call(self, method: str, path: str, body: Any = None) -> httpx.Response:
        return httpx.request(
            method,
            self.gateway.base_url + path,
            json=body,
            headers={"authorization": f"Bearer {self.key}"},
            timeout=30,
        )

    def chat(self, model: str = "acme-large") -> str:
        """Serve one request; its request id."""
        body = {"model": model, "messages": [{"role": "user", "content": "Hi"}]}
        answer = self.call("POST", "/v1/chat/completions", body)
        assert answer.status_code == 200, answer.text
        return answer.headers["x-request-id"]


def project(gateway: GatewayProcess, **settings: Any) -> str:
    name = f"ev{next(SERIAL)}-{uuid.uuid4().hex[:6]}"
    made = Caller(gateway, None).call("POST", "/admin/projects", {"id": name, **settings})
    assert made.status_code == 201, made.text
    return name


def key(gateway: GatewayProcess, project_id: str, role: str = "developer") -> Caller:
    minted = Caller(gateway, None).call(
        "POST", f"/admin/projects/{project_id}/keys", {"name": f"k{next(SERIAL)}", "role": role}
    )
    assert minted.status_code == 201, minted.text
    return Caller(gateway, minted.json()["key"])


def wait_requests(gateway: GatewayProcess, project_id: str, count: int) -> None:
    """Until the ledger holds `count` requests of the project (it is written after the answer)."""
    path = f"/admin/usage?group_by=project_id&project={project_id}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        rows = Caller(gateway, None).call("GET", path).json()["data"]
        if sum(row["requests"] for row in rows) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"the ledger never held {count} requests of {project_id}")


def result(run_id: str, case_id: str, **fields: Any) -> dict[str, Any]:
    output = fields.pop("output", "The total is 42.5")
    made = CaseResult(
        run_id=run_id,
        model=fields.pop("model", "acme-large"),
        case_id=case_id,
        repeat=fields.pop("repeat", 0),
        tags=("extraction",),
        deployment="acme-large-eu",
        score=fields.pop("score", 1.0),
        passed=fields.pop("passed", True),
        binary=True,
        latency_ms=120.0,
        ttft_ms=None,
        prompt_tokens=fields.pop("prompt_tokens", 0),
        completion_tokens=0,
        cost_micros=fields.pop("cost_micros", 1),
        request_id=fields.pop("request_id", None),
        output=output,
        output_sha256=hashlib.sha256(output.encode()).hexdigest(),
        **fields,
    )
    shaped = asdict(made)
    shaped["tags"] = list(made.tags)
    return shaped


RUN = {"suites": ["extraction"], "models": ["acme-large", "acme-small"], "repeats": 2}
RUN_FIELDS = {
    "id",
    "project_id",
    "created_at",
    "created_by",
    "suites",
    "models",
    "repeats",
    "status",
    "params",
}


def test_a_run_is_made_audited_resumed_and_hidden_from_other_projects(
    gateway: GatewayProcess,
) -> None:
    home, other = project(gateway), project(gateway)
    developer, viewer, stranger = (
        key(gateway, home),
        key(gateway, home, "viewer"),
        key(gateway, other),
    )
    made = developer.call("POST", "/admin/evals", {**RUN, "params": {"temperature": 0}})
    assert made.status_code == 201, made.text
    run = made.json()
    assert set(run) == RUN_FIELDS
    assert (run["project_id"], run["status"], run["repeats"]) == (home, "running", 2)
    assert run["models"] == ["acme-large", "acme-small"] and run["params"] == {"temperature": 0}
    run_id = run["id"]

    again = developer.call("POST", "/admin/evals", {**RUN, "id": run_id})
    assert (again.status_code, again.json()) == (200, run)
    stopped = developer.call("PATCH", f"/admin/evals/{run_id}", {"status": "interrupted"})
    assert stopped.json()["status"] == "interrupted"
    resumed = developer.call("POST", "/admin/evals", {**RUN, "id": run_id})
    assert (resumed.status_code, resumed.json()["status"]) == (200, "running")

    # Reading needs only the project; making a run needs the use of its models.
    assert viewer.call("GET", f"/admin/evals/{run_id}").status_code == 200
    refused = viewer.call("POST", "/admin/evals", RUN)
    assert refused.status_code == 403
    assert "'models.use'" in refused.json()["error"]["message"]
    assert viewer.call("PATCH", f"/admin/evals/{run_id}", {"status": "finished"}).status_code == 403

    # Another project's run does not exist for its keys, in every route, and is not listed.
    for method, path, body in (
        ("GET", f"/admin/evals/{run_id}", None),
        ("GET", f"/admin/evals/{run_id}/results", None),
        ("POST", f"/admin/evals/{run_id}/results", {"results": []}),
        ("POST", f"/admin/evals/{run_id}/settle", None),
        ("PATCH", f"/admin/evals/{run_id}", {"status": "finished"}),
    ):
        hidden = stranger.call(method, path, body)
        assert hidden.status_code == 404, (path, hidden.text)
        assert home not in hidden.text
    assert stranger.call("POST", "/admin/evals", {**RUN, "id": run_id}).status_code == 409
    assert run_id not in stranger.call("GET", "/admin/evals").text
    assert [r["id"] for r in developer.call("GET", "/admin/evals").json()["data"]] == [run_id]
    assert stranger.call("GET", f"/admin/evals?project={home}").status_code == 404

    events = Caller(gateway, None).call("GET", f"/admin/audit?project={home}").json()["data"]
    (created,) = [e for e in events if e["object"] == f"eval_run:{run_id}"]
    assert created["action"] == "evals.create" and created["outcome"] == "succeeded"
    assert "models acme-large, acme-small" in created["reason"]


@pytest.mark.parametrize("retention_days", [None, 7])
def test_results_are_stored_once_with_the_output_only_where_content_is_kept(
    gateway: GatewayProcess, retention_days: int | None
) -> None:
    home = project(gateway, content_retention_days=retention_days)
    developer = key(gateway, home)
    run_id = developer.call("POST", "/admin/evals", RUN).json()["id"]
    results = [result(run_id, "invoice-1"), result(run_id, "invoice-1", repeat=1, score=0.0)]
    path = f"/admin/evals/{run_id}/results"
    first = developer.call("POST", path, {"results": results})
    assert (first.status_code, first.json()) == (200, {"stored": 2})
    # A resumed runner resends what it is unsure of: nothing is stored twice.
    extra = result(run_id, "invoice-2", output="other")
    assert developer.call("POST", path, {"results": [*results, extra]}).json() == {"stored": 1}

    stored = developer.call("GET", path).json()["data"]
    assert [(r["case_id"], r["repeat"], r["score"]) for r in stored] == [
        ("invoice-1", 0, 1.0),
        ("invoice-1", 1, 0.0),
        ("invoice-2", 0, 1.0),
    ]
    assert set(stored[0]) == set(results[0])
    assert stored[0]["output_sha256"] == hashlib.sha256(b"The total is 42.5").hexdigest()
    expected_output = None if retention_days is None else "The total is 42.5"
    assert [r["output"] for r in stored[:2]] == [expected_output] * 2

    wrong_run = developer.call("POST", path, {"results": [result("another-run", "x")]})
    assert wrong_run.status_code == 400
    assert wrong_run.json()["error"]["param"] == "results[0].run_id"
    bad_score = developer.call("POST", path, {"results": [result(run_id, "y", score=1.5)]})
    assert bad_score.status_code == 400


def test_settling_copies_cost_and_tokens_from_the_ledger_and_counts_the_pending(
    gateway: GatewayProcess,
) -> None:
    home, other = project(gateway), project(gateway)
    developer, stranger = key(gateway, home), key(gateway, other)
    served = [developer.chat(), developer.chat("acme-small")]
    elsewhere = stranger.chat()
    run_id = developer.call("POST", "/admin/evals", RUN).json()["id"]
    posted = [
        result(run_id, "case-a", request_id=served[0], cost_micros=1, prompt_tokens=1),
        result(run_id, "case-a", model="acme-small", request_id=served[1], cost_micros=1),
        # Never served, and served to another project: both stay pending.
        result(run_id, "case-b", request_id="0" * 24),
        result(run_id, "case-c", request_id=elsewhere),
        result(run_id, "case-d", request_id=None, error="timed out"),
    ]
    added = developer.call("POST", f"/admin/evals/{run_id}/results", {"results": posted})
    assert added.json() == {"stored": 5}
    wait_requests(gateway, home, 2)
    wait_requests(gateway, other, 1)

    settled = developer.call("POST", f"/admin/evals/{run_id}/settle")
    assert (settled.status_code, settled.json()) == (200, {"settled": 2, "pending": 2})
    assert developer.call("POST", f"/admin/evals/{run_id}/settle").json() == {
        "settled": 0,
        "pending": 2,
    }
    results = developer.call("GET", f"/admin/evals/{run_id}/results").json()["data"]
    by_request = {r["request_id"]: r for r in results}
    ledger = (
        Caller(gateway, None)
        .call("GET", f"/admin/usage?group_by=project_id&project={home}")
        .json()["data"]
    )
    # The ledger's cost of the run's requests equals the sum of its results' costs.
    assert sum(by_request[rid]["cost_micros"] for rid in served) == ledger[0]["cost_micros"] > 2
    assert by_request[served[0]]["prompt_tokens"] == 11  # the fake upstream's count, not 1
    assert by_request[served[0]]["completion_tokens"] == 5
    assert by_request[elsewhere]["cost_micros"] == by_request["0" * 24]["cost_micros"] == 1


def test_a_run_shows_its_summary_per_model_and_tag(gateway: GatewayProcess) -> None:
    developer = key(gateway, project(gateway))
    run_id = developer.call("POST", "/admin/evals", RUN).json()["id"]
    scores = [1.0, 1.0, 0.0, 1.0]
    results = [result(run_id, f"case-{i}", score=s, passed=s == 1.0) for i, s in enumerate(scores)]
    developer.call("POST", f"/admin/evals/{run_id}/results", {"results": results})
    shown = developer.call("GET", f"/admin/evals/{run_id}").json()
    assert set(shown) == RUN_FIELDS | {"summary"}
    overall = [s for s in shown["summary"] if s["tag"] == "*"]
    assert [(s["model"], s["cases"]) for s in overall] == [("acme-large", 4)]
    quality = overall[0]["quality"]
    assert (quality["mean"], quality["n"], quality["method"]) == (0.75, 4, "wilson")
    assert quality["low"] < 0.75 < quality["high"]


def test_feedback_is_kept_per_rater_scoped_to_the_project_and_reported_per_deployment(
    gateway: GatewayProcess,
) -> None:
    home, other = project(gateway), project(gateway)
    developer, colleague = key(gateway, home), key(gateway, home)
    stranger = key(gateway, other)
    rated, unrated = developer.chat("acme-large"), developer.chat("acme-small")
    wait_requests(gateway, home, 2)

    first = developer.call("POST", "/v1/feedback", {"request_id": rated, "score": 0.25})
    assert first.status_code == 201, first.text
    assert first.json()["replaced"] is False and first.json()["labels"] == []
    second = developer.call(
        "POST", "/v1/feedback", {"request_id": rated, "score": 0.75, "labels": ["terse"]}
    )
    assert (second.status_code, second.json()["replaced"]) == (201, True)
    assert second.json()["labels"] == ["terse"]
    by_colleague = colleague.call("POST", "/v1/feedback", {"request_id": rated, "score": 1})
    assert (by_colleague.status_code, by_colleague.json()["replaced"]) == (201, False)

    foreign = stranger.call("POST", "/v1/feedback", {"request_id": rated, "score": 0})
    assert foreign.status_code == 404
    assert foreign.json()["error"]["param"] == "request_id"
    unknown = developer.call("POST", "/v1/feedback", {"request_id": "f" * 24, "score": 0})
    assert unknown.status_code == 404
    for score in (1.5, -0.1):
        out_of_range = developer.call("POST", "/v1/feedback", {"request_id": rated, "score": score})
        assert out_of_range.status_code == 400
        assert out_of_range.json()["error"]["param"] == "score"
    viewer = key(gateway, home, "viewer")
    assert viewer.call("POST", "/v1/feedback", {"request_id": rated, "score": 1}).status_code == 403

    admin = Caller(gateway, None)
    report = admin.call("GET", f"/admin/usage?group_by=deployment&project={home}").json()["data"]
    by_deployment = {row["deployment"]: row for row in report}
    assert set(by_deployment) == {"acme-large-eu", "acme-small-eu"}
    large, small = by_deployment["acme-large-eu"], by_deployment["acme-small-eu"]
    # The developer's second score replaced the first: 0.75 and the colleague's 1.
    assert (large["feedback_count"], large["feedback_mean"]) == (2, 0.875)
    assert (small["feedback_count"], small["feedback_mean"]) == (0, None)
    assert unrated  # served, never rated
    by_day = admin.call(
        "GET", f"/admin/usage?group_by=day,deployment,key_id&project={home}"
    ).json()["data"]
    assert sorted((r["deployment"], r["feedback_count"]) for r in by_day) == [
        ("acme-large-eu", 2),
        ("acme-small-eu", 0),
    ]
    without = admin.call("GET", f"/admin/usage?group_by=project_id&project={home}").json()
    assert "feedback_count" not in without["data"][0]
    csv_text = admin.call(
        "GET", f"/admin/usage?group_by=deployment&project={home}&format=csv"
    ).text.splitlines()
    assert csv_text[0].endswith(",latency_ms_avg,feedback_count,feedback_mean")
    assert csv_text[1].startswith("acme-large-eu,") and csv_text[1].endswith(",2,0.875")
