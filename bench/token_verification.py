"""Cost of verifying an OIDC/JWT access token, per call, cold and cached.

Owns one micro-benchmark. It generates an RSA-2048 and an EC P-256 key, writes them as a JWKS
file next to an identity provider config in a temporary directory, loads that config as the
gateway does, and times `TokenVerifier.verify` in this process, for RS256 and ES256:

- **cold**: every call is a full verification (header parse, key lookup, signature, claims,
  role mapping), measured on a verifier without a result cache, of distinct tokens;
- **cached**: the same token again on a verifier with the result cache (SHA-256 of the token
  and an LRU lookup), the cost a client pays on every request after its first;
- **looks_like_jwt**: the check that tells a token from an API key.

Each figure is the median of `--rounds` rounds of `--calls` calls, in µs per call, with the
range over rounds. No network: the JWKS comes from a file, as a URL's keys do once cached.

Run: `.venv/bin/python bench/token_verification.py [--rounds 7] [--calls 2000]`
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import yaml
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from modelyard.auth.identity_provider import load_identity_provider
from modelyard.auth.tokens import TokenVerifier, looks_like_jwt

ISSUER = "https://login.example.com/tenant/v2.0"
AUDIENCE = "api://modelyard"


def write_provider(directory: Path, keys: dict[str, Any]) -> Path:
    jwks = []
    for kid, (alg, private) in keys.items():
        jwk = json.loads(jwt.get_algorithm_by_name(alg).to_jwk(private.public_key()))
        jwks.append({**jwk, "kid": kid, "use": "sig"})
    (directory / "jwks.json").write_text(json.dumps({"keys": jwks}))
    config = {
        "oidc": {
            "issuer": ISSUER,
            "audience": AUDIENCE,
            "jwks_file": "jwks.json",
            "role_claim": "groups",
            "mappings": [{"value": "team-a-devs", "project": "team-a", "role": "developer"}],
        }
    }
    path = directory / "auth.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def sign(kid: str, alg: str, private: Any, subject: str) -> str:
    now = int(time.time())
    # Shaped like an Entra ID v2 access token: ~20 claims, a few groups.
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": subject,
        "oid": "00000000-0000-0000-0000-000000000001",
        "tid": "00000000-0000-0000-0000-0000000000aa",
        "azp": "00000000-0000-0000-0000-0000000000bb",
        "name": "Ada Lovelace",
        "preferred_username": "ada@example.com",
        "scp": "access_as_user",
        "ver": "2.0",
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "groups": ["everyone", "team-a-devs", "building-7"],
    }
    return jwt.encode(claims, private, algorithm=alg, headers={"kid": kid, "typ": "JWT"})


def per_call_us(run: Callable[[int], None], calls: int, rounds: int) -> tuple[float, float, float]:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        run(calls)
        samples.append((time.perf_counter_ns() - start) / calls / 1000)
    return statistics.median(samples), min(samples), max(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()

    keys: dict[str, Any] = {
        "rsa-1": ("RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        "ec-1": ("ES256", ec.generate_private_key(ec.SECP256R1())),
    }
    with tempfile.TemporaryDirectory() as directory:
        config = load_identity_provider(write_provider(Path(directory), keys))
        uncached = TokenVerifier(config, cache_size=0)
        cached = TokenVerifier(config)

    print(f"token verification, µs per call: median [min, max] of {args.rounds} x {args.calls}")
    for kid, (alg, private) in keys.items():
        tokens = [sign(kid, alg, private, f"user-{n}") for n in range(args.calls)]
        token = tokens[0]
        cached.verify(token)

        def cold(calls: int, tokens: list[str] = tokens) -> None:
            for n in range(calls):
                uncached.verify(tokens[n])

        def warm(calls: int, token: str = token) -> None:
            for _ in range(calls):
                cached.verify(token)

        def classify(calls: int, token: str = token) -> None:
            for _ in range(calls):
                looks_like_jwt(token)

        print(f"{alg} ({len(token)} chars)")
        for label, run in (("cold", cold), ("cached", warm), ("looks_like_jwt", classify)):
            median, low, high = per_call_us(run, args.calls, args.rounds)
            print(f"  {label:<15} {median:8.1f}  [{low:.1f}, {high:.1f}]")


if __name__ == "__main__":
    main()
