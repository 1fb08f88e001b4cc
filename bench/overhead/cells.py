"""One measured cell: one server, one kind of request, one concurrency, one repeat.

Owns running the load generator against a server and reading CPU around it: the generator's
`started` and `stopped` lines bound the window in which the server's process tree, the upstream's
(when the server is a proxy), the generator's own and everything else on the machine are read
from /proc. A cell's numbers are per request (per stream for `stream` cells).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from bench.overhead.loadgen import LoadSpec
from bench.overhead.payloads import request_body
from bench.overhead.procstat import Snapshot
from bench.overhead.servers import ROOT, Server


@dataclass(frozen=True)
class Cell:
    kind: str  # "plain" | "stream"
    concurrency: int

    @property
    def key(self) -> str:
        return f"{self.kind} c={self.concurrency}"


CELLS = (
    Cell("plain", 1),
    Cell("plain", 16),
    Cell("plain", 64),
    Cell("stream", 1),
    Cell("stream", 16),
)


@dataclass(frozen=True)
class Measurement:
    server: str
    cell: str
    repeat: int
    requests: int
    errors: int
    error_samples: list[str]
    elapsed_s: float
    rps: float
    latency_ms: dict[str, float]  # the whole request; for streams, until [DONE]
    ttft_ms: dict[str, float] | None
    server_cpu_ms: float  # per request, the server's process tree
    upstream_cpu_ms: float | None  # per request, the upstream behind a proxy
    generator_cores: float  # the load generator's CPU over the window, in cores
    others_cores: float  # every other process on the machine, in cores

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_spec(
    server: Server, kind: str, concurrency: int, seconds: float, **extra: Any
) -> LoadSpec:
    return LoadSpec(
        host="127.0.0.1",
        port=server.port,
        path="/v1/chat/completions",
        headers=server.headers,
        plain_body=request_body(stream=False).decode(),
        stream_body=request_body(stream=True).decode(),
        kind=kind,
        concurrency=concurrency,
        seconds=seconds,
        **extra,
    )


class LoadRun:
    """A load generator process, read line by line; CPU snapshots at its window's edges."""

    def __init__(self, spec: LoadSpec, watched: list[int]) -> None:
        command = [sys.executable, "-m", "bench.overhead.loadgen", json.dumps(asdict(spec))]
        self.process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        self.watched = [*watched, self.process.pid]
        self.before: Snapshot | None = None
        self.after: Snapshot | None = None

    def lines(self) -> Iterator[dict[str, Any]]:
        """Yield each JSON line; snapshots are taken as `started` and `stopped` pass."""
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            line = json.loads(raw)
            if line["event"] == "started":
                self.before = Snapshot.take(self.watched)
            elif line["event"] == "stopped":
                self.after = Snapshot.take(self.watched)
            yield line
        if self.process.wait() != 0:
            raise RuntimeError(f"load generator exited with {self.process.returncode}")

    def result(self) -> dict[str, Any]:
        result = None
        for line in self.lines():
            if line["event"] == "result":
                result = line
        if result is None:
            raise RuntimeError("the load generator gave no result")
        return result

    def measurement(
        self, side: str, cell: str, repeat: int, server_pid: int, upstream_pids: list[int]
    ) -> Measurement:
        """Run to the end; per-request CPU of the server and of the upstreams behind it (None
        when there are none), and the generator's and everyone else's cores over the window."""
        result = self.result()
        assert self.before is not None and self.after is not None
        used, others = self.after.since(self.before)
        requests = max(result["requests"], 1)
        elapsed = result["elapsed_s"]
        return Measurement(
            server=side,
            cell=cell,
            repeat=repeat,
            requests=result["requests"],
            errors=result["errors"],
            error_samples=result["error_samples"],
            elapsed_s=elapsed,
            rps=result["rps"],
            latency_ms=result["latency_ms"],
            ttft_ms=result["ttft_ms"],
            server_cpu_ms=used[server_pid] * 1000 / requests,
            upstream_cpu_ms=(
                sum(used[pid] for pid in upstream_pids) * 1000 / requests if upstream_pids else None
            ),
            generator_cores=used[self.process.pid] / elapsed,
            others_cores=others / elapsed,
        )


def measure(
    server: Server,
    upstream: Server,
    cell: Cell,
    seconds: float,
    repeat: int,
    client: str,
    chunks: int,
) -> Measurement:
    spec = load_spec(server, cell.kind, cell.concurrency, seconds, client=client, chunks=chunks)
    upstreams = [upstream.pid] if server.proxy else []
    run = LoadRun(spec, [server.pid, *upstreams])
    return run.measurement(server.name, cell.key, repeat, server.pid, upstreams)
