"""What authenticating a request costs: project API key, bootstrap admin key, and a failed key.

Owns one benchmark. It builds the real Authenticator over a Directory holding `--keys` project
keys (as a gateway loads them at start), then times `authenticate(headers)` in a tight loop for
each credential kind, next to the floor of one HMAC-SHA256 of a key under the server secret.
The target (issue 5) is under 20 µs per verification with the cache, i.e. no database on the
request path. Medians of `--repeats` rounds of `--calls` calls each; spread as min..max.

Run: `.venv/bin/python bench/key_verification.py [--keys 10000] [--calls 20000] [--repeats 7]`
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import secrets
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime

from modelyard.auth.authenticator import Authenticator
from modelyard.auth.directory import Directory, KeyRecord
from modelyard.auth.keys import (
    ADMIN_KEY_PREFIX,
    compose_project_key,
    digest_key,
    generate_key,
    keyed_digest,
    new_key_id,
)
from modelyard.errors import AuthenticationFailed
from modelyard.policy.rbac import Role

TARGET_US = 20.0


def build(keys: int) -> tuple[Authenticator, list[str], str]:
    secret = secrets.token_bytes(32)
    directory = Directory()
    now = datetime.now(UTC)
    plain: list[str] = []
    for index in range(keys):
        key_id = new_key_id()
        key = compose_project_key(key_id)
        plain.append(key)
        directory.put_key(
            KeyRecord(
                id=key_id,
                project_id=f"p{index % 50}",
                name=f"k{index}",
                subject=f"user{index}",
                role=Role.DEVELOPER,
                models=None,
                digest=keyed_digest(secret, key),
                created_at=now,
                created_by="bench",
                expires_at=None,
                revoked_at=None,
                replaced_by=None,
            )
        )
    admin = generate_key(ADMIN_KEY_PREFIX)
    return Authenticator(digest_key(admin), directory, secret), plain, admin


def per_call_us(work: Callable[[], object], calls: int, repeats: int) -> tuple[float, float, float]:
    rounds = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            work()
        rounds.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(rounds), min(rounds), max(rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    authenticator, keys, admin = build(args.keys)
    project_key = keys[len(keys) // 2]
    wrong = project_key[:-4] + ("AAAA" if not project_key.endswith("AAAA") else "BBBB")
    secret = secrets.token_bytes(32)

    def failing() -> None:
        with contextlib.suppress(AuthenticationFailed):
            authenticator.authenticate({"authorization": f"Bearer {wrong}"})

    cases: list[tuple[str, Callable[[], object]]] = [
        (
            "HMAC-SHA256 floor",
            lambda: hmac.new(secret, project_key.encode(), hashlib.sha256).hexdigest(),
        ),
        (
            "project key (Bearer)",
            lambda: authenticator.authenticate({"authorization": f"Bearer {project_key}"}),
        ),
        ("project key (api-key)", lambda: authenticator.authenticate({"api-key": project_key})),
        ("admin key", lambda: authenticator.authenticate({"authorization": f"Bearer {admin}"})),
        ("wrong secret, known id (401)", failing),
    ]
    print(f"{args.keys} keys loaded; {args.calls} calls x {args.repeats} rounds; median [min..max]")
    results = {}
    for name, work in cases:
        median, low, high = per_call_us(work, args.calls, args.repeats)
        results[name] = median
        print(f"  {name:30s} {median:7.2f} µs  [{low:.2f}..{high:.2f}]")
    verdict = "MET" if results["project key (Bearer)"] < TARGET_US else "NOT MET"
    print(f"project key verification vs target {TARGET_US:.0f} µs: {verdict}")


if __name__ == "__main__":
    main()
