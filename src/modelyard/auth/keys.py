"""API key material: generation, hashing and constant-time comparison.

Keys are 256 random bits behind a recognisable prefix. Only a SHA-256 digest is ever stored;
the full key exists in memory while a request is verified, and on screen once when created.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

ADMIN_KEY_PREFIX = "myd-admin-"


def generate_key(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def digest_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def digests_match(key: str, digest: str) -> bool:
    return hmac.compare_digest(digest_key(key), digest)


def key_hint(key: str) -> str:
    """What may be shown of a key: its prefix and last four characters."""
    prefix = key[: len(ADMIN_KEY_PREFIX)] if key.startswith(ADMIN_KEY_PREFIX) else ""
    return f"{prefix}…{key[-4:]}" if len(key) > 12 else "…"
