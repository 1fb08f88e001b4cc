"""Headless Chromium driven over the DevTools protocol, for tests that must see a page rendered:
open a URL, list every request it made, evaluate JavaScript, take a screenshot.

The browser runs with a fresh profile and everything that would call out disabled (this machine
refuses other network). A tiny synchronous protocol client over `websockets` (already installed
with uvicorn) is enough: one page, one command at a time, events kept until read.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
STARTUP_SECONDS = 60.0
COMMAND_SECONDS = 60.0


def chromium_executable() -> str | None:
    return shutil.which("chromium")


@dataclass
class Page:
    """One tab, attached through a flat DevTools session."""

    connection: ClientConnection
    session_id: str
    events: list[dict[str, Any]] = field(default_factory=list)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return _call(self.connection, self._ids, self.events, method, params, self.session_id)

    def wait_for_event(self, method: str, timeout: float = COMMAND_SECONDS) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if event.get("method") == method:
                    return event
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {method} within {timeout}s")
            self.events.append(json.loads(self.connection.recv(timeout=remaining)))

    def open(self, url: str, width: int, height: int) -> None:
        """Load `url` at this viewport size, recording its requests, until its load event."""
        self.call("Network.enable")
        self.call("Page.enable")
        self.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        self.call("Page.navigate", {"url": url})
        self.wait_for_event("Page.loadEventFired")

    def requested_urls(self) -> list[str]:
        return [
            event["params"]["request"]["url"]
            for event in self.events
            if event.get("method") == "Network.requestWillBeSent"
        ]

    def evaluate(self, expression: str) -> Any:
        reply = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in reply:
            raise AssertionError(f"the page's script failed: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    def screenshot(self, path: Path) -> Path:
        """The whole page (beyond the viewport) as a PNG file."""
        size = self.call("Page.getLayoutMetrics")["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        reply = self.call(
            "Page.captureScreenshot",
            {"format": "png", "captureBeyondViewport": True, "clip": clip},
        )
        path.write_bytes(base64.b64decode(reply["data"]))
        return path


@contextmanager
def headless_page(executable: str, profile_dir: Path) -> Iterator[Page]:
    """A blank page in a browser of its own, stopped (with its helper processes) on exit."""
    profile_dir.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [executable, *FLAGS, f"--user-data-dir={profile_dir}", "--remote-debugging-port=0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        # Its own process group: the renderer and GPU helpers stop with the browser.
        start_new_session=True,
    )
    try:
        url = _debugger_url(profile_dir, process)
        with connect(url, max_size=None, open_timeout=COMMAND_SECONDS) as connection:
            ids: Iterator[int] = itertools.count(1_000_000)
            events: list[dict[str, Any]] = []
            target = _call(connection, ids, events, "Target.createTarget", {"url": "about:blank"})
            attached = _call(
                connection,
                ids,
                events,
                "Target.attachToTarget",
                {"targetId": target["targetId"], "flatten": True},
            )
            yield Page(connection, attached["sessionId"])
    finally:
        _stop(process)


def _debugger_url(profile_dir: Path, process: subprocess.Popen[bytes]) -> str:
    """The browser's DevTools endpoint, which it writes into its profile once listening."""
    port_file = profile_dir / "DevToolsActivePort"
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"chromium exited at start with status {process.returncode}")
        lines = port_file.read_text().split("\n") if port_file.exists() else []
        if len(lines) >= 2 and lines[0].strip().isdigit() and lines[1].strip():
            return f"ws://127.0.0.1:{lines[0].strip()}{lines[1].strip()}"
        time.sleep(0.1)
    raise TimeoutError(f"chromium wrote no DevToolsActivePort within {STARTUP_SECONDS}s")


def _call(
    connection: ClientConnection,
    ids: Iterator[int],
    events: list[dict[str, Any]],
    method: str,
    params: dict[str, Any] | None,
    session_id: str | None = None,
) -> dict[str, Any]:
    """Send one command and read until its reply, keeping the events that arrive meanwhile."""
    message_id = next(ids)
    message: dict[str, Any] = {"id": message_id, "method": method, "params": params or {}}
    if session_id is not None:
        message["sessionId"] = session_id
    connection.send(json.dumps(message))
    deadline = time.monotonic() + COMMAND_SECONDS
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no reply to {method} within {COMMAND_SECONDS}s")
        reply = json.loads(connection.recv(timeout=remaining))
        if reply.get("id") != message_id:
            events.append(reply)
            continue
        if "error" in reply:
            raise RuntimeError(f"{method} failed: {reply['error']}")
        result: dict[str, Any] = reply["result"]
        return result


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop the browser, then whatever is left of its own process group (a helper that outlived
    it)."""
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
