"""Starting and stopping what is measured, each as a process of its own on 127.0.0.1.

Owns the five servers and how to talk to them: the fake upstream (`direct`), the bare uvicorn
app (`bare`), Modelyard in front of the upstream (`modelyard`), and two peers in front of it,
LiteLLM's proxy (`litellm`) and Portkey's Node gateway (`portkey`). Every `Server` knows its
port, the headers its requests carry (a peer's routing and keys included) and its process, and
is stopped by the `ExitStack` that started it. Modelyard runs with authentication, rate
limits, budgets, a concurrency cap and the usage ledger all on, with limits far above the run's.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from bench.overhead import portkey_gateway
from bench.overhead.litellm_venv import MASTER_KEY, write_config
from tests.remote.fixtures import remote_catalog
from tests.support.gateway import GatewayProcess
from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
LABELS = {
    "direct": "upstream (direct)",
    "bare": "bare uvicorn app",
    "modelyard": "Modelyard",
    "litellm": "LiteLLM proxy",
    "portkey": "Portkey gateway",
}
PROXIES = ("modelyard", "litellm", "portkey")


@dataclass
class Server:
    name: str
    port: int
    pid: int
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return LABELS[self.name]

    @property
    def proxy(self) -> bool:
        """Whether it calls the upstream (whose CPU is then read too)."""
        return self.name in PROXIES


def start_upstream(stack: contextlib.ExitStack, chunks: int) -> Server:
    command = [sys.executable, "-m", "bench.overhead.upstream", "--chunks", str(chunks)]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    stack.callback(terminate, process)
    assert process.stdout is not None
    port = int(process.stdout.readline())
    return Server("direct", port, process.pid)


def start_bare(stack: contextlib.ExitStack, chunks: int, work: Path) -> Server:
    port = free_port()
    command = [
        sys.executable, "-m", "bench.overhead.bare_app",
        "--port", str(port), "--chunks", str(chunks),
    ]  # fmt: skip
    log = (work / "bare.log").open("ab")
    process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    stack.callback(terminate, process)
    _wait_listening(port, process, work / "bare.log", 30)
    return Server("bare", port, process.pid)


def start_modelyard(
    stack: contextlib.ExitStack,
    upstream: Server,
    work: Path,
    *,
    accounting: bool = True,
    env: dict[str, str] | None = None,
) -> Server:
    """Modelyard in front of `upstream`; with `accounting`, its key has every limit on (see
    `project_key`), without it, the usage ledger, budgets and rate limits are off."""
    work.mkdir(parents=True, exist_ok=True)
    catalog = remote_catalog(work / "catalog.yaml", f"http://127.0.0.1:{upstream.port}/v1")
    gateway = GatewayProcess(
        work / "modelyard",
        env={
            "ACME_KEY": "sk-bench",
            "MODELYARD_LOG_LEVEL": "warning",
            "MODELYARD_ACCOUNTING": str(accounting).lower(),
            **(env or {}),
        },
        args=("--catalog", str(catalog)),
    )
    stack.callback(gateway.stop)
    gateway.start()
    assert gateway.process is not None
    key = project_key(gateway, limited=accounting)
    return Server(
        "modelyard", gateway.port, gateway.process.pid, {"authorization": f"Bearer {key}"}
    )


def project_key(gateway: GatewayProcess, *, limited: bool) -> str:
    """A key of a new project; `limited`: with a day, month and total budget, requests and
    tokens per minute and a concurrency cap on the key and its project, all far above what a
    run uses, so every request reserves, admits, enters, records, settles and leaves."""
    admin = {"Authorization": f"Bearer {gateway.admin_key}"}
    url = gateway.base_url
    httpx.post(f"{url}/admin/projects", json={"id": "bench"}, headers=admin).raise_for_status()
    created = httpx.post(f"{url}/admin/projects/bench/keys", json={"name": "b"}, headers=admin)
    created.raise_for_status()
    key, key_id = created.json()["key"], created.json()["id"]
    if not limited:
        return str(key)
    limits = {
        "budgets_usd": {"day": "100000", "month": "1000000", "total": "10000000"},
        "requests_per_minute": 10_000_000,
        "tokens_per_minute": 1_000_000_000,
        "max_concurrent": 10_000,
    }
    project_limits = {k: v for k, v in limits.items() if k != "max_concurrent"}
    httpx.put(
        f"{url}/admin/projects/bench/limits", json=project_limits, headers=admin
    ).raise_for_status()
    httpx.put(
        f"{url}/admin/projects/bench/keys/{key_id}/limits", json=limits, headers=admin
    ).raise_for_status()
    return str(key)


def start_litellm(
    stack: contextlib.ExitStack, executable: Path, upstream: Server, work: Path
) -> Server:
    port = free_port()
    config = write_config(work / "litellm.yaml", f"http://127.0.0.1:{upstream.port}/v1")
    env = {key: value for key, value in os.environ.items() if not key.startswith("MODELYARD_")}
    # No network here: the bundled model cost map, no telemetry, quiet logs.
    env.update(LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_LOG="ERROR", LITELLM_TELEMETRY="False")
    env.pop("DATABASE_URL", None)
    command = [
        str(executable), "--config", str(config), "--host", "127.0.0.1",
        "--port", str(port), "--num_workers", "1",
    ]  # fmt: skip
    log_path = work / "litellm.log"
    process = subprocess.Popen(
        command, cwd=work, env=env, stdout=log_path.open("ab"), stderr=subprocess.STDOUT
    )
    stack.callback(terminate, process)
    _wait_healthy(f"http://127.0.0.1:{port}/health/liveliness", process, log_path, 180)
    return Server("litellm", port, process.pid, {"authorization": f"Bearer {MASTER_KEY}"})


def start_portkey(stack: contextlib.ExitStack, entry: Path, upstream: Server, work: Path) -> Server:
    """Portkey's gateway (`entry`, its start script) under `node`; every request names the
    upstream in its headers (see `portkey_gateway.routing_headers`)."""
    port = free_port()
    preload = portkey_gateway.write_preload(work / "portkey-loopback.cjs")
    command = portkey_gateway.command(entry, port, preload)
    # The upstream is on loopback: no proxy the gateway would read from its environment.
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("MODELYARD_") and key.lower() not in ("http_proxy", "https_proxy")
    }
    log_path = work / "portkey.log"
    process = subprocess.Popen(
        command, cwd=work, env=env, stdout=log_path.open("ab"), stderr=subprocess.STDOUT
    )
    stack.callback(terminate, process)
    _wait_healthy(f"http://127.0.0.1:{port}/", process, log_path, 60)
    headers = portkey_gateway.routing_headers(f"http://127.0.0.1:{upstream.port}/v1")
    return Server("portkey", port, process.pid, headers)


def _wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    """Until `url` answers a GET with a success; raises RuntimeError if the process exits or
    the time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode}: {_tail(log)}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=2).is_success:
                return
        time.sleep(0.5)
    raise RuntimeError(f"not ready after {timeout:.0f} s: {_tail(log)}")


def _wait_listening(port: int, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode}: {_tail(log)}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"not listening after {timeout:.0f} s: {_tail(log)}")


def _tail(log: Path) -> str:
    return " | ".join(log.read_text(errors="replace").splitlines()[-5:]) if log.exists() else ""


def terminate(process: subprocess.Popen[bytes] | subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
