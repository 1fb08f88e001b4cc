"""What one audit record holds, how its text is made safe to keep, and how it is hashed.

An `AuditEvent` is what a caller reports. `chained_record` turns it into the stored row: every
text field scrubbed of secrets and cut to its column's size, then `seq`, `at`, the `prev_hash`
of the record before it, and `hash`, the SHA-256 hex of the canonical bytes of all of those.
The canonical bytes are JSON with sorted keys, `at` written as ISO 8601 UTC with microseconds
(the precision both databases keep exactly). Changing them breaks every chain already stored.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any, Literal, get_args

import orjson
from sqlalchemy import String

from modelyard.db.schema import audit_events

Outcome = Literal["allowed", "denied", "failed", "succeeded"]

GENESIS_HASH = "0" * 64
REDACTED = "[redacted]"
HASHED_FIELDS = (
    "seq",
    "at",
    "actor",
    "action",
    "project_id",
    "object",
    "outcome",
    "reason",
    "client_ip",
    "request_id",
    "prev_hash",
)
# `reason` is unbounded text in the schema; a cap keeps caller-supplied text from bloating it.
REASON_LIMIT = 2000

_COLUMN_LIMITS: dict[str, int] = {
    column.name: column.type.length
    for column in audit_events.columns
    if isinstance(column.type, String) and column.type.length is not None
}

# A Modelyard key keeps its public part (`myd-`, `myd-admin-`, or `myd-<12-char id>-`) and loses
# the rest, so key ids and hints such as `myd-<id>-…` survive. Provider keys (`sk-…`) go too.
_SECRETS = re.compile(
    r"(?P<key>(?i:myd)-(?:admin-|[a-z0-9]{12}(?:-|(?![A-Za-z0-9_-])))?)"
    r"(?P<key_secret>[A-Za-z0-9_-]*)"
    r"|eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]*)*"
    r"|(?P<bearer>(?i:bearer)\s+)\S+"
    r"|(?<![A-Za-z0-9])sk-[A-Za-z0-9_-]{20,}"
)


@dataclass(frozen=True)
class AuditEvent:
    actor: str
    action: str
    object: str
    outcome: Outcome
    reason: str
    project_id: str | None = None
    client_ip: str | None = None
    request_id: str | None = None

    def __post_init__(self) -> None:
        # Checked here, in the caller, so a malformed event never reaches the background writer.
        if self.outcome not in get_args(Outcome):
            raise ValueError(f"unknown audit outcome {self.outcome!r}")
        for field in fields(self):
            value = getattr(self, field.name)
            if not (isinstance(value, str) or (value is None and field.default is None)):
                raise TypeError(f"audit field {field.name} must be text, not {type(value)}")


def scrub(text: str) -> str:
    """`text` with every Modelyard key, JWT, bearer value and provider key replaced."""
    return _SECRETS.sub(_redact, text)


def chained_record(event: AuditEvent, *, seq: int, at: datetime, prev_hash: str) -> dict[str, Any]:
    """The row to store for `event` as record `seq`, hash included."""
    if at.tzinfo is None:
        raise ValueError("naive datetime given to the audit log; use UTC-aware times")
    record: dict[str, Any] = {"seq": seq, "at": at.astimezone(UTC), "prev_hash": prev_hash}
    for field in fields(event):
        value = getattr(event, field.name)
        limit = _COLUMN_LIMITS.get(field.name, REASON_LIMIT)
        record[field.name] = None if value is None else _storable(value, limit)
    record["hash"] = record_hash(record)
    return record


def record_hash(record: Mapping[str, Any]) -> str:
    """SHA-256 hex of a record's canonical bytes; `record["at"]` is an aware datetime."""
    body = {name: record[name] for name in HASHED_FIELDS}
    body["at"] = record["at"].astimezone(UTC).isoformat(timespec="microseconds")
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _redact(match: re.Match[str]) -> str:
    if match["key"] is not None:
        return match["key"] + REDACTED if match["key_secret"] else match["key"]
    if match["bearer"] is not None:
        return match["bearer"] + REDACTED
    return REDACTED


def _storable(value: str, limit: int) -> str:
    text = scrub(value).replace("\x00", "\ufffd")
    # Lone surrogates (which a decoded JSON body may carry) are refused by PostgreSQL and orjson.
    text = text.encode("utf-8", "replace").decode("utf-8")
    return text if len(text) <= limit else text[: limit - 1] + "…"
