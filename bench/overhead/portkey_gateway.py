"""Portkey's gateway (`@portkey-ai/gateway`, run with `node`), installed from npm on first use.

Owns getting a runnable Portkey gateway and how requests reach the fake upstream through it: a
cache directory of its own (`npm install` of one pinned version, bounded by a time limit), the
command that starts it on a given port bound to 127.0.0.1, and the headers that route a request
to an OpenAI-compatible upstream at a custom URL. A failure never stops the benchmark:
`PortkeyUnavailable` carries the reason, which the report prints.

The package pins its dependencies with caret ranges only; npm then resolves `@hono/node-server`
to a release whose `Response` keeps the upstream's immutable headers, and every stream fails
with `TypeError: immutable` (Portkey-AI/gateway issues 1389 and 1550). So the install pins
Portkey's direct dependencies (as npm `overrides`) to the versions its own package-lock.json
resolved for this release, the tree Portkey builds and tests its Docker image with.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

HOME = Path(__file__).resolve().parent / ".portkey-gateway"
PACKAGE = "@portkey-ai/gateway"
VERSION = "1.15.2"
# From package-lock.json at Portkey-AI/gateway tag v1.15.2.
LOCKED_DEPENDENCIES = {
    "@aws-crypto/sha256-js": "5.2.0",
    "@cfworker/json-schema": "4.0.3",
    "@hono/node-server": "1.13.5",
    "@hono/node-ws": "1.2.0",
    "@portkey-ai/mustache": "2.1.3",
    "@smithy/signature-v4": "2.1.1",
    "@types/mustache": "4.2.5",
    "async-retry": "1.3.3",
    "avsc": "5.7.7",
    "hono": "4.9.7",
    "ioredis": "5.8.0",
    "jose": "6.0.11",
    "patch-package": "8.0.1",
    "ws": "8.18.3",
    "zod": "3.25.76",
}
INSTALL_TIMEOUT_S = 600
UPSTREAM_KEY = "sk-bench"

# The gateway listens on every interface (it passes no host to `listen`); this preload makes a
# listen without a host bind 127.0.0.1, like every other server of the benchmark.
LOOPBACK_PRELOAD = """\
const net = require("node:net");
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (port, host, ...rest) {
  if (typeof port === "number" && typeof host !== "string") {
    return listen.call(this, port, "127.0.0.1", ...(host === undefined ? rest : [host, ...rest]));
  }
  return listen.call(this, port, host, ...rest);
};
"""


class PortkeyUnavailable(Exception):
    pass


def manifest() -> dict[str, object]:
    """The package.json of the cache directory: the pinned gateway and its locked tree."""
    return {
        "name": "modelyard-bench-portkey",
        "private": True,
        "dependencies": {PACKAGE: VERSION},
        "overrides": LOCKED_DEPENDENCIES,
    }


def entry_point(home: Path = HOME) -> Path:
    return home / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"


def ensure_installed(home: Path = HOME, timeout_s: float = INSTALL_TIMEOUT_S) -> Path:
    """The gateway's start script, installing it first if `home` has not got this pinned tree
    (a changed pin reinstalls)."""
    wanted = json.dumps(manifest(), indent=2, sort_keys=True)
    marker = home / ".installed"
    entry = entry_point(home)
    if entry.exists() and marker.exists() and marker.read_text() == wanted:
        return entry
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        raise PortkeyUnavailable(f"{' and '.join(missing)} not found on PATH")
    home.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)
    (home / "package.json").write_text(wanted + "\n")
    log = home / "install.log"
    print(f"installing {PACKAGE}@{VERSION} into {home} (log: {log}) ...", flush=True)
    # No lifecycle scripts: the package's only one is patch-package, and it ships no patches.
    command = ["npm", "install", "--omit=dev", "--no-audit", "--no-fund", "--ignore-scripts"]
    try:
        with log.open("w") as out:
            subprocess.run(
                command, cwd=home, stdout=out, stderr=subprocess.STDOUT, check=True,
                timeout=timeout_s,
            )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise PortkeyUnavailable(f"npm install did not finish in {timeout_s:.0f} s") from None
    except subprocess.CalledProcessError:
        # npm's first error lines say what failed (code, then reason); its last, where its log is.
        lines = [line for line in log.read_text().splitlines() if "npm err" in line.lower()]
        reason = " | ".join(lines[:2]) if lines else f"see {log}"
        raise PortkeyUnavailable(f"npm install failed: {reason}") from None
    if not entry.exists():
        raise PortkeyUnavailable(f"npm install left no {entry.name}")
    marker.write_text(wanted)
    return entry


def version(home: Path = HOME) -> str:
    """`<gateway version> on node <version>`, from what is installed."""
    try:
        package = json.loads((entry_point(home).parents[1] / "package.json").read_text())
        node = subprocess.run(
            ["node", "--version"], capture_output=True, text=True, timeout=30
        ).stdout.strip()
    except (OSError, ValueError, subprocess.SubprocessError):
        return "unknown"
    return f"{package.get('version', 'unknown')} on node {node or 'unknown'}"


def write_preload(path: Path) -> Path:
    path.write_text(LOOPBACK_PRELOAD)
    return path


def command(entry: Path, port: int, preload: Path) -> list[str]:
    """Starts the gateway on 127.0.0.1:`port` (with `preload` from `write_preload`) without its
    local UI and log stream (`--headless`; the request path is the same with or without them)."""
    return ["node", "--require", str(preload), str(entry), f"--port={port}", "--headless"]


def routing_headers(upstream_base_url: str) -> dict[str, str]:
    """What sends a request through the gateway to an OpenAI-compatible upstream at a custom
    URL: the provider, the upstream's base URL (a loopback host Portkey trusts by default), and
    the upstream's key, which the gateway forwards."""
    return {
        "x-portkey-provider": "openai",
        "x-portkey-custom-host": upstream_base_url,
        "authorization": f"Bearer {UPSTREAM_KEY}",
    }
