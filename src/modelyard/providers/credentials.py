"""Resolve credential references from the catalog (`env:NAME`, `file:/path`) once, at start-up.

The secret values live only in the provider that uses them; they are never logged, and a missing
one stops start-up with a message that names the reference, not the value.
"""

from __future__ import annotations

import os
from pathlib import Path

from modelyard.errors import StartupError


class CredentialMissing(StartupError):
    """A deployment's credential reference does not resolve."""


def resolve_credential(reference: str, deployment_id: str) -> str:
    kind, _, name = reference.partition(":")
    if kind == "env":
        value = os.environ.get(name)
        if not value:
            raise CredentialMissing(
                f"deployment '{deployment_id}': credential {reference}: the variable is not set"
            )
        return value.strip()
    if kind == "file":
        try:
            value = Path(name).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise CredentialMissing(
                f"deployment '{deployment_id}': credential {reference}: {exc.strerror}"
            ) from None
        if not value:
            raise CredentialMissing(
                f"deployment '{deployment_id}': credential {reference} is empty"
            )
        return value
    raise CredentialMissing(f"deployment '{deployment_id}': unknown credential kind '{kind}'")
