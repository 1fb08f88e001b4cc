"""A stand-in OIDC identity provider for the access tests: an EC P-256 key pair, the JWKS file
and auth config that make the gateway trust it, and tokens it signs for named people.

Tokens give people subjects of their own (`oidc:<name>`); API keys minted with the bootstrap
key all share the subject `admin`, so "another member's key" needs a person from here.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import jwt
import yaml
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

ISSUER = "https://idp.access-tests.invalid"
AUDIENCE = "modelyard"
SIGNING_KEY_ID = "access-tests"
# The group the config maps to role `developer` on project `alpha`.
ALPHA_DEVELOPERS = "alpha-developers"


@dataclass(frozen=True)
class IdentityProvider:
    config_path: Path
    signing_key: ec.EllipticCurvePrivateKey

    @classmethod
    def create(cls, directory: Path) -> IdentityProvider:
        directory.mkdir(parents=True, exist_ok=True)
        signing_key = ec.generate_private_key(ec.SECP256R1())
        public = json.loads(ECAlgorithm.to_jwk(signing_key.public_key()))
        public.update(kid=SIGNING_KEY_ID, alg="ES256", use="sig")
        (directory / "jwks.json").write_text(json.dumps({"keys": [public]}))
        config = {
            "oidc": {
                "issuer": ISSUER,
                "audience": AUDIENCE,
                "jwks_file": "jwks.json",
                "role_claim": "groups",
                "mappings": [{"value": ALPHA_DEVELOPERS, "project": "alpha", "role": "developer"}],
            }
        }
        config_path = directory / "auth.yaml"
        config_path.write_text(yaml.safe_dump(config))
        return cls(config_path, signing_key)

    def token(self, name: str, groups: Sequence[str] = (ALPHA_DEVELOPERS,)) -> str:
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": name,
            "groups": list(groups),
            "iat": now,
            "exp": now + 3600,
        }
        return jwt.encode(
            claims, self.signing_key, algorithm="ES256", headers={"kid": SIGNING_KEY_ID}
        )
