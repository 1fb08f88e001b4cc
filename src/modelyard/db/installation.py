"""Whether a data directory holds an installation whose embedded database has gone missing.

With the embedded default, projects, keys, the audit log and the usage ledger live in one SQLite
file in the data directory. If that file disappears (deleted, a volume not mounted), starting as
usual would create an empty database: every project, key and record gone, and nobody told. So
after the first successful start a marker file records that the directory has a database, and a
start that finds the marker without the database refuses, saying how to go on.
"""

from __future__ import annotations

from pathlib import Path

from modelyard.errors import StartupError

MARKER = "installed"


class DatabaseMissing(StartupError):
    """The data directory belongs to an installation, but its database file is not there."""


def check_installation(data_dir: Path, database_file: Path) -> None:
    if (data_dir / MARKER).exists() and not database_file.exists():
        raise DatabaseMissing(
            f"The data directory {data_dir} belongs to an existing installation, but its "
            f"database {database_file.name} is missing: its projects, keys, audit log and usage "
            "records would be lost if a new one were created. Restore the file (or mount the "
            "volume that holds it); to start a new installation, use an empty data directory."
        )


def mark_installed(data_dir: Path) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / MARKER).touch()
