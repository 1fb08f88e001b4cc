"""Which process is which, read from /proc (Linux): the processes a `--workers` supervisor
started, and which of them holds a TCP connection, so a test knows which worker answered it."""

from __future__ import annotations

import os
from pathlib import Path

ESTABLISHED = "01"


def children(parent: int) -> set[int]:
    """Running children of `parent`: a supervisor's workers and multiprocessing's tracker."""
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (status := _status(int(entry.name))) is not None:
            state, ppid = status
            if ppid == parent and state != "Z":
                found.add(int(entry.name))
    return found


def running(pid: int) -> bool:
    """Whether `pid` exists and is not a zombie waiting to be reaped."""
    status = _status(pid)
    return status is not None and status[0] != "Z"


def worker_pids(parent: int) -> set[int]:
    """The children running a spawned worker (not multiprocessing's resource tracker)."""
    workers: set[int] = set()
    for pid in children(parent):
        try:
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                workers.add(pid)
        except OSError:
            continue
    return workers


def connection_holder(server_port: int, client_port: int, candidates: set[int]) -> int | None:
    """The one of `candidates` holding the server end of the loopback connection from
    `client_port`, or None when no established connection matches."""
    inode = _server_socket_inode(server_port, client_port)
    if inode is None:
        return None
    wanted = f"socket:[{inode}]"
    for pid in candidates:
        try:
            descriptors = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for descriptor in descriptors:
            try:
                if os.readlink(descriptor) == wanted:
                    return pid
            except OSError:
                continue
    return None


def _status(pid: int) -> tuple[str, int] | None:
    """A process's state letter and parent pid; None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses; the fields follow the last ')'.
    state, ppid = stat.rsplit(")", 1)[1].split()[:2]
    return state, int(ppid)


def _server_socket_inode(server_port: int, client_port: int) -> str | None:
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
            if (
                state == ESTABLISHED
                and _port(local) == server_port
                and _port(remote) == client_port
                and inode != "0"
            ):
                return inode
    return None


def _port(address: str) -> int:
    return int(address.rsplit(":", 1)[1], 16)
