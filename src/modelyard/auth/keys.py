"""API key material: generation, hashing and constant-time comparison.

Project keys read `myd-<id>-<secret>`: a 12-character public id (it names the key in lists and
logs) and 256 random bits. Only an HMAC-SHA256 of the whole key under the server secret is
stored, so a stolen database cannot be brute-forced offline without the secret as well. The
bootstrap admin key (`myd-admin-…`) keeps its plain SHA-256 digest file from the first start.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string

ADMIN_KEY_PREFIX = "myd-admin-"
KEY_PREFIX = "myd-"
KEY_ID_LENGTH = 12
_ID_ALPHABET = string.ascii_lowercase + string.digits


def generate_key(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def digest_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def digests_match(key: str, digest: str) -> bool:
    return hmac.compare_digest(digest_key(key), digest)


def new_key_id() -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(KEY_ID_LENGTH))


def compose_project_key(key_id: str) -> str:
    return f"{KEY_PREFIX}{key_id}-{secrets.token_urlsafe(32)}"


def project_key_id(key: str) -> str | None:
    """The public id of a project key, or None when `key` does not have the project key shape."""
    end = len(KEY_PREFIX) + KEY_ID_LENGTH
    if len(key) < end + 20 or not key.startswith(KEY_PREFIX) or key[end] != "-":
        return None
    key_id = key[len(KEY_PREFIX) : end]
    return key_id if all(c in _ID_ALPHABET for c in key_id) else None


def keyed_digest(secret: bytes, key: str) -> str:
    return hmac.new(secret, key.encode("utf-8"), hashlib.sha256).hexdigest()


def key_hint(key: str) -> str:
    """What may be shown of a key: its public id (project keys) or prefix, never secret bits."""
    key_id = project_key_id(key)
    if key_id is not None:
        return f"{KEY_PREFIX}{key_id}-…"
    return f"{ADMIN_KEY_PREFIX}…" if key.startswith(ADMIN_KEY_PREFIX) else "…"
