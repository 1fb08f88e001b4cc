"""Serving on N worker processes that share one listening socket (`modelyard serve --workers N`).

The parent is a supervisor and serves nothing. By the time it starts workers, the CLI has done
the one-time start-up work in it (admin key, server secret, migrations, default project), so
workers never race for them. It binds the sockets, then spawns N workers; worker `i` builds its
own app and serves on the inherited sockets as replica `<replica>/w<i>`.

Workers share no memory: like replicas on separate machines they share the database and the
Redis counters, so N > 1 requires Redis (in-process counters would let each admit the full limit).
Their metrics go to files under `<data dir>/metrics` (prometheus_client's multi-process mode), so
whichever worker answers `/metrics` shows the sums over all of them.
A worker that dies is started again in its slot, under the same replica id, and so settles the
reservations its predecessor left open (`app.reconcile_at_start`). One that dies within
`EARLY_EXIT_S` of starting is restarted after a back-off; after `MAX_EARLY_EXITS` such deaths in
a row the supervisor stops everything and exits 1 rather than restart for ever.

SIGTERM or SIGINT to the supervisor sends SIGTERM to every worker (uvicorn's graceful shutdown),
waits up to `STOP_TIMEOUT_S`, kills what is left and exits 0. Further signals change nothing:
`timeout` or a service manager may signal the whole process group as well as the supervisor. A
worker whose supervisor disappears stops itself, so none outlives it.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import TYPE_CHECKING

from modelyard.errors import StartupError
from modelyard.observability.metrics import mark_worker_gone, share_between_workers
from modelyard.settings import Settings

if TYPE_CHECKING:
    import uvicorn

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 30.0
EARLY_EXIT_S = 10.0
MAX_EARLY_EXITS = 5
BACKLOG = 2048  # uvicorn's default
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# Under the data directory: the workers' metric files, summed by whichever answers /metrics.
METRICS_DIR = "metrics"


def require_shared_counters(settings: Settings) -> None:
    if settings.workers > 1 and settings.redis_url is None:
        raise StartupError(
            f"--workers {settings.workers} needs shared rate-limit and budget counters: set "
            "MODELYARD_REDIS_URL (in-process counters would let each worker admit the full limit)"
        )


def worker_replica(settings: Settings, index: int) -> str:
    return f"{settings.replica()}/w{index}"


def serve_workers(settings: Settings, admin_digest: str) -> int:
    """Bind, then supervise `settings.workers` workers until stopped; the exit code."""
    from uvicorn.config import STARTUP_FAILURE

    try:
        sockets = bind_sockets(settings.host, settings.port)
    except StartupError as exc:
        print(f"modelyard: {exc}", file=sys.stderr, flush=True)
        # uvicorn's code for the same failure, so a port that is taken fails alike with one
        # worker or many.
        return STARTUP_FAILURE
    share_between_workers(settings.data_dir.resolve() / METRICS_DIR)
    try:
        return Supervisor(settings, admin_digest, sockets).run()
    finally:
        for sock in sockets:
            sock.close()


def bind_sockets(host: str, port: int) -> list[socket.socket]:
    """Listening sockets for host and port, bound as asyncio's `create_server` binds them for one
    process: one per address the host resolves to, IPv6 ones IPv6-only."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise StartupError(f"cannot listen on {where}: {exc}") from None
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _name, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            # Connections queue from now on, while the workers are still starting.
            sock.listen(BACKLOG)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise StartupError(f"cannot listen on {where}: {exc.strerror or exc}") from None
    return sockets


@dataclass
class _Slot:
    index: int
    process: BaseProcess | None = None
    started_at: float = 0.0
    # Deaths soon after start, in a row; the slot's next start waits until `restart_at`.
    early_exits: int = 0
    restart_at: float = 0.0
    last_exitcode: int | None = None


