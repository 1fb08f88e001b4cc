"""`modelyard audit verify`: check the audit chain and say, in one line, whether it is intact."""

from __future__ import annotations

from modelyard.audit.log import AuditLog
from modelyard.db.engine import open_database


def verify_command(database_url: str, expected_head: str | None = None) -> int:
    """Print the verdict; exit status 0 when the chain is intact, 1 when it was tampered with."""
    engine = open_database(database_url)
    try:
        report = AuditLog(engine).verify(expected_head)
    finally:
        engine.dispose()
    if report.ok:
        print(
            f"audit log intact: {report.records} records; head {report.records}:"
            f"{report.head_hash} (keep it, and pass it as --expect-head next time to catch "
            "records removed from the end)"
        )
        return 0
    print(f"audit log TAMPERED at seq {report.first_bad_seq}: {report.problem}")
    return 1
