"""`modelyard serve` as a newcomer runs it: first-start admin key, catalog errors, defaults."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import yaml

from tests.support.gateway import GatewayProcess

MODEL_ENTRY = {
    "id": "m1",
    "publisher": "x",
    "license": "mit",
    "context_window": 512,
    "max_output_tokens": 10,
    "languages": ["en"],
    "capabilities": ["chat"],
}


def test_first_start_prints_a_key_once_and_stores_only_its_hash(data_dir: Path) -> None:
    first = GatewayProcess(data_dir, admin_key=None).start()
    try:
        printed = [
            line.strip()
            for line in first.log().splitlines()
            if line.strip().startswith("myd-admin-")
        ]
        assert len(printed) == 1
        key = printed[0]
        models = httpx.get(
            f"{first.base_url}/v1/models", headers={"Authorization": f"Bearer {key}"}
        )
        assert models.status_code == 200
    finally:
        first.stop()
    for path in data_dir.rglob("*"):
        if path.is_file() and path.name != "gateway.log":
            assert key.encode() not in path.read_bytes(), f"{path} holds the key"
    second = GatewayProcess(data_dir, admin_key=None).start()
    try:
        assert second.log().count("myd-admin-") == 1, "the key must not be printed again"
        models = httpx.get(
            f"{second.base_url}/v1/models", headers={"Authorization": f"Bearer {key}"}
        )
        assert models.status_code == 200
        assert httpx.get(f"{second.base_url}/v1/models").status_code == 401
    finally:
        second.stop()


def test_invalid_catalog_fails_at_start_naming_file_entry_and_field(tmp_path: Path) -> None:
    catalog = tmp_path / "broken.yaml"
    catalog.write_text(yaml.safe_dump({"models": [{**MODEL_ENTRY, "context_window": "big"}]}))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "modelyard",
            "serve",
            "--catalog",
            str(catalog),
            "--data-dir",
            str(tmp_path / "d"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={"MODELYARD_ADMIN_KEY": "k", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2
    assert str(catalog) in result.stderr
    assert "models[0] 'm1': context_window:" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_a_catalog_whose_weights_are_missing_fails_clearly(tmp_path: Path) -> None:
    catalog = tmp_path / "c.yaml"
    catalog.write_text(
        yaml.safe_dump(
            {
                "models": [MODEL_ENTRY],
                "deployments": [
                    {
                        "id": "d1",
                        "model": "m1",
                        "provider": "llamacpp",
                        "region": "local",
                        "price": {"input_per_1m": 0, "output_per_1m": 0},
                        "data_policy": {"summary": "local"},
                        "weights": {"path": "missing.gguf"},
                    }
                ],
            }
        )
    )
    gateway = GatewayProcess(tmp_path / "d", args=("--catalog", str(catalog))).start(
        wait_ready=False
    )
    try:
        assert gateway.process is not None
        assert gateway.process.wait(60) != 0
        assert "missing.gguf does not exist" in gateway.log()
        assert "Traceback" not in gateway.log()
    finally:
        gateway.stop()
