"""The server secret: the HMAC key for stored API key digests and the seal of idempotent replies.

Configured through MODELYARD_SECRET (replicas must share one), or generated on first start into
`<data-dir>/server-secret`, readable by the owner only.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from pathlib import Path

SECRET_FILE = "server-secret"


def load_or_create_server_secret(data_dir: Path, configured: str | None) -> bytes:
    if configured:
        if len(configured) < 32:
            raise ValueError("MODELYARD_SECRET must be at least 32 characters")
        return hashlib.sha256(configured.encode("utf-8")).digest()
    path = data_dir / SECRET_FILE
    if path.exists():
        return base64.urlsafe_b64decode(path.read_text(encoding="ascii").strip())
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(base64.urlsafe_b64encode(secret).decode("ascii") + "\n")
    return secret


def derive(secret: bytes, purpose: str) -> bytes:
    """A separate 32-byte key per purpose, so one use of the secret never weakens another."""
    return hashlib.sha256(secret + b"\x00modelyard\x00" + purpose.encode("ascii")).digest()
