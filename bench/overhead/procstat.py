"""CPU time and resident memory of process trees, and the machine's busy time, from /proc.

Owns every /proc read of the benchmark (Linux only). A server is measured as its process and
all its descendants alive at the moment of reading (uvicorn or gunicorn workers included); CPU of
children that exited in between is not seen. Times are user + system, in seconds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

TICK_S = 1 / os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def _stat_fields(pid: int) -> list[str]:
    # The command name (field 2) may hold spaces and parentheses; everything after its last ")"
    # is space-separated, starting with field 3 (state).
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def tree(pid: int) -> list[int]:
    """`pid` and its living descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            parent = int(_stat_fields(int(entry.name))[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        pending.extend(children.get(current, ()))
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process (all its threads)."""
    try:
        fields = _stat_fields(pid)
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) * TICK_S


def tree_cpu_seconds(pid: int) -> float:
    return sum(cpu_seconds(member) for member in tree(pid))


def tree_rss_bytes(pid: int) -> int:
    total = 0
    for member in tree(pid):
        try:
            resident = int(Path(f"/proc/{member}/statm").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue
        total += resident * PAGE
    return total


def machine_busy_seconds() -> float:
    """CPU time all cores spent not idle since boot (summed over cores)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:7]) - idle) * TICK_S  # steal (8th) is not ours


@dataclass(frozen=True)
class Snapshot:
    """CPU of the watched trees and of the whole machine at one instant."""

    trees: dict[int, float]
    machine: float

    @classmethod
    def take(cls, pids: list[int]) -> Snapshot:
        return cls({pid: tree_cpu_seconds(pid) for pid in pids}, machine_busy_seconds())

    def since(self, earlier: Snapshot) -> tuple[dict[int, float], float]:
        """(CPU seconds of each watched tree, CPU seconds of everything else) in between."""
        used = {pid: self.trees[pid] - earlier.trees.get(pid, 0.0) for pid in self.trees}
        others = (self.machine - earlier.machine) - sum(used.values())
        return used, max(others, 0.0)
