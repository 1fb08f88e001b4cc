"""Throwaway PostgreSQL and Redis servers for tests, each on a free loopback port.

A server lives in its own temporary directory, started by the tests and stopped by them; the
machine's own services are never used. PostgreSQL refuses to run as root, so under root the
cluster belongs to an unprivileged account (`postgres` when it exists) and its commands run as
that account. Both servers trade durability for speed: PostgreSQL with fsync off, Redis with no
persistence at all.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg
import redis
from psycopg import sql

from tests.support.ports import free_port

PG_SUPERUSER = "modelyard"


class ServiceUnavailable(Exception):
    """The binaries of a service are not installed on this machine."""


def postgres_bindir() -> Path:
    """The directory holding initdb, pg_ctl and postgres, wherever this system put them."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        try:
            found = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True, timeout=10
            )
            candidates.append(Path(found.stdout.strip()))
        except (OSError, subprocess.SubprocessError):
            pass
    # Debian keeps the server out of PATH, one directory per major version; newest first.
    versioned = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += sorted(map(Path, versioned), key=lambda p: _major(p.parent.name), reverse=True)
    initdb = shutil.which("initdb")
    if initdb is not None:
        candidates.append(Path(initdb).resolve().parent)
    for directory in candidates:
        if all((directory / name).is_file() for name in ("initdb", "pg_ctl", "postgres")):
            return directory
    raise ServiceUnavailable("PostgreSQL (initdb, pg_ctl, postgres) is not installed")


def redis_binary() -> Path:
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.path.isfile("/usr/bin/redis-server") else None
    )
    if found is None:
        raise ServiceUnavailable("redis-server is not installed")
    return Path(found)


@dataclass
class PostgresServer:
    bindir: Path
    root: Path
    port: int
    # The account that owns the cluster and runs its commands; None: the current user.
    run_as: str | None

    @classmethod
    def start(cls, bindir: Path) -> PostgresServer:
        run_as = _unprivileged_account() if os.geteuid() == 0 else None
        # Not under pytest's tmp dir: as root that is private to root, and the server's account
        # must reach its own directory.
        root = Path(tempfile.mkdtemp(prefix="modelyard-pg-"))
        if run_as is not None:
            entry = pwd.getpwnam(run_as)
            os.chown(root, entry.pw_uid, entry.pw_gid)
        server = cls(bindir, root, free_port(), run_as)
        try:
            server._initdb()
            server._pg_ctl(
                "start",
                "--wait",
                "--timeout=60",
                f"--log={root / 'server.log'}",
                "-o",
                " ".join(
                    [
                        f"-p {server.port}",
                        "-c listen_addresses=127.0.0.1",
                        f"-c unix_socket_directories={root}",
                        "-c fsync=off",
                        "-c synchronous_commit=off",
                        "-c full_page_writes=off",
                        "-c max_connections=200",
                    ]
                ),
            )
        except BaseException:
            # A server that started but never answered must not outlive the test run.
            with contextlib.suppress(Exception):
                server._pg_ctl("stop", "--wait", "--mode=immediate")
            shutil.rmtree(root, ignore_errors=True)
            raise
        return server

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def url(self, dbname: str = "postgres") -> str:
        """A SQLAlchemy URL for one database of this server."""
        return f"postgresql+psycopg://{PG_SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def conninfo(self, dbname: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user={PG_SUPERUSER} dbname={dbname}"

    def create_database(self, name: str) -> str:
        """Create an empty database and return its URL."""
        with psycopg.connect(self.conninfo(), autocommit=True) as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def stop(self) -> None:
        try:
            self._pg_ctl("stop", "--wait", "--mode=fast")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, lines: int = 40) -> str:
        path = self.root / "server.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def _initdb(self) -> None:
        self._run(
            self.bindir / "initdb",
            f"--pgdata={self.data_dir}",
            f"--username={PG_SUPERUSER}",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )

    def _pg_ctl(self, *args: str) -> None:
        self._run(self.bindir / "pg_ctl", f"--pgdata={self.data_dir}", *args)

    def _run(self, program: Path, *args: str) -> None:
        account = pwd.getpwnam(self.run_as) if self.run_as is not None else None
        result = subprocess.run(
            [str(program), *args],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=self.root,
            env={**os.environ, "HOME": str(self.root)} if account else None,
            # Drop root entirely: uid, gid and every supplementary group.
            user=account.pw_uid if account else None,
            group=account.pw_gid if account else None,
            extra_groups=[] if account else None,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{program.name} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
                f"\n{self.log_tail()}"
            )


@dataclass
class RedisServer:
    process: subprocess.Popen[bytes]
    root: Path
    port: int

    @classmethod
    def start(cls, binary: Path, timeout: float = 20.0) -> RedisServer:
        root = Path(tempfile.mkdtemp(prefix="modelyard-redis-"))
        port = free_port()
        command: Sequence[str] = [
            str(binary),
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(root),
            "--daemonize", "no",
            "--logfile", str(root / "server.log"),
        ]  # fmt: skip
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        server = cls(process, root, port)
        deadline = time.monotonic() + timeout
        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1)
        try:
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"redis-server exited with {process.returncode}")
                try:
                    if client.ping():
                        return server
                except redis.ConnectionError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"redis-server not answering after {timeout}s")
                time.sleep(0.05)
        except BaseException:
            server.stop()
            raise
        finally:
            client.close()

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def stop(self) -> None:
        try:
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(10)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(5)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def _unprivileged_account() -> str:
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise ServiceUnavailable("no unprivileged account to run PostgreSQL as (running as root)")


def _major(version: str) -> float:
    try:
        return float(version)
    except ValueError:
        return -1.0
