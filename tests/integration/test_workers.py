"""`modelyard serve --workers N`: one port served by N worker processes that share limits and
revocations through Redis and the database; a killed worker is replaced in its slot and settles
what it left open; SIGTERM stops them all.

Which worker answered a request is read from /proc (the process holding the server end of its
connection), so every request here goes on a connection of its own, as separate clients' would.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelyard.testing.fake_upstream import FakeUpstream, JsonReply, completion_body
from modelyard.workers import MAX_EARLY_EXITS
from tests.integration.worker_processes import children, connection_holder, running, worker_pids
from tests.remote.fixtures import remote_catalog
from tests.scaleout.counters_view import open_reservations
from tests.support.gateway import GatewayProcess
from tests.support.ports import free_port
from tests.support.services import RedisServer

REPLICA = "workers-test"
# A Redis database of its own on the session's server, away from other tests' counters.
REDIS_DB = 3
CHAT: dict[str, Any] = {
    "model": "acme-small",
    "messages": [{"role": "user", "content": "Which worker are you?"}],
    "max_tokens": 8,
}


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    # The pid of the worker that held the connection; None if it could not be told.
    worker: int | None


def ask(
    gateway: GatewayProcess, method: str, path: str, key: str | None, body: Any = None
) -> Answer:
    """One request on a new connection, and which worker answered it."""
    assert gateway.process is not None
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=30)
    try:
        connection.connect()
        assert connection.sock is not None
        client_port = connection.sock.getsockname()[1]
        headers = {"Content-Type": "application/json"}
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        payload = json.dumps(body) if body is not None else None
        connection.request(method, path, body=payload, headers=headers)
        response = connection.getresponse()
        raw = response.read()
        # Asked while the connection is kept alive, so its server end is still held.
        worker = connection_holder(gateway.port, client_port, worker_pids(gateway.process.pid))
        return Answer(response.status, json.loads(raw) if raw else None, worker)
    finally:
        connection.close()


def answers_from_every_worker(
    gateway: GatewayProcess,
    request: Callable[[], Answer],
    until: Callable[[Answer], bool] = lambda answer: True,
    per_worker: int = 1,
    timeout_s: float = 20.0,
) -> list[Answer]:
    """Ask until each current worker has given `per_worker` answers meeting `until`; every
    answer, in order. The kernel decides which worker accepts a connection, so this may take a
    few more requests than workers."""
    assert gateway.process is not None
    workers = worker_pids(gateway.process.pid)
    answers: list[Answer] = []
    deadline = time.monotonic() + timeout_s
    while True:
        met = Counter(a.worker for a in answers if until(a))
        if all(met[pid] >= per_worker for pid in workers):
            return answers
        assert time.monotonic() < deadline, f"not every worker of {workers} answered: {answers}"
        answers.append(request())


def admin(gateway: GatewayProcess, method: str, path: str, body: Any = None) -> Answer:
    return ask(gateway, method, path, gateway.admin_key, body)


def new_key(
    gateway: GatewayProcess, project: str, limits: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A project with one key (its id and secret) made through one connection, so one worker,
    returned once every worker knows the key and its limits (the others learn of them from the
    database within a config poll)."""
    headers = {"Authorization": f"Bearer {gateway.admin_key}"}
    with httpx.Client(base_url=gateway.base_url, headers=headers, timeout=30) as session:
        assert session.post("/admin/projects", json={"id": project}).status_code == 201
        made = session.post(f"/admin/projects/{project}/keys", json={"name": "k"})
        assert made.status_code == 201, made.text
        key: dict[str, Any] = made.json()
        path = f"/admin/projects/{project}/keys/{key['id']}/limits"
        seen = session.get(path) if limits is None else session.put(path, json=limits)
        assert seen.status_code == 200, seen.text
    answers_from_every_worker(
        gateway, lambda: admin(gateway, "GET", path), until=lambda a: a.body == seen.json()
    )
    return key


def two_workers(root: Path, upstream_url: str, redis_url: str, replica: str) -> GatewayProcess:
    catalog = remote_catalog(root / "catalog.yaml", upstream_url)
    return GatewayProcess(
        root / "data",
        env={
            "ACME_KEY": "sk-workers-upstream",
            "MODELYARD_REDIS_URL": redis_url,
            "MODELYARD_REPLICA_ID": replica,
        },
        args=("--catalog", str(catalog), "--workers", "2"),
    )


