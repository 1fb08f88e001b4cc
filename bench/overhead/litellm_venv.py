"""LiteLLM's proxy in a virtualenv of its own, installed from PyPI on first use.

Owns getting a runnable `litellm` command and its config: a separate venv (its pins must not
touch Modelyard's), `pip install 'litellm[proxy]'` bounded by a time limit, and a config routing
`acme-small` to the fake upstream with a master key and no database. A failure never stops the
benchmark: `LiteLLMUnavailable` carries the reason, which the report prints.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

VENV = Path(__file__).resolve().parent / ".litellm-venv"
MASTER_KEY = "sk-litellm-bench-0123456789"
INSTALL_TIMEOUT_S = 900


class LiteLLMUnavailable(Exception):
    pass


def ensure_installed(venv: Path = VENV, timeout_s: float = INSTALL_TIMEOUT_S) -> Path:
    """The `litellm` executable, installing it first if this venv has not got it."""
    executable = venv / "bin" / "litellm"
    marker = venv / ".installed"
    if executable.exists() and marker.exists():
        return executable
    venv.mkdir(parents=True, exist_ok=True)
    log = venv / "install.log"
    print(f"installing litellm[proxy] into {venv} (log: {log}) ...", flush=True)
    try:
        with log.open("w") as out:
            if not (venv / "bin" / "python").exists():
                subprocess.run(
                    [sys.executable, "-m", "venv", str(venv)],
                    stdout=out, stderr=subprocess.STDOUT, check=True, timeout=120,
                )  # fmt: skip
            subprocess.run(
                [str(venv / "bin" / "pip"), "install", "-q", "litellm[proxy]"],
                stdout=out, stderr=subprocess.STDOUT, check=True, timeout=timeout_s,
            )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise LiteLLMUnavailable(f"pip install did not finish in {timeout_s:.0f} s") from None
    except subprocess.CalledProcessError:
        lines = [line for line in log.read_text().splitlines() if "ERROR" in line]
        raise LiteLLMUnavailable(
            f"pip install failed: {lines[-1] if lines else 'see ' + str(log)}"
        ) from None
    if not executable.exists():
        raise LiteLLMUnavailable("pip install left no litellm command")
    marker.touch()
    return executable


def version(venv: Path = VENV) -> str:
    python = venv / "bin" / "python"
    result = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    return result.stdout.strip() or "unknown"


def write_config(path: Path, upstream_base_url: str) -> Path:
    config = {
        "model_list": [
            {
                "model_name": "acme-small",
                "litellm_params": {
                    "model": "openai/small-2026",
                    "api_base": upstream_base_url,
                    "api_key": "sk-bench",
                },
            }
        ],
        "general_settings": {"master_key": MASTER_KEY},
        "litellm_settings": {"drop_params": True, "telemetry": False},
    }
    path.write_text(yaml.safe_dump(config))
    return path
