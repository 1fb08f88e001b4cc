"""Ports for the servers tests start: the gateway's processes, PostgreSQL, Redis, Prometheus.

A port the kernel hands out for `bind(("127.0.0.1", 0))` comes from the ephemeral range, the
same range every outgoing connection takes its local port from, so between looking one up and
the server binding it, some client socket may take it (CI saw a fake upstream fail to start that
way). Ports here come from below that range, which no outgoing connection uses, and are never
handed out twice in one test process."""

from __future__ import annotations

import random
import socket

_BELOW_EPHEMERAL = range(20_000, 32_000)
_handed_out: set[int] = set()


def free_port() -> int:
    """A port on 127.0.0.1 that is free now and outside the ephemeral range."""
    for port in random.sample(_BELOW_EPHEMERAL, 200):
        if port in _handed_out:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError("no free port between 20000 and 32000 on 127.0.0.1")
