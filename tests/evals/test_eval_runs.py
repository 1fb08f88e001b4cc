"""`modelyard eval` end to end: a real gateway in front of scripted upstreams whose accuracy per
tag and prices are known, the runner as a real process. A killed run resumes without running a
finished case twice; an eval run's ledger cost is the sum of its case costs; recommend picks the
cheapest model whose interval clears the bar (or none) and writes or applies the routes; the
estimate sends nothing."""

from __future__ import annotations

import contextlib
import math
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from modelyard.catalog.routes import RouteDefinition
from modelyard.evals.suite import load_suite
from modelyard.money import dollars
from modelyard.protocol.chat import ChatCompletionRequest, estimate_prompt_tokens
from modelyard.testing.fake_upstream import JsonReply, StreamReply, completion_body, stream_events
from tests.routing.world import Deployment, Reply, ScriptedUpstream, routing_gateway
from tests.support.gateway import GatewayProcess
from tests.support.ledger_rows import ledger_rows

CASES_PER_TAG = 30
# Cases each deployment answers right, per tag, and its price (USD per 1M input, output tokens).
ACCURACY = {
    "alpha-cheap": {"easy": 24, "hard": 15},
    "alpha-mid": {"easy": 29, "hard": 25},
    "alpha-dear": {"easy": 30, "hard": 27},
}
PRICES = {
    "alpha-cheap": ("0.1", "0.2"),
    "alpha-mid": ("1", "2"),
    "alpha-dear": ("5", "10"),
    "alpha-slow": ("1", "2"),
    "alpha-judge": ("3", "6"),
}
ANSWER_USAGE = {"prompt_tokens": 20, "completion_tokens": 2, "total_tokens": 22}
JUDGE_USAGE = {"prompt_tokens": 120, "completion_tokens": 15, "total_tokens": 135}
# The slow upstream waits this long before each of its five stream events.
SLOW_EVENT_DELAY_S = 0.03
CASE_ID = re.compile(r"\[([A-Za-z0-9._:-]+)\]")


def case_of(body: Any) -> str:
    """The case a request is for: every case's prompt starts with its id in brackets."""
    found = CASE_ID.match(str(body["messages"][-1]["content"]))
    assert found is not None, body
    return found.group(1)


def answering(right: Callable[[str], bool], delay_s: float = 0.0) -> Callable[[int, Any], Reply]:
    """An upstream script answering "right" to the cases `right` accepts, "wrong" to others."""

    def script(_: int, body: Any) -> Reply:
        text = "right" if right(case_of(body)) else "wrong"
        if body.get("stream"):
            return StreamReply(stream_events([text], usage=ANSWER_USAGE), delay_s=delay_s)
        return JsonReply(completion_body(text, usage=ANSWER_USAGE))

    return script


def right_share(deployment: str) -> Callable[[str], bool]:
    def right(case: str) -> bool:
        tag, _, number = case.rpartition("-")
        return tag in ACCURACY[deployment] and int(number) < ACCURACY[deployment][tag]

    return right


def judging(_: int, body: Any) -> Reply:
    return JsonReply(completion_body('{"score": 0.75, "reason": "fine"}', usage=JUDGE_USAGE))


class World:
    def __init__(self, gateway: GatewayProcess, upstreams: dict[str, ScriptedUpstream]) -> None:
        self.gateway = gateway
        self.upstreams = upstreams

    def requests(self) -> int:
        return sum(len(u.requests) for u in self.upstreams.values())


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    scripts = {name: answering(right_share(name)) for name in ACCURACY}
    scripts["alpha-slow"] = answering(lambda _: True, delay_s=SLOW_EVENT_DELAY_S)
    scripts["alpha-judge"] = judging
    with contextlib.ExitStack() as stack:
        upstreams = {
            name: stack.enter_context(ScriptedUpstream(name, script).running())
            for name, script in scripts.items()
        }
        deployments = [
            Deployment(name, "alpha", upstream.base_url, price=PRICES[name])
            for name, upstream in upstreams.items()
        ]
        directory = tmp_path_factory.mktemp("eval-runs")
        with routing_gateway(directory, deployments) as gateway:
            yield World(gateway, upstreams)


def write_suite(path: Path, cases: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump({"license": "CC0-1.0", "cases": cases}, sort_keys=False))
    return path


def word_case(case_id: str, tag: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": case_id,
        "tags": [tag],
        "messages": [{"role": "user", "content": f"[{case_id}] Reply with the word right."}],
        "expect": {"scorer": "exact", "value": "right"},
        **extra,
    }


