"""One replica of the two-process budget race, run as `python -m tests.limits.race_worker`.

It opens its own RedisCounterStore, connects, waits for the agreed start time, then runs
`count` concurrent requests (arriving over 0.1 s) that each reserve `worst` and settle a cost
just under it, and prints the costs of the requests it admitted as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time

from modelyard.limits.redis_store import RedisCounterStore
from modelyard.limits.values import BudgetLimit, Reserved


async def race(args: argparse.Namespace) -> dict[str, int]:
    store = RedisCounterStore(args.url, prefix=args.prefix)
    budget = [BudgetLimit("shared", args.limit)]
    admitted: dict[str, int] = {}

    async def request(n: int) -> None:
        request_id = f"{args.name}-{n}"
        cost = args.worst - (n * 7) % (args.worst // 50)
        await asyncio.sleep(random.random() * 0.1)
        if isinstance(await store.reserve(request_id, budget, args.worst, args.name), Reserved):
            admitted[request_id] = cost
            await asyncio.sleep(random.random() * 0.02)
            await store.settle(request_id, cost)

    # Connect before the start, so neither replica spends its first milliseconds connecting.
    await asyncio.gather(*(store.budget_state("shared") for _ in range(32)))
    await asyncio.sleep(max(0.0, args.start_at - time.time()))
    await asyncio.gather(*(request(n) for n in range(args.count)))
    await store.aclose()
    return admitted


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("url", "prefix", "name"):
        parser.add_argument(f"--{name}", required=True)
    parser.add_argument("--start-at", type=float, required=True)
    for name in ("count", "worst", "limit"):
        parser.add_argument(f"--{name}", type=int, required=True)
    print(json.dumps(asyncio.run(race(parser.parse_args()))))


if __name__ == "__main__":
    main()
