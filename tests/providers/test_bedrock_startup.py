"""A Bedrock deployment whose AWS credentials cannot be found stops `modelyard serve` before it
serves, with a message that names the deployment and the reference, never a secret."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.providers.bedrock_fixtures import aws_environment, bedrock_catalog
from tests.support.gateway import GatewayProcess

NOT_A_KEY = "not-a-key-pair-canary-5e2a"


@pytest.mark.parametrize(
    ("deployment", "env", "said"),
    [
        ("claude-b-eu", {}, "credential env:BEDROCK_KEYS: the variable is not set"),
        (
            "claude-b-eu",
            {"BEDROCK_KEYS": NOT_A_KEY},
            "credential env:BEDROCK_KEYS is not ACCESS_KEY_ID:SECRET_ACCESS_KEY",
        ),
        ("nova-b-eu", {}, "no AWS credentials in the standard chain"),
    ],
    ids=["reference-unset", "reference-malformed", "no-chain-credentials"],
)
def test_missing_aws_credentials_stop_start_up_naming_the_deployment(
    tmp_path: Path, deployment: str, env: dict[str, str], said: str
) -> None:
    catalog = bedrock_catalog(tmp_path / "catalog.yaml", "http://127.0.0.1:9")
    document = yaml.safe_load(catalog.read_text())
    document["deployments"] = [d for d in document["deployments"] if d["id"] == deployment]
    document["routes"] = []
    catalog.write_text(yaml.safe_dump(document))
    environment = aws_environment(tmp_path)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        environment[name] = ""  # the chain finds nothing
    gateway = GatewayProcess(
        tmp_path / "data", env={**environment, **env}, args=("--catalog", str(catalog))
    )
    with pytest.raises(RuntimeError, match="gateway exited"):
        gateway.start(timeout=30)
    log = gateway.log()
    assert f"'{deployment}'" in log
    assert said in log
    assert NOT_A_KEY not in log
    # One line that says what to fix, before serving: no traceback.
    assert gateway.process is not None and gateway.process.returncode == 2
    assert "Traceback" not in log