def tagged_cases() -> list[dict[str, Any]]:
    return [
        word_case(f"{tag}-{number:02d}", tag)
        for tag in ("easy", "hard")
        for number in range(CASES_PER_TAG)
    ]


def eval_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "modelyard", "eval", *args]


def cli_env(gateway: GatewayProcess, key: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    return env | {"MODELYARD_URL": gateway.base_url, "MODELYARD_API_KEY": key or ""}


def cli(
    gateway: GatewayProcess, *args: str, key: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        eval_command(*args),
        env=cli_env(gateway, key or gateway.admin_key),
        capture_output=True,
        text=True,
        timeout=120,
    )


def call(gateway: GatewayProcess, key: str, method: str, path: str) -> Any:
    answer = httpx.request(
        method, gateway.base_url + path, headers={"authorization": f"Bearer {key}"}, timeout=30
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def stored(gateway: GatewayProcess, run_id: str, key: str | None = None) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = call(
        gateway, key or gateway.admin_key or "", "GET", f"/admin/evals/{run_id}/results"
    )["data"]
    return results


def project_key(gateway: GatewayProcess, project: str) -> str:
    made = gateway.admin("POST", "/admin/projects", {"id": project})
    assert made.status_code == 201, made.text
    minted = gateway.admin("POST", f"/admin/projects/{project}/keys", {"name": "evals"})
    assert minted.status_code == 201, minted.text
    key: str = minted.json()["key"]
    return key


def test_a_run_killed_mid_way_resumes_without_running_a_finished_case_twice(
    world: World, tmp_path: Path
) -> None:
    slow = world.upstreams["alpha-slow"]
    cases = [word_case(f"slow-{n:02d}", "slow") for n in range(60)]
    suite = write_suite(tmp_path / "slow.yaml", cases)
    args = (str(suite), "--models", "alpha-slow", "--concurrency", "2", "--run-id", "resume-1")
    runner = subprocess.Popen(
        eval_command("run", *args),
        env=cli_env(world.gateway, world.gateway.admin_key),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not _stored_count(world.gateway, "resume-1") >= 20:
            assert runner.poll() is None, "the runner ended before it could be killed"
            assert time.monotonic() < deadline, "no batch of results was stored"
            time.sleep(0.05)
        os.kill(runner.pid, signal.SIGKILL)
    finally:
        runner.wait(10)
    before = {r["case_id"] for r in stored(world.gateway, "resume-1")}
    assert 20 <= len(before) < len(cases), "the kill must land mid-way"
    asked_before = Counter(case_of(r.body) for r in slow.requests)

    resumed = cli(world.gateway, "run", *args)

    assert resumed.returncode == 0, resumed.stderr
    assert f"{len(before)} already stored" in resumed.stdout
    asked_after = Counter(case_of(r.body) for r in slow.requests)
    rerun = asked_after - asked_before
    # Finished cases are not asked again; every other case exactly once more.
    assert not set(rerun) & before
    assert set(rerun) == {c["id"] for c in cases} - before
    assert all(count == 1 for count in rerun.values())
    after = stored(world.gateway, "resume-1")
    assert sorted(r["case_id"] for r in after) == sorted(c["id"] for c in cases)
    assert all(r["passed"] and r["error"] is None for r in after)
    run = call(world.gateway, world.gateway.admin_key or "", "GET", "/admin/evals/resume-1")
    assert run["status"] == "finished"


def test_ctrl_c_stores_the_finished_results_and_marks_the_run_interrupted(
    world: World, tmp_path: Path
) -> None:
    slow = world.upstreams["alpha-slow"]
    cases = [word_case(f"stop-{n:02d}", "stop") for n in range(60)]
    suite = write_suite(tmp_path / "stop.yaml", cases)
    args = (str(suite), "--models", "alpha-slow", "--concurrency", "2", "--run-id", "stop-1")
    runner = subprocess.Popen(
        eval_command("run", *args),
        env=cli_env(world.gateway, world.gateway.admin_key),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        # Between two batches: 20 results stored, ten more finished and not sent yet.
        while sum(1 for r in slow.requests if case_of(r.body).startswith("stop-")) < 32:
            assert runner.poll() is None, "the runner ended before it could be interrupted"
            assert time.monotonic() < deadline, "the run did not get going"
            time.sleep(0.02)
        runner.send_signal(signal.SIGINT)
        _, progress = runner.communicate(timeout=30)
    finally:
        if runner.poll() is None:
            runner.kill()
    asked = sum(1 for r in slow.requests if case_of(r.body).startswith("stop-"))

    assert runner.returncode == 130, progress
    results = stored(world.gateway, "stop-1")
    # All but the (at most 2) cases in flight when Ctrl-C came are stored.
    assert asked - 2 <= len(results) < len(cases)
    run = call(world.gateway, world.gateway.admin_key or "", "GET", "/admin/evals/stop-1")
    assert run["status"] == "interrupted"
    # Not a terminal: one progress line per model every 10%.
    bars = [line for line in progress.splitlines() if line.startswith("alpha-slow [")]
    assert bars[0].startswith("alpha-slow [------------------------------] 0/60")
    assert 4 <= len(bars) <= 7, progress


def _stored_count(gateway: GatewayProcess, run_id: str) -> int:
    answer = gateway.admin("GET", f"/admin/evals/{run_id}/results")
    return len(answer.json()["data"]) if answer.status_code == 200 else 0


def test_the_ledger_cost_of_an_eval_run_is_the_sum_of_its_case_and_judge_costs(
    world: World, tmp_path: Path
) -> None:
    key = project_key(world.gateway, "eval-ledger")
    judged = {
        "scorer": "judge",
        "value": "The answer is the single word 'right'.",
        "options": {"deployment": "alpha-judge"},
    }
    cases = [word_case(f"easy-{n:02d}", "easy") for n in range(6)]
    cases += [word_case(f"judged-{n}", "judged", expect=judged) for n in range(4)]
    suite = write_suite(tmp_path / "ledger.yaml", cases)

    ran = cli(
        world.gateway, "run", str(suite), "--models", "alpha-cheap,alpha-dear,nowhere",
        "--repeats", "2", "--run-id", "ledger-1", key=key,
    )  # fmt: skip

    assert ran.returncode == 0, ran.stderr
    results = stored(world.gateway, "ledger-1", key)
    assert len(results) == len(cases) * 2 * 3
    # A refused request is a result with its error, scored 0, and nothing in the ledger.
    refused = [r for r in results if r["model"] == "nowhere"]
    assert all(r["error"].startswith("404 model_not_found") for r in refused)
    assert all(r["score"] == 0 and r["cost_micros"] == 0 for r in refused)
    assert f"{len(refused)} results have no usage record yet" in ran.stdout
    answered = [r for r in results if r["model"] != "nowhere"]
    assert all(r["error"] is None for r in answered), [r["error"] for r in answered]
    judge_costs = [r["extra"].get("judge_cost_micros", 0) for r in answered]
    assert sum(1 for cost in judge_costs if cost > 0) == 4 * 2 * 2
    # Settled from the ledger: every answer's tokens and a price-dependent cost.
    assert all(r["prompt_tokens"] == ANSWER_USAGE["prompt_tokens"] for r in answered)
    costs = {r["model"]: r["cost_micros"] for r in answered}
    assert 0 < costs["alpha-cheap"] < costs["alpha-dear"]
    expected_rows = len(answered) + 4 * 2 * 2
    deadline = time.monotonic() + 10
    while len(rows := ledger_rows(world.gateway, "eval-ledger")) < expected_rows:
        assert time.monotonic() < deadline, f"{len(rows)} of {expected_rows} usage records"
        time.sleep(0.05)
    assert len(rows) == expected_rows
    ledger_total = sum(row["cost_micros"] for row in rows)
    assert ledger_total == sum(r["cost_micros"] for r in results) + sum(judge_costs)


def test_recommend_picks_the_cheapest_model_whose_interval_clears_the_bar_and_applies_routes(
    world: World, tmp_path: Path
) -> None:
    suite = write_suite(tmp_path / "tagged.yaml", tagged_cases())
    models = "alpha-dear,alpha-cheap,alpha-mid"
    ran = cli(world.gateway, "run", str(suite), "--models", models, "--run-id", "rec-1")
    assert ran.returncode == 0, ran.stderr

    strict = cli(
        world.gateway, "recommend", "rec-1", "--min-quality", "0.8",
        "--prefix", "rec-", "--write", str(tmp_path / "routes.yaml"),
    )  # fmt: skip

    assert strict.returncode == 0, strict.stderr
    lines = strict.stdout.splitlines()
    # easy: cheap's mean is 0.80 but its lower bound 0.63; mid (0.83) is cheaper than dear.
    assert any(line.startswith("easy: alpha-mid ") for line in lines), strict.stdout
    assert "excluded alpha-cheap: quality lower bound 0.63 < 0.80" in strict.stdout
    assert any(line.startswith("hard: no model meets the bar") for line in lines), strict.stdout
    written = yaml.safe_load((tmp_path / "routes.yaml").read_text())
    routes = [RouteDefinition.model_validate(entry) for entry in written["routes"]]
    assert [route.id for route in routes] == ["rec-easy"]
    assert [c.deployment for c in routes[0].candidates] == ["alpha-mid", "alpha-dear"]

    lenient = cli(world.gateway, "recommend", "rec-1", "--min-quality", "0.6")
    assert lenient.returncode == 0, lenient.stderr
    assert any(line.startswith("easy: alpha-cheap ") for line in lenient.stdout.splitlines())
    assert any(line.startswith("hard: alpha-mid ") for line in lenient.stdout.splitlines())

    applied = cli(
        world.gateway, "recommend", "rec-1", "--min-quality", "0.8", "--prefix", "rec-", "--apply"
    )
    assert applied.returncode == 0, applied.stderr
    listed = {r["id"]: r for r in world.gateway.admin("GET", "/admin/routes").json()["data"]}
    assert "rec-hard" not in listed
    candidates = [c["deployment"] for c in listed["rec-easy"]["candidates"]]
    assert candidates == ["alpha-mid", "alpha-dear"]
    events = world.gateway.admin("GET", "/admin/audit?limit=1000").json()["data"]
    assert [e["action"] for e in events if e["object"] == "route:rec-easy"] == ["routes.create"]
    served = httpx.post(
        f"{world.gateway.base_url}/v1/chat/completions",
        json={"model": "rec-easy", "messages": [{"role": "user", "content": "[easy-00] Hi"}]},
        headers={"authorization": f"Bearer {world.gateway.admin_key}"},
        timeout=30,
    )
    assert served.headers["x-modelyard-deployment"] == "alpha-mid"


def test_show_list_and_export_read_a_stored_run(world: World, tmp_path: Path) -> None:
    suite = write_suite(
        tmp_path / "small.yaml", [word_case(f"easy-{n:02d}", "easy") for n in (0, 29)]
    )
    assert (
        cli(
            world.gateway, "run", str(suite), "--models", "alpha-cheap", "--run-id", "read-1"
        ).returncode
        == 0
    )

    shown = cli(world.gateway, "show", "read-1")
    listed = cli(world.gateway, "list")
    exported = cli(
        world.gateway, "export", "read-1",
        "--json", str(tmp_path / "run.json"), "--csv", str(tmp_path / "run.csv"),
        "--report", str(tmp_path / "run.html"),
    )  # fmt: skip

    assert shown.returncode == 0, shown.stderr
    assert "run read-1 (finished)" in shown.stdout
    assert re.search(r"alpha-cheap\s+\(all\)\s+0\.500 \[", shown.stdout), shown.stdout
    assert listed.returncode == 0 and re.search(r"read-1\s+finished", listed.stdout)
    assert exported.returncode == 0, exported.stderr
    assert '"case_id": "easy-29"' in (tmp_path / "run.json").read_text()
    assert len((tmp_path / "run.csv").read_text().splitlines()) == 3
    html = (tmp_path / "run.html").read_text()
    assert "read-1" in html and "<svg" in html


def test_the_estimate_prints_a_worst_case_cost_and_sends_nothing(
    world: World, tmp_path: Path
) -> None:
    cases = tagged_cases()[:5]
    cases[0]["max_tokens"] = 50
    suite_path = write_suite(tmp_path / "estimate.yaml", cases)
    requests_before = world.requests()
    runs_before = len(world.gateway.admin("GET", "/admin/evals").json()["data"])

    estimated = cli(
        world.gateway, "run", str(suite_path), "--models", "alpha-cheap,alpha-dear,nowhere",
        "--repeats", "3", "--estimate",
    )  # fmt: skip

    assert estimated.returncode == 0, estimated.stderr
    lines = estimated.stdout.splitlines()
    for deployment in ("alpha-cheap", "alpha-dear"):
        worst = 3 * _worst_case(load_suite(suite_path), deployment)
        assert f"{deployment}: 15 requests, at most ${dollars(worst)}" in lines, lines
    assert "nowhere: 15 requests; not in the catalog" in lines
    assert world.requests() == requests_before
    assert len(world.gateway.admin("GET", "/admin/evals").json()["data"]) == runs_before


def _worst_case(suite: Any, deployment: str) -> int:
    """Every case's estimated prompt and all the output it allows (alpha's 4,000 tokens unless
    it says), at the deployment's price, each rounded up to a micro-dollar."""
    input_micros, output_micros = (int(float(p) * 1_000_000) for p in PRICES[deployment])
    total = 0
    for case in suite.cases:
        prompt = estimate_prompt_tokens(
            ChatCompletionRequest.model_validate(case.request_body(deployment))
        )
        output = case.max_tokens or 4000
        total += math.ceil((prompt * input_micros + output * output_micros) / 1_000_000)
    return total
