"""Run a real `modelyard serve` process on a free loopback port for tests and benchmarks."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.ports import free_port


@dataclass
class GatewayProcess:
    data_dir: Path
    admin_key: str | None = "test-admin-key-0123456789"
    env: Mapping[str, str] = field(default_factory=dict)
    args: tuple[str, ...] = ()
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    # "https" when started with --tls-cert/--tls-key; `verify` then trusts its certificate.
    scheme: str = "http"
    verify: ssl.SSLContext | bool = True

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "gateway.log"

    def start(self, wait_ready: bool = True, timeout: float = 60.0) -> GatewayProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {key: value for key, value in os.environ.items() if not key.startswith("MODELYARD_")}
        env.update(self.env)
        if self.admin_key is not None:
            env["MODELYARD_ADMIN_KEY"] = self.admin_key
        command = [
            sys.executable, "-m", "modelyard", "serve",
            "--port", str(self.port), "--data-dir", str(self.data_dir), *self.args,
        ]  # fmt: skip
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        if wait_ready:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.process.returncode}:\n{self.log()}")
            try:
                ready = httpx.get(f"{self.base_url}/readyz", timeout=1, verify=self.verify)
                if ready.status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"gateway not ready after {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.process.returncode

    def admin(self, method: str, path: str, body: object = None) -> httpx.Response:
        """An admin API call with the admin key."""
        return httpx.request(
            method,
            self.base_url + path,
            json=body,
            headers={"authorization": f"Bearer {self.admin_key}"},
            timeout=30,
            verify=self.verify,
        )

    def metric(self, name: str, **labels: str) -> float:
        """The sum of the /metrics samples (admin only) named `name` whose labels include
        `labels` (with several workers, each worker's state gauge is one sample)."""
        text = httpx.get(
            f"{self.base_url}/metrics",
            headers={"Authorization": f"Bearer {self.admin_key}"},
            verify=self.verify,
        ).text
        found = [
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name and labels.items() <= sample.labels.items()
        ]
        if not found:
            raise KeyError(f"no metric {name} with {labels} in:\n{text}")
        return sum(found)