class Supervisor:
    def __init__(self, settings: Settings, admin_digest: str, sockets: list[socket.socket]):
        self._settings = settings
        self._admin_digest = admin_digest
        self._sockets = sockets
        self._slots = [_Slot(index) for index in range(settings.workers)]
        self._context = multiprocessing.get_context("spawn")
        self._signals = 0

    def run(self) -> int:
        """Keep N workers serving until a stop signal; 0 then, 1 when a slot kept failing."""
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        # A signal writes to the pipe, so waiting on worker sentinels wakes up for it too.
        previous_wakeup = signal.set_wakeup_fd(wake_w)
        previous = {sig: signal.signal(sig, self._note_signal) for sig in STOP_SIGNALS}
        try:
            failed = self._supervise(wake_r)
            self._stop_all(wake_r)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            signal.set_wakeup_fd(previous_wakeup)
            os.close(wake_r)
            os.close(wake_w)
        if failed is not None:
            print(
                f"modelyard: worker w{failed.index} stopped within {EARLY_EXIT_S:g} s of starting "
                f"{failed.early_exits} times in a row (last exit code {failed.last_exitcode}); "
                "gave up: see its log lines above",
                file=sys.stderr,
                flush=True,
            )
            return 1
        return 0

    def _supervise(self, wake_r: int) -> _Slot | None:
        """Start, watch and restart workers until a stop signal (None) or a slot gives up."""
        for slot in self._slots:
            self._start(slot)
        while not self._signals:
            now = time.monotonic()
            waiting = [s.restart_at for s in self._slots if s.process is None]
            timeout = max(0.0, min(waiting) - now) if waiting else None
            wait([wake_r, *self._sentinels()], timeout)
            _drain(wake_r)
            if self._signals:
                break
            for slot in self._slots:
                dead = slot.process is not None and not slot.process.is_alive()
                if dead and not self._note_exit(slot):
                    return slot
                if slot.process is None and slot.restart_at <= time.monotonic():
                    self._start(slot)
        return None

    def _start(self, slot: _Slot) -> None:
        process = self._context.Process(
            target=run_worker,
            args=(self._settings, self._admin_digest, slot.index, self._sockets),
            name=f"modelyard-w{slot.index}",
        )
        process.start()
        slot.process, slot.started_at = process, time.monotonic()
        log.info("worker w%d started (pid %s)", slot.index, process.pid)

    def _note_exit(self, slot: _Slot) -> bool:
        """Empty the slot of its dead worker and set when the next one starts; False when the
        slot has failed at start too often in a row to try again."""
        assert slot.process is not None
        process, slot.process = slot.process, None
        process.join()
        if process.pid is not None:
            mark_worker_gone(process.pid)
        slot.last_exitcode = process.exitcode
        lived_s = time.monotonic() - slot.started_at
        exited = (slot.index, process.pid, process.exitcode, lived_s)
        process.close()
        slot.early_exits = slot.early_exits + 1 if lived_s < EARLY_EXIT_S else 0
        if slot.early_exits >= MAX_EARLY_EXITS:
            log.error("worker w%d (pid %s) exited with code %s after %.1f s; giving up", *exited)
            return False
        # A first early death may be bad luck: restart at once; then after 1, 2, 4... seconds.
        backoff_s = 2.0 ** (slot.early_exits - 2) if slot.early_exits > 1 else 0.0
        slot.restart_at = time.monotonic() + backoff_s
        when = f"in {backoff_s:g} s" if backoff_s else "now"
        log.warning("worker w%d (pid %s) exited with code %s after %.1f s; next %s", *exited, when)
        return True

    def _stop_all(self, wake_r: int) -> None:
        running = [s.process for s in self._slots if s.process is not None]
        for process in running:
            if process.pid is not None and process.is_alive():
                # SIGTERM whatever the parent got: a SIGINT on top of the one a terminal's Ctrl+C
                # already sent the workers would make uvicorn drop connections at once.
                os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while (alive := [p for p in running if p.is_alive()]) and time.monotonic() < deadline:
            wait([wake_r, *(p.sentinel for p in alive)], deadline - time.monotonic())
            _drain(wake_r)
        for process in running:
            if process.is_alive():
                log.warning("%s (pid %s) did not stop; killing it", process.name, process.pid)
                process.kill()
            process.join()
            process.close()
        for slot in self._slots:
            slot.process = None

    def _sentinels(self) -> list[int]:
        return [s.process.sentinel for s in self._slots if s.process is not None]

    def _note_signal(self, signum: int, _frame: FrameType | None) -> None:
        if not self._signals:
            log.info("received %s; stopping the workers", signal.Signals(signum).name)
        self._signals += 1


def run_worker(
    settings: Settings, admin_digest: str, index: int, sockets: list[socket.socket]
) -> None:
    """One worker process: its own app, serving on the supervisor's sockets until SIGTERM."""
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE

    from modelyard.app import create_app
    from modelyard.http_server import server_config
    from modelyard.observability.logs import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    own = settings.model_copy(update={"replica_id": worker_replica(settings, index)})
    try:
        app = create_app(own, admin_digest=admin_digest)
    except StartupError as exc:
        print(f"modelyard: worker w{index}: {exc}", file=sys.stderr, flush=True)
        sys.exit(STARTUP_FAILURE)
    server = uvicorn.Server(server_config(app, own))
    _stop_when_parent_dies(server)
    # A terminal's Ctrl+C reaches the workers too: KeyboardInterrupt once uvicorn has stopped.
    with contextlib.suppress(KeyboardInterrupt):
        server.run(sockets=sockets)
    if not server.started:
        sys.exit(STARTUP_FAILURE)


def _stop_when_parent_dies(server: uvicorn.Server) -> None:
    parent = multiprocessing.parent_process()
    if parent is None:
        return
    sentinel = parent.sentinel

    def watch() -> None:
        wait([sentinel])
        log.warning("the supervisor is gone; stopping")
        server.should_exit = True

    threading.Thread(target=watch, name="supervisor-watch", daemon=True).start()


def _drain(fd: int) -> None:
    with contextlib.suppress(BlockingIOError):
        while os.read(fd, 512):
            pass
