"""Console pages' server time with 100 models and a million usage records.

Owns one benchmark (issue 18's target: every page under 100 ms of server time). It builds a data
directory with a catalog of 100 models (one OpenAI-compatible deployment each, never called),
50 projects, a route, and `--records` usage records written through `LedgerStore.write` (the
ledger writer's path, so the daily rollup is filled as in production), starts a real
`modelyard serve` on it, signs in with the admin key (the owner: every project, every page at its
largest) and asks each page `--repeats` times. It reports the server's own time per page (the
`Server-Timing` header the console sets) and the wall time seen by the client over loopback,
median and p95.

Run: `.venv/bin/python -m bench.console [--records 1000000] [--repeats 30]`
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml
from bench.usage_report import BATCH, records
from tests.support.gateway import GatewayProcess

from modelyard.db.engine import open_database
from modelyard.ledger.store import LedgerStore

MODELS = 100
PROJECTS = 50
TARGET_MS = 100.0
SERVER_TIMING = re.compile(r"app;dur=([0-9.]+)")
CSRF = re.compile(r'"X-CSRF-Token": "([^"]+)"')


def catalog(path: Path) -> Path:
    capabilities = [["chat", "streaming", "tools", "json_schema"], ["chat", "streaming"]]
    models, deployments = [], []
    for n in range(MODELS):
        model = f"bench-model-{n:03d}"
        models.append(
            {
                "id": model,
                "publisher": f"Publisher {n % 7}",
                "license": "apache-2.0" if n % 3 else "proprietary",
                "context_window": 8192 * (1 + n % 16),
                "max_output_tokens": 4096,
                "languages": ["en", "fr", "de"][: 1 + n % 3],
                "capabilities": capabilities[n % 2],
            }
        )
        deployments.append(
            {
                "id": f"{model}-eu",
                "model": model,
                "provider": "openai_compat",
                "region": ["eu-west", "us-east", "ap-south"][n % 3],
                "price": {"input_per_1m": f"{0.1 + n / 100:.2f}", "output_per_1m": "2.00"},
                "data_policy": {"retention_days": 0, "summary": "Nothing is kept."},
                "upstream": {"base_url": "http://127.0.0.1:9/v1", "model": model},
            }
        )
    path.write_text(yaml.safe_dump({"models": models, "deployments": deployments}))
    return path


def fill_ledger(data_dir: Path, count: int) -> float:
    """Write `count` usage records as the ledger writer would; returns the seconds it took."""
    started = time.perf_counter()
    engine = open_database(f"sqlite:///{data_dir / 'modelyard.db'}")
    store = LedgerStore(engine)
    made = records(count)
    for start in range(0, len(made), BATCH):
        store.write(made[start : start + BATCH])
    engine.dispose()
    return time.perf_counter() - started


def signed_in(gateway: GatewayProcess) -> tuple[httpx.Client, str]:
    client = httpx.Client(base_url=gateway.base_url, timeout=60)
    form = client.get("/console/sign-in").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form)
    assert token is not None
    signed = client.post(
        "/console/sign-in",
        data={"api_key": gateway.admin_key or "", "csrf_token": token.group(1), "next": "/"},
    )
    assert signed.status_code == 303, signed.text
    home = client.get("/console/")
    csrf = CSRF.search(home.text)
    assert csrf is not None
    return client, csrf.group(1)


def pages() -> list[tuple[str, str]]:
    """(name, path): every page, each at its largest for an owner of 50 projects."""
    since, until = "2026-09-01", "2026-11-29"
    usage = f"/console/usage?since={since}&until={until}&group_by="
    return [
        ("overview", "/console/"),
        ("catalog (100 models)", "/console/catalog"),
        ("catalog, filtered", "/console/catalog?capability=tools&q=model-0"),
        ("compare 4", "/console/catalog/compare?" + "&".join(
            f"model=bench-model-00{n}" for n in range(4)
        )),
        ("playground", "/console/playground"),
        ("projects (50)", "/console/projects"),
        ("project detail", "/console/projects/p07"),
        ("limits", "/console/limits?project=p07"),
        ("usage 90 days by model", usage + "model"),
        ("usage 90 days by key", usage + "key"),
        ("usage 90 days by project", usage + "project"),
        ("usage CSV", f"/console/usage.csv?since={since}&until={until}&group_by=model"),
        ("audit log", "/console/audit"),
        ("routes", "/console/routes"),
        ("evaluations", "/console/evals"),
    ]  # fmt: skip


def measure(client: httpx.Client, path: str, repeats: int) -> dict[str, Any]:
    server, wall = [], []
    status = 0
    for _ in range(repeats):
        started = time.perf_counter()
        answer = client.get(path)
        wall.append((time.perf_counter() - started) * 1000)
        status = answer.status_code
        timing = SERVER_TIMING.search(answer.headers.get("server-timing", ""))
        if timing:
            server.append(float(timing.group(1)))
    return {
        "status": status,
        "server_p50": statistics.median(server) if server else float("nan"),
        "server_p95": _p95(server),
        "wall_p50": statistics.median(wall),
        "wall_p95": _p95(wall),
        "bytes": len(answer.content),
    }


def _p95(values: list[float]) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="console-bench-") as tmp:
        root = Path(tmp)
        data_dir = root / "data"
        data_dir.mkdir()
        seconds = fill_ledger(data_dir, args.records)
        print(f"{args.records:,} usage records written in {seconds:.0f} s")
        gateway = GatewayProcess(
            data_dir, env={"MODELYARD_CATALOG": str(catalog(root / "catalog.yaml"))}
        ).start()
        try:
            for n in range(PROJECTS):
                gateway.admin("POST", "/admin/projects", {"id": f"p{n:02d}"})
            client, _ = signed_in(gateway)
            print(f"{'page':28} {'status':>6} {'server p50':>11} {'p95':>8} "
                  f"{'wall p50':>9} {'p95':>8} {'KiB':>6}")  # fmt: skip
            slowest = 0.0
            for name, path in pages():
                client.get(path)  # warm: templates compiled, caches filled
                row = measure(client, path, args.repeats)
                if row["status"] == 200:
                    slowest = max(slowest, row["server_p95"])
                print(
                    f"{name:28} {row['status']:>6} {row['server_p50']:>9.1f}ms "
                    f"{row['server_p95']:>6.1f}ms {row['wall_p50']:>7.1f}ms "
                    f"{row['wall_p95']:>6.1f}ms {row['bytes'] / 1024:>6.0f}"
                )
            verdict = "met" if slowest < TARGET_MS else "NOT met"
            print(f"slowest page p95 server time {slowest:.1f} ms: target < {TARGET_MS:.0f} ms "
                  f"{verdict}")  # fmt: skip
        finally:
            gateway.stop()


if __name__ == "__main__":
    main()
