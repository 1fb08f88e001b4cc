"""Stopping the session's PostgreSQL server and starting it again in place: same data directory,
port and settings as `PostgresServer.start` gave it, so clients reconnect to the same URL."""

from __future__ import annotations

from tests.support.services import PostgresServer


def stop_postgres(server: PostgresServer) -> None:
    # Fast: open sessions are ended at once, as in a crash of the database host's service.
    server._pg_ctl("stop", "--wait", "--mode=fast")


def start_postgres(server: PostgresServer) -> None:
    # The settings PostgresServer.start passes; they live on the command line, not in a file.
    options = [
        f"-p {server.port}",
        "-c listen_addresses=127.0.0.1",
        f"-c unix_socket_directories={server.root}",
        "-c fsync=off",
        "-c synchronous_commit=off",
        "-c full_page_writes=off",
        "-c max_connections=200",
    ]
    server._pg_ctl(
        "start",
        "--wait",
        "--timeout=60",
        f"--log={server.root / 'server.log'}",
        "-o",
        " ".join(options),
    )
