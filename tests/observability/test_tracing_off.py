"""Tracing is off unless the standard `OTEL_*` environment turns it on, and then costs nothing:
no span leaves, no `traceparent` reaches an upstream, the SDK is never imported. A value the
SDK cannot use stops start-up with one line."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import openai
import pytest

from modelyard.observability.tracing import tracing_wanted
from modelyard.testing.fake_upstream import FakeUpstream
from tests.remote.fixtures import UPSTREAM_SECRET, remote_catalog
from tests.support.gateway import GatewayProcess
from tests.support.otlp_receiver import OtlpReceiver

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.mark.parametrize(
    ("environ", "wanted"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "x", "OTEL_TRACES_SAMPLER": "always_on"}, False),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://h:4318"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, False),
        ({"OTEL_SDK_DISABLED": "TRUE", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://h:4318"}, False),
        ({"OTEL_SDK_DISABLED": "false", "OTEL_TRACES_EXPORTER": "otlp"}, True),
    ],
)
def test_only_the_standard_environment_turns_tracing_on(
    environ: dict[str, str], wanted: bool
) -> None:
    assert tracing_wanted(environ) is wanted


@pytest.mark.parametrize(
    "otel",
    [
        pytest.param({}, id="no-otel-env"),
        pytest.param({"OTEL_SDK_DISABLED": "true"}, id="sdk-disabled"),
        pytest.param({"OTEL_TRACES_EXPORTER": "none"}, id="exporter-none"),
    ],
)
def test_an_untraced_gateway_exports_nothing_and_propagates_nothing(
    otel: dict[str, str], tmp_path: Path, receiver: OtlpReceiver, fake: FakeUpstream
) -> None:
    receiver.clear()
    fake.reset()
    env = {"ACME_KEY": UPSTREAM_SECRET, "OTEL_BSP_SCHEDULE_DELAY": "50", **otel}
    if otel:  # told where a receiver is, and still off
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.http_endpoint
    gateway = GatewayProcess(
        tmp_path / "data",
        env=env,
        args=("--catalog", str(remote_catalog(tmp_path / "catalog.yaml", fake.base_url))),
    ).start()
    try:
        client = openai.OpenAI(
            base_url=f"{gateway.base_url}/v1", api_key=gateway.admin_key, max_retries=0
        )
        raw = client.chat.completions.with_raw_response.create(
            model="acme-large",
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"traceparent": TRACEPARENT},
        )
        assert raw.headers["x-request-id"]
        time.sleep(0.5)  # ten export intervals, had there been an exporter
    finally:
        gateway.stop()
    assert receiver.exports == 0
    sent = fake.requests[-1].headers
    assert "traceparent" not in sent
    assert "tracestate" not in sent


def test_an_untraced_application_never_imports_opentelemetry(tmp_path: Path) -> None:
    program = f"""
import os, sys
for name in [name for name in os.environ if name.startswith(("MODELYARD_", "OTEL_"))]:
    del os.environ[name]
os.environ["ACME_KEY"] = "sk-x"
from pathlib import Path
from modelyard.app import create_app
from modelyard.cli import main
from modelyard.settings import Settings
from tests.remote.fixtures import remote_catalog
directory = Path({str(tmp_path)!r})
catalog = remote_catalog(directory / "catalog.yaml", "http://127.0.0.1:9/v1")
create_app(Settings(data_dir=directory / "data", catalog=catalog, admin_key="a" * 24))
print(sorted(name for name in sys.modules if name.startswith("opentelemetry")))
"""
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "OTEL_EXPORTER_OTLP_PROTOCOL"),
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER"),
        ({"OTEL_BSP_SCHEDULE_DELAY": "-5"}, "OpenTelemetry tracing is misconfigured"),
    ],
)
def test_a_bad_otel_value_stops_start_up_with_one_line(
    setting: dict[str, str], named: str, tmp_path: Path, fake: FakeUpstream
) -> None:
    env = {"ACME_KEY": UPSTREAM_SECRET, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}
    gateway = GatewayProcess(
        tmp_path / "data",
        env={**env, **setting},
        args=("--catalog", str(remote_catalog(tmp_path / "catalog.yaml", fake.base_url))),
    )
    with pytest.raises(RuntimeError, match="gateway exited"):
        gateway.start()
    log = gateway.log()
    assert named in log
    assert "Traceback" not in log
