"""The authenticated caller of a request."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Principal:
    id: str
    project: str
    roles: frozenset[str]
    # The key's public prefix, safe to log; never the key itself.
    key_hint: str
