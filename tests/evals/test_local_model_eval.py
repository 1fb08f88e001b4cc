"""The bundled SmolLM2 evaluated on JSON extraction, on two deployments of the same weights:
one decoding under the gateway's JSON-schema grammar, one writing freely (the example catalog
`docs/examples/eval-catalog.yaml`). The run must show the difference in JSON validity, with
intervals that tell the two apart."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelyard.evals.bundled import bundled_suite
from modelyard.evals.suite import load_suite
from tests.support.gateway import GatewayProcess

ROOT = Path(__file__).resolve().parents[2]
CASES = 12


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    catalog = ROOT / "docs" / "examples" / "eval-catalog.yaml"
    process = GatewayProcess(
        tmp_path_factory.mktemp("local-eval"), args=("--catalog", str(catalog))
    ).start(timeout=120)
    try:
        yield process
    finally:
        process.stop()


def validity_suite(path: Path) -> Path:
    """The first cases of the bundled extraction suite, each scored on JSON validity alone (its
    own schema), greedy and short."""
    cases = []
    for case in load_suite(bundled_suite("extraction")).cases[:CASES]:
        assert case.response_format is not None
        schema = case.response_format["json_schema"]["schema"]
        raw = case.model_dump(mode="json", exclude_none=True)
        raw |= {
            "tags": ["json-validity"],
            "temperature": 0,
            "max_tokens": 64,
            "expect": {"scorer": "json_schema", "value": schema},
        }
        cases.append(raw)
    path.write_text(yaml.safe_dump({"cases": cases}, sort_keys=False))
    return path


def test_grammar_constrained_decoding_shows_its_json_validity_gain_with_intervals(
    gateway: GatewayProcess, tmp_path: Path
) -> None:
    suite = validity_suite(tmp_path / "validity.yaml")
    exported = tmp_path / "run.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    env |= {"MODELYARD_URL": gateway.base_url, "MODELYARD_API_KEY": str(gateway.admin_key)}
    done = subprocess.run(
        [
            sys.executable, "-m", "modelyard", "eval", "run", str(suite),
            "--models", "smollm2-local,smollm2-free", "--concurrency", "2",
            "--json", str(exported),
        ],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr + done.stdout
    report: dict[str, Any] = json.loads(exported.read_text())
    quality = {s["model"]: s["quality"] for s in report["summaries"] if s["tag"] == "json-validity"}
    constrained, free = quality["smollm2-local"], quality["smollm2-free"]
    assert constrained["n"] == free["n"] == CASES
    assert constrained["method"] == "wilson"  # json_schema is a pass/fail scorer
    # Under the grammar every answer is valid JSON of its schema; written freely, SmolLM2's are
    # not, and the intervals do not overlap.
    assert constrained["mean"] == 1.0, report["results"]
    assert constrained["low"] > free["high"], quality
    (comparison,) = [c for c in report["comparisons"] if c["tag"] == "json-validity"]
    assert comparison["a"] == "smollm2-local" and comparison["distinguishable"], comparison
    # Every answer came from the deployment it was asked of.
    deployments = {(r["model"], r["deployment"]) for r in report["results"]}
    assert deployments == {("smollm2-local", "smollm2-local"), ("smollm2-free", "smollm2-free")}
