"""The load generator: a process of its own driving one server closed-loop, so that its CPU is
never counted against the server.

Owns one run: `concurrency` workers, each on its own keep-alive connection, issuing requests
back to back for `seconds` (or until `max_requests`). Each worker first sends one unmeasured
request, so connections are open and warm when the clock starts. Kinds: `plain`, `stream`, or
`mix` (per ten requests: 7 plain, 2 streamed to the end, 1 dropped after `disconnect_after`
tokens). A stream counts as an error unless it brought exactly `chunks` tokens and `[DONE]`.

Speaks JSON lines on stdout: `{"event": "started"}` as the clock starts, `{"event": "progress",
"done": n}` every `progress_every` requests, `{"event": "stopped"}` when the last request ends,
then `{"event": "result", ...}`. The parent reads server CPU at `started` and `stopped`.

Run: `python -m bench.overhead.loadgen '<LoadSpec as JSON>'`.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from bench.overhead import fastloop
from bench.overhead.client import Exchange, RawConnection, RequestFailed
from bench.overhead.httpx_client import HttpxConnection
from bench.overhead.sse import StreamTally
from bench.overhead.summary import percentiles_ms

MIX = ("plain",) * 7 + ("stream",) * 2 + ("disconnect",)


@dataclass(frozen=True)
class LoadSpec:
    host: str
    port: int
    path: str
    headers: dict[str, str]
    plain_body: str
    stream_body: str
    kind: str  # "plain" | "stream" | "mix"
    concurrency: int
    seconds: float
    client: str = "raw"  # "raw" | "httpx"
    chunks: int = 100
    max_requests: int | None = None
    progress_every: int | None = None
    disconnect_after: int = 10
    timeout_s: float = 60.0
    surface: str = "chat"  # a key of `sse.SURFACES`

    def exchange(self) -> Exchange:
        return Exchange(
            self.host,
            self.port,
            self.path,
            self.headers,
            self.plain_body.encode(),
            self.stream_body.encode(),
            self.surface,
        )


class Connection(Protocol):
    closed: bool

    def close(self) -> None: ...

    async def complete(self) -> None: ...

    async def stream(self, stop_after: int | None = None) -> StreamTally: ...


@dataclass
class Tally:
    latencies_s: list[float] = field(default_factory=list)
    ttfts_s: list[float] = field(default_factory=list)
    kinds: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    issued: int = 0
    done: int = 0

    def fail(self, reason: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(reason)


class Run:
    def __init__(self, spec: LoadSpec) -> None:
        self.spec = spec
        self.exchange = spec.exchange()
        self.tally = Tally()
        self.stop_at = 0.0
        self._httpx = HttpxConnection.shared_client(spec.concurrency)

    async def connect(self) -> Connection:
        if self.spec.client == "httpx":
            return HttpxConnection(self._httpx, self.exchange)
        return await RawConnection.open(self.exchange)

    def kind(self, index: int) -> str:
        return MIX[index % len(MIX)] if self.spec.kind == "mix" else self.spec.kind

    async def once(self, connection: Connection, kind: str) -> None:
        """One request; raises RequestFailed."""
        spec = self.spec
        started = time.perf_counter()
        async with asyncio.timeout(spec.timeout_s):
            if kind == "plain":
                await connection.complete()
                self.tally.latencies_s.append(time.perf_counter() - started)
                return
            stop_after = spec.disconnect_after if kind == "disconnect" else None
            seen = await connection.stream(stop_after)
        ended = time.perf_counter()
        if kind == "stream" and (seen.tokens != spec.chunks or not seen.done):
            raise RequestFailed(f"stream of {seen.tokens} tokens, [DONE] {seen.done}")
        if kind == "stream":
            self.tally.latencies_s.append(ended - started)
        if seen.first_token_at is not None:
            self.tally.ttfts_s.append(seen.first_token_at - started)

    async def prime(self) -> Connection:
        connection = await self.connect()
        kind = "plain" if self.spec.kind == "mix" else self.spec.kind
        try:
            await self.once(connection, kind)
        except (RequestFailed, TimeoutError, OSError):
            connection = await self.connect()
        return connection

    async def worker(self, connection: Connection) -> None:
        spec, tally = self.spec, self.tally
        while time.monotonic() < self.stop_at:
            if spec.max_requests is not None and tally.issued >= spec.max_requests:
                return
            kind = self.kind(tally.issued)
            tally.issued += 1
            try:
                await self.once(connection, kind)
            except (RequestFailed, TimeoutError, OSError) as exc:
                tally.fail(f"{kind}: {exc}" if str(exc) else f"{kind}: {exc!r}")
                connection.close()
            tally.kinds[kind] = tally.kinds.get(kind, 0) + 1
            tally.done += 1
            if spec.progress_every and tally.done % spec.progress_every == 0:
                emit({"event": "progress", "done": tally.done})
            if connection.closed:
                connection = await self.connect()

    async def run(self) -> dict[str, Any]:
        spec = self.spec
        connections = await asyncio.gather(*(self.prime() for _ in range(spec.concurrency)))
        self.tally = Tally()
        emit({"event": "started"})
        cpu_before = cpu_seconds()
        began = time.monotonic()
        self.stop_at = began + spec.seconds
        await asyncio.gather(*(self.worker(c) for c in connections))
        elapsed = time.monotonic() - began
        client_cpu = cpu_seconds() - cpu_before
        emit({"event": "stopped"})
        for connection in connections:
            connection.close()
        await self._httpx.aclose()
        tally = self.tally
        return {
            "event": "result",
            "spec": {k: v for k, v in asdict(spec).items() if not k.endswith("_body")},
            "requests": tally.done,
            "errors": tally.errors,
            "error_samples": tally.error_samples,
            "kinds": tally.kinds,
            "elapsed_s": elapsed,
            "rps": tally.done / elapsed if elapsed else 0.0,
            "latency_ms": percentiles_ms(tally.latencies_s),
            "ttft_ms": percentiles_ms(tally.ttfts_s) if tally.ttfts_s else None,
            "client_cpu_s": client_cpu,
            "loop": fastloop.name(),
        }


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def emit(line: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


def main() -> None:
    spec = LoadSpec(**json.loads(sys.argv[1]))
    emit(fastloop.run(Run(spec).run()))


if __name__ == "__main__":
    main()
