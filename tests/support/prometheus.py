"""A throwaway Prometheus server for tests, on a free loopback port, scraping given targets.

Like the PostgreSQL and Redis servers of `tests/support/services.py`, it lives in a temporary
directory of its own (configuration, TSDB, log) and is stopped by the tests; the machine's own
Prometheus, if any, is never used. Its configuration is generated: every target is scraped every
second with a bearer token, and rule files are evaluated every second, so a test waits seconds,
not minutes, for data and for alerts to go pending.

Queries go through Prometheus' HTTP API (`/api/v1/...`); `query` returns what the expression
evaluates to (a number for a scalar, samples for a vector) and fails on an error answer, while
`answer` returns Prometheus' whole JSON answer for a test that checks whether an expression parses.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.support.ports import free_port
from tests.support.services import ServiceUnavailable

SCRAPE_INTERVAL_S = 1
# Prometheus writes nanoseconds; Python's datetime takes microseconds at most.
_FRACTION = re.compile(r"(\.\d{6})\d+")


def prometheus_binary() -> Path:
    found = shutil.which("prometheus") or (
        "/usr/bin/prometheus" if Path("/usr/bin/prometheus").is_file() else None
    )
    if found is None:
        raise ServiceUnavailable("prometheus is not installed")
    return Path(found)


def promtool_binary() -> Path:
    found = shutil.which("promtool") or (
        "/usr/bin/promtool" if Path("/usr/bin/promtool").is_file() else None
    )
    if found is None:
        raise ServiceUnavailable("promtool (Prometheus' own checker) is not installed")
    return Path(found)


@dataclass(frozen=True)
class ScrapeTarget:
    """A host:port that serves /metrics, and the token Prometheus sends it as a bearer."""

    address: str
    token: str | None = None
    job: str = "modelyard"
    metrics_path: str = "/metrics"


@dataclass(frozen=True)
class Sample:
    """One element of an instant vector."""

    labels: dict[str, str]
    value: float


@dataclass
class PrometheusServer:
    process: subprocess.Popen[bytes]
    root: Path
    port: int

    @classmethod
    def start(
        cls,
        binary: Path,
        targets: Sequence[ScrapeTarget],
        rule_files: Sequence[Path] = (),
        timeout: float = 30.0,
    ) -> PrometheusServer:
        root = Path(tempfile.mkdtemp(prefix="modelyard-prometheus-"))
        port = free_port()
        config = root / "prometheus.yml"
        config.write_text(yaml.safe_dump(scrape_config(targets, rule_files), sort_keys=False))
        command = [
            str(binary),
            f"--config.file={config}",
            f"--storage.tsdb.path={root / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=1h",
        ]
        log = (root / "server.log").open("ab")
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=root)
        log.close()
        server = cls(process, root, port)
        try:
            server._wait_ready(timeout)
        except BaseException:
            server.stop()
            raise
        return server

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def answer(self, promql: str) -> dict[str, Any]:
        """Prometheus' whole answer to an instant query (`status` "success" or "error")."""
        response = httpx.get(f"{self.base_url}/api/v1/query", params={"query": promql}, timeout=10)
        found: dict[str, Any] = response.json()
        return found

    def query(self, promql: str) -> float | list[Sample]:
        """The value of an instant query: a number for a scalar, the samples of a vector."""
        found = self.answer(promql)
        assert found["status"] == "success", f"{promql!r}: {found}"
        data = found["data"]
        if data["resultType"] == "scalar":
            return float(data["result"][1])
        assert data["resultType"] == "vector", f"{promql!r} gave a {data['resultType']}"
        return [Sample(item["metric"], float(item["value"][1])) for item in data["result"]]

    def vector(self, promql: str, *by: str) -> dict[tuple[str, ...], float]:
        """An instant vector keyed by the values of the labels `by` (each key present once)."""
        samples = self.query(promql)
        assert isinstance(samples, list), f"{promql!r} is not a vector"
        keyed: dict[tuple[str, ...], float] = {}
        for sample in samples:
            key = tuple(sample.labels.get(label, "") for label in by)
            assert key not in keyed, f"{promql!r}: two samples for {key}"
            keyed[key] = sample.value
        return keyed

    def targets(self) -> list[dict[str, Any]]:
        found = self._api("targets")
        active: list[dict[str, Any]] = found["activeTargets"]
        return active

    def wait_for_scrape(self, timeout: float = 15.0) -> None:
        """Return once every target has been scraped successfully by a scrape that started
        after this call, so that its samples are queryable and reflect the targets as they were
        when the call was made."""
        since = time.time()
        deadline = time.monotonic() + timeout
        while True:
            targets = self.targets()
            fresh = [t for t in targets if t["health"] == "up" and _epoch(t["lastScrape"]) > since]
            if targets and len(fresh) == len(targets):
                return
            assert time.monotonic() < deadline, f"no fresh successful scrape of {targets}"
            time.sleep(0.1)

    def rules(self) -> list[dict[str, Any]]:
        """The rule groups loaded, with each rule's health and last evaluation error."""
        groups: list[dict[str, Any]] = self._api("rules")["groups"]
        return groups

    def alerts(self) -> list[dict[str, Any]]:
        """The alerts pending or firing now."""
        alerts: list[dict[str, Any]] = self._api("alerts")["alerts"]
        return alerts

    def log(self) -> str:
        path = self.root / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        try:
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(15)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(5)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def _api(self, path: str) -> dict[str, Any]:
        found = httpx.get(f"{self.base_url}/api/v1/{path}", timeout=10).json()
        assert found["status"] == "success", f"/api/v1/{path}: {found}"
        data: dict[str, Any] = found["data"]
        return data

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"prometheus exited with {self.process.returncode}:\n{self.log()}"
                )
            try:
                if httpx.get(f"{self.base_url}/-/ready", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"prometheus not ready after {timeout}s:\n{self.log()}")
            time.sleep(0.1)


def scrape_config(targets: Sequence[ScrapeTarget], rule_files: Sequence[Path]) -> dict[str, Any]:
    """A Prometheus configuration scraping `targets` and evaluating `rule_files` every second."""
    jobs: dict[str, dict[str, Any]] = {}
    for target in targets:
        job = jobs.setdefault(
            target.job + target.metrics_path + (target.token or ""),
            {
                "job_name": target.job,
                "metrics_path": target.metrics_path,
                "static_configs": [{"targets": []}],
                **(
                    {"authorization": {"type": "Bearer", "credentials": target.token}}
                    if target.token is not None
                    else {}
                ),
            },
        )
        job["static_configs"][0]["targets"].append(target.address)
    names = [job["job_name"] for job in jobs.values()]
    assert len(names) == len(set(names)), f"one job name per token and path: {names}"
    return {
        "global": {
            "scrape_interval": f"{SCRAPE_INTERVAL_S}s",
            "scrape_timeout": f"{SCRAPE_INTERVAL_S}s",
            "evaluation_interval": f"{SCRAPE_INTERVAL_S}s",
        },
        "rule_files": [str(path.resolve()) for path in rule_files],
        "scrape_configs": list(jobs.values()),
    }


def _epoch(rfc3339: str) -> float:
    return datetime.fromisoformat(_FRACTION.sub(r"\1", rfc3339.replace("Z", "+00:00"))).timestamp()
