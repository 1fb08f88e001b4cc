"""`--soak N`: N requests through Modelyard, mixing plain, streamed and abandoned streams, with
its RSS read every 10%; the growth from after warm-up to the end should stay within 5%.

Owns the soak. Per ten requests the mix is 7 plain, 2 streams read to `[DONE]`, and 1 stream
the client drops after 10 tokens (its connection is closed, a new one opened). The run stops
at N requests or after `--soak-seconds`, whichever comes first, and says which. The warm-up
(same mix, 65 s) runs longer than the longest window the gateway keeps per request (the rate
limits' sliding minute, which holds every request of the last 60 s by design), so the baseline
RSS is taken at steady state and the growth measured after it is what a leak would add.
"""

from __future__ import annotations

import time
from typing import Any

from bench.overhead.cells import LoadRun, load_spec
from bench.overhead.procstat import tree_rss_bytes
from bench.overhead.servers import Server

MIB = 1 << 20
WARMUP_S = 65.0


def soak(
    modelyard: Server,
    upstream: Server,
    requests: int,
    seconds: float,
    concurrency: int,
    chunks: int,
) -> dict[str, Any]:
    print(f"soak: warm-up of {WARMUP_S:.0f} s ...", flush=True)
    warmup = LoadRun(load_spec(modelyard, "mix", concurrency, WARMUP_S, chunks=chunks), []).result()
    print(f"soak: warm-up done, {warmup['requests']:,} requests", flush=True)
    baseline = tree_rss_bytes(modelyard.pid) / MIB
    step = max(requests // 10, 1)
    spec = load_spec(
        modelyard, "mix", concurrency, seconds,
        max_requests=requests, progress_every=step, chunks=chunks,
    )  # fmt: skip
    run = LoadRun(spec, [modelyard.pid, upstream.pid])
    points = []
    started = time.monotonic()
    result: dict[str, Any] = {}
    for line in run.lines():
        if line["event"] == "progress":
            rss = tree_rss_bytes(modelyard.pid) / MIB
            percent = round(100 * line["done"] / requests)
            points.append({"percent": percent, "done": line["done"], "rss_mib": rss})
            print(f"soak: {percent:3d}% {line['done']:>9,} requests, RSS {rss:.1f} MiB", flush=True)
        elif line["event"] == "result":
            result = line
    final = tree_rss_bytes(modelyard.pid) / MIB
    if not points or points[-1]["done"] != result["requests"]:
        percent = round(100 * result["requests"] / requests)
        points.append({"percent": percent, "done": result["requests"], "rss_mib": final})
    return {
        "requested": requests,
        "done": result["requests"],
        "stopped_by": "count" if result["requests"] >= requests else "time",
        "elapsed_s": time.monotonic() - started,
        "kinds": result["kinds"],
        "errors": result["errors"],
        "error_samples": result["error_samples"],
        "baseline_mib": baseline,
        "rss": points,
        "growth_percent": 100 * (final - baseline) / baseline,
    }