def start_workers(root: Path, upstream_url: str, redis_url: str, replica: str) -> GatewayProcess:
    gateway = two_workers(root, upstream_url, redis_url, replica).start()
    try:
        # /readyz answered by one worker; both are serving once each has answered it.
        answers_from_every_worker(
            gateway, lambda: ask(gateway, "GET", "/readyz", None), until=lambda a: a.status == 200
        )
    except BaseException:
        gateway.stop()
        raise
    return gateway


@pytest.fixture(scope="module")
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url(REDIS_DB)


@pytest.fixture(scope="module")
def workers(
    tmp_path_factory: pytest.TempPathFactory, upstream_server: FakeUpstream, redis_url: str
) -> Iterator[GatewayProcess]:
    gateway = start_workers(
        tmp_path_factory.mktemp("workers"), upstream_server.base_url, redis_url, REPLICA
    )
    yield gateway
    gateway.stop()


def test_more_than_one_worker_without_redis_refuses_to_start(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    result = subprocess.run(
        [sys.executable, "-m", "modelyard", "serve", "--workers", "2", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, "MODELYARD_ADMIN_KEY": "test-admin-key-0123456789"},
    )
    assert result.returncode == 2
    assert (
        "--workers 2 needs shared rate-limit and budget counters: set MODELYARD_REDIS_URL"
        in result.stderr
    )
    assert "Traceback" not in result.stderr + result.stdout


def test_a_rate_limit_holds_across_workers(workers: GatewayProcess, upstream: FakeUpstream) -> None:
    key = new_key(workers, "workers-rpm", {"requests_per_minute": 10})

    def chat(_: int) -> Answer:
        return ask(workers, "POST", "/v1/chat/completions", key["key"], CHAT)

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(chat, range(30)))
    assert Counter(a.status for a in answers) == {200: 10, 429: 20}
    # With counters of their own, two workers that each answered some of the 30 would admit
    # up to 10 each: exactly 10 in all means they counted together.
    assert workers.process is not None
    served = Counter(a.worker for a in answers)
    assert set(served) == worker_pids(workers.process.pid), served
    assert len(upstream.requests) == 10


def test_a_revoked_key_is_refused_by_every_worker_within_two_seconds(
    workers: GatewayProcess, upstream: FakeUpstream
) -> None:
    key = new_key(workers, "workers-revoke")

    def chat() -> Answer:
        return ask(workers, "POST", "/v1/chat/completions", key["key"], CHAT)

    before = answers_from_every_worker(workers, chat)
    assert {a.status for a in before} == {200}
    path = f"/admin/projects/workers-revoke/keys/{key['id']}/revoke"
    assert admin(workers, "POST", path).status == 200
    time.sleep(2.0)
    after = answers_from_every_worker(workers, chat, per_worker=3)
    assert [a.status for a in after] == [401] * len(after), after


def test_a_route_created_through_one_worker_is_served_by_every_worker(
    workers: GatewayProcess, upstream: FakeUpstream
) -> None:
    body = {"candidates": [{"deployment": "acme-large-eu"}, {"deployment": "acme-small-eu"}]}
    assert admin(workers, "PUT", "/admin/routes/workers-route", body).status == 200

    def chat() -> Answer:
        return ask(
            workers,
            "POST",
            "/v1/chat/completions",
            workers.admin_key,
            {**CHAT, "model": "workers-route"},
        )

    # The worker that took the change serves the route at once, the other within a poll.
    answers = answers_from_every_worker(
        workers, chat, until=lambda a: a.status == 200 and a.body["model"] == "acme-large"
    )
    assert answers[-1].status == 200
    assert admin(workers, "DELETE", "/admin/routes/workers-route").status == 200
    time.sleep(2.0)
    after = answers_from_every_worker(workers, chat, per_worker=2)
    assert {a.status for a in after} == {404}, after


def test_a_killed_worker_is_replaced_and_settles_what_it_left_open(
    workers: GatewayProcess, upstream: FakeUpstream, redis_url: str
) -> None:
    assert workers.process is not None
    key = new_key(workers, "workers-kill")
    before = worker_pids(workers.process.pid)
    upstream.enqueue(JsonReply(completion_body(), delay_s=8.0))
    connection = http.client.HTTPConnection("127.0.0.1", workers.port, timeout=30)
    connection.connect()
    assert connection.sock is not None
    client_port = connection.sock.getsockname()[1]
    outcome: list[BaseException | int] = []

    def slow_chat() -> None:
        headers = {"Authorization": f"Bearer {key['key']}", "Content-Type": "application/json"}
        try:
            connection.request("POST", "/v1/chat/completions", json.dumps(CHAT), headers)
            outcome.append(connection.getresponse().status)
        except (OSError, http.client.HTTPException) as exc:
            outcome.append(exc)

    caller = threading.Thread(target=slow_chat)
    caller.start()
    wait_for(lambda: len(upstream.requests) == 1, "the slow request to reach the upstream")
    victim = connection_holder(workers.port, client_port, before)
    assert victim is not None
    # Its reservation is open, under the replica id of the victim's slot.
    slots = {f"{REPLICA}/w{i}": open_reservations(redis_url, f"{REPLICA}/w{i}") for i in (0, 1)}
    (slot,) = [owner for owner, open_ in slots.items() if open_]
    (reservation,) = slots[slot]

    os.kill(victim, signal.SIGKILL)
    caller.join(30)
    connection.close()
    assert outcome and isinstance(outcome[0], BaseException), outcome
    parent = workers.process.pid
    wait_for(
        lambda: len(now := worker_pids(parent)) == 2 and victim not in now, "a replacement worker"
    )
    # The replacement, in the same slot, settles the reservation at start and bills it.
    wait_for(lambda: not open_reservations(redis_url, slot), f"{slot} to settle what it left open")
    with sqlite3.connect(workers.data_dir / "modelyard.db") as ledger:
        rows = ledger.execute(
            "SELECT outcome FROM usage_records WHERE request_id = ?", (reservation.reservation_id,)
        ).fetchall()
    assert rows == [("interrupted",)]
    served = answers_from_every_worker(
        workers, lambda: ask(workers, "POST", "/v1/chat/completions", key["key"], CHAT)
    )
    assert {a.status for a in served} == {200}


def test_sigterm_lets_requests_finish_stops_every_worker_and_exits_zero(
    tmp_path: Path, upstream: FakeUpstream, redis_url: str
) -> None:
    gateway = start_workers(tmp_path, upstream.base_url, redis_url, "workers-stop")
    assert gateway.process is not None
    try:
        started = children(gateway.process.pid)
        assert len(worker_pids(gateway.process.pid)) == 2
        upstream.enqueue(JsonReply(completion_body(), delay_s=1.5))
        with ThreadPoolExecutor(1) as pool:
            in_flight = pool.submit(
                ask, gateway, "POST", "/v1/chat/completions", gateway.admin_key, CHAT
            )
            wait_for(lambda: len(upstream.requests) == 1, "a request in flight")
            gateway.process.send_signal(signal.SIGTERM)
            assert in_flight.result(30).status == 200
        assert gateway.process.wait(40) == 0
    finally:
        gateway.stop()
    wait_for(lambda: not any(running(pid) for pid in started), "its children to be gone")
    assert "did not stop" not in gateway.log()
    assert gateway.log().count("Application shutdown complete") == 2


def test_a_worker_that_keeps_failing_at_start_makes_the_supervisor_give_up(
    tmp_path: Path, upstream_server: FakeUpstream
) -> None:
    # Workers fail at start (their lifespan cannot reach the counters), the supervisor does not.
    nothing_there = f"redis://127.0.0.1:{free_port()}/0"
    gateway = two_workers(tmp_path, upstream_server.base_url, nothing_there, "workers-fail")
    began = time.monotonic()
    gateway.start(wait_ready=False)
    assert gateway.process is not None
    try:
        assert gateway.process.wait(90) == 1
    finally:
        gateway.stop()
    log = gateway.log()
    assert f"{MAX_EARLY_EXITS} times in a row (last exit code 3); gave up" in log
    assert log.count(" started (pid ") <= 2 * MAX_EARLY_EXITS
    # Backed off 1, 2 and 4 s before the later starts instead of restarting at once.
    assert time.monotonic() - began >= 7.0
    assert "Traceback" not in log.split("gave up")[-1]


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
