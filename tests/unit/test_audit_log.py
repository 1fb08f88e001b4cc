"""The audit log on real SQLite files: appends chain, tampering is found, no secret is kept."""

from __future__ import annotations

import multiprocessing
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert, text

from modelyard.audit.cli import verify_command
from modelyard.audit.events import (
    GENESIS_HASH,
    REASON_LIMIT,
    AuditEvent,
    chained_record,
    record_hash,
    scrub,
)
from modelyard.audit.log import AuditLog
from modelyard.db.engine import open_database
from modelyard.db.schema import audit_events, projects


@pytest.fixture()
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/a.db"


@pytest.fixture()
def engine(db_url: str) -> Iterator[Engine]:
    engine = open_database(db_url)
    yield engine
    engine.dispose()


@pytest.fixture()
def audit(engine: Engine) -> AuditLog:
    return AuditLog(engine)


def denial(n: int, project_id: str | None = "p1") -> AuditEvent:
    return AuditEvent(
        actor=f"user-{n % 3}",
        action="models.use",
        object=f"model:m{n}",
        outcome="denied",
        reason="role viewer lacks models.use",
        project_id=project_id,
        client_ip="10.0.0.1",
        request_id=f"req-{n}",
    )


def fill(audit: AuditLog, count: int) -> list[str]:
    for n in range(count):
        audit.append(denial(n))
    return [row["hash"] for row in audit.read(limit=1000)]


def sql(engine: Engine, statement: str, **params: object) -> None:
    with engine.begin() as connection:
        connection.execute(text(statement), params)


def seqs(engine: Engine) -> list[int]:
    with engine.connect() as connection:
        return list(connection.execute(text("SELECT seq FROM audit_events ORDER BY seq")).scalars())


def test_appends_form_a_chain_that_verifies(audit: AuditLog) -> None:
    assert audit.verify().ok and audit.verify().records == 0
    assert [audit.append(denial(n)) for n in range(20)] == list(range(1, 21))
    rows = audit.read(limit=100)
    assert rows[0]["prev_hash"] == GENESIS_HASH
    assert all(later["prev_hash"] == earlier["hash"] for earlier, later in pairwise(rows))
    report = audit.verify(expected_head=rows[-1]["hash"])
    assert (report.ok, report.records, report.first_bad_seq, report.problem) == (
        True,
        20,
        None,
        None,
    )
    assert report.head_hash == rows[-1]["hash"]


def test_the_hash_is_recomputable_from_what_read_returns(audit: AuditLog) -> None:
    at = datetime(2025, 3, 1, 12, 0, 0, 7, tzinfo=UTC)
    audit.append(denial(1), at=at)
    (row,) = audit.read()
    assert row["at"] == at
    assert record_hash(row) == row["hash"]


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("reason", "role owner"),
        ("actor", "mallory"),
        ("action", "keys.read"),
        ("object", "model:other"),
        ("outcome", "allowed"),
        ("project_id", None),
        ("client_ip", "10.9.9.9"),
        ("request_id", "req-x"),
        ("at", "2020-01-01 00:00:00.000000"),
        ("prev_hash", "0" * 64),
        ("hash", "f" * 64),
    ],
)
def test_a_modified_field_is_found_at_its_record(
    audit: AuditLog, engine: Engine, column: str, value: object
) -> None:
    fill(audit, 10)
    sql(engine, f"UPDATE audit_events SET {column} = :value WHERE seq = 4", value=value)
    report = audit.verify()
    assert not report.ok and report.first_bad_seq == 4
    assert report.records == 4 and report.head_hash != GENESIS_HASH


def test_a_time_that_is_no_time_is_reported_not_raised(audit: AuditLog, engine: Engine) -> None:
    fill(audit, 5)
    sql(engine, "UPDATE audit_events SET at = 'yesterday' WHERE seq = 2")
    report = audit.verify()
    assert report.first_bad_seq == 2 and "cannot be read" in (report.problem or "")


def test_a_deleted_middle_record_is_found(audit: AuditLog, engine: Engine) -> None:
    fill(audit, 10)
    sql(engine, "DELETE FROM audit_events WHERE seq = 6")
    report = audit.verify()
    assert not report.ok and report.first_bad_seq == 6
    assert "missing" in (report.problem or "")


def test_a_deletion_hidden_by_renumbering_is_found(audit: AuditLog, engine: Engine) -> None:
    fill(audit, 10)
    sql(engine, "DELETE FROM audit_events WHERE seq = 6")
    sql(engine, "UPDATE audit_events SET seq = seq - 1 WHERE seq > 6")
    assert audit.verify().first_bad_seq == 6


def test_a_removed_tail_is_found_only_against_a_kept_head(audit: AuditLog, engine: Engine) -> None:
    head = fill(audit, 10)[-1]
    sql(engine, "DELETE FROM audit_events WHERE seq = 10")
    assert audit.verify().ok  # nothing inside the table betrays a shorter chain
    report = audit.verify(expected_head=head)
    assert not report.ok and report.first_bad_seq == 10
    assert "removed from its end" in (report.problem or "")


def test_a_kept_head_stays_valid_as_the_log_grows(audit: AuditLog) -> None:
    head = fill(audit, 5)[-1]
    fill(audit, 5)
    assert audit.verify(expected_head=head).ok


def test_swapped_records_are_found_at_the_first_one(audit: AuditLog, engine: Engine) -> None:
    fill(audit, 10)
    sql(engine, "UPDATE audit_events SET seq = -1 WHERE seq = 3")
    sql(engine, "UPDATE audit_events SET seq = 3 WHERE seq = 7")
    sql(engine, "UPDATE audit_events SET seq = 7 WHERE seq = -1")
    report = audit.verify()
    assert report.first_bad_seq == 3 and "prev_hash" in (report.problem or "")


def test_a_forged_record_with_a_made_up_hash_is_found(audit: AuditLog, engine: Engine) -> None:
    head = fill(audit, 5)[-1]
    forged = chained_record(denial(99), seq=6, at=datetime.now(UTC), prev_hash=head)
    with engine.begin() as connection:
        connection.execute(insert(audit_events), [{**forged, "hash": secrets.token_hex(32)}])
    assert audit.verify().first_bad_seq == 6


def test_a_forged_record_before_the_first_is_found(audit: AuditLog, engine: Engine) -> None:
    fill(audit, 5)
    forged = chained_record(denial(99), seq=0, at=datetime.now(UTC), prev_hash=GENESIS_HASH)
    with engine.begin() as connection:
        connection.execute(insert(audit_events), [forged])
    report = audit.verify()
    assert report.first_bad_seq == 0 and "out of sequence" in (report.problem or "")


def test_a_well_formed_record_slipped_into_the_middle_is_found(
    audit: AuditLog, engine: Engine
) -> None:
    hashes = fill(audit, 10)
    sql(engine, "UPDATE audit_events SET seq = -seq WHERE seq > 5")
    sql(engine, "UPDATE audit_events SET seq = 1 - seq WHERE seq < 0")
    # Correctly hashed by the public algorithm; the record after it no longer links.
    forged = chained_record(denial(99), seq=6, at=datetime.now(UTC), prev_hash=hashes[4])
    with engine.begin() as connection:
        connection.execute(insert(audit_events), [forged])
    assert seqs(engine) == list(range(1, 12))
    report = audit.verify()
    assert report.first_bad_seq == 7 and "prev_hash" in (report.problem or "")


def test_append_in_rolls_back_with_the_callers_transaction(audit: AuditLog, engine: Engine) -> None:
    audit.append(denial(0))
    project = {"id": "p1", "created_at": datetime.now(UTC), "created_by": "admin"}
    with pytest.raises(RuntimeError), engine.begin() as connection:
        connection.execute(insert(projects), [project])
        assert audit.append_in(connection, denial(1)) == 2
        raise RuntimeError("the mutation failed after its audit record was written")
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM projects")).scalar() == 0
    assert seqs(engine) == [1]
    with engine.begin() as connection:
        connection.execute(insert(projects), [project])
        assert audit.append_in(connection, denial(2)) == 2
    assert seqs(engine) == [1, 2] and audit.verify().ok


def _append_from_thread(audit: AuditLog, engine: Engine, worker: int, count: int) -> None:
    for n in range(count):
        if n % 2:
            audit.append(denial(worker * 1000 + n))
        else:
            with engine.begin() as connection:
                audit.append_in(connection, denial(worker * 1000 + n))


@pytest.mark.parametrize("shared", [True, False], ids=["one-log", "a-log-per-thread"])
def test_concurrent_appends_keep_one_gapless_chain(engine: Engine, shared: bool) -> None:
    one_log = AuditLog(engine)
    # A log per thread has its own thread lock: only the database serializes them.
    threads = [
        threading.Thread(
            target=_append_from_thread,
            args=(one_log if shared else AuditLog(engine), engine, worker, 200),
        )
        for worker in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seqs(engine) == list(range(1, 1601))
    report = one_log.verify()
    assert report.ok and report.records == 1600


def _append_from_process(db_url: str, worker: int, count: int) -> None:
    engine = open_database(db_url)
    audit = AuditLog(engine)
    _append_from_thread(audit, engine, worker, count)
    engine.dispose()


def test_appends_from_several_processes_keep_one_chain(engine: Engine, db_url: str) -> None:
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_append_from_process, args=(db_url, worker, 100))
        for worker in range(4)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    assert seqs(engine) == list(range(1, 401))
    assert AuditLog(engine).verify().ok


def test_a_stamped_event_keeps_the_time_it_happened(audit: AuditLog, engine: Engine) -> None:
    times = iter([datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 1, 2, tzinfo=UTC)])
    clocked = AuditLog(engine, clock=lambda: next(times))
    first, second = clocked.stamped(denial(0)), clocked.stamped(denial(1))
    assert clocked.append_batch([second, first]) == [1, 2]
    assert [row["at"].day for row in audit.read()] == [2, 1]
    assert audit.verify().ok


ADMIN_KEY = "myd-admin-" + secrets.token_urlsafe(32)
PROJECT_KEY = "myd-abcdefgh1234-" + secrets.token_urlsafe(32)
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9." + secrets.token_urlsafe(64)
PROVIDER_KEY = "sk-proj-" + secrets.token_urlsafe(30)
# Recognisable on their own; any other credential only behind "Bearer".
SHAPED = [ADMIN_KEY, PROJECT_KEY, JWT, PROVIDER_KEY]
OPAQUE = "opaque-" + secrets.token_hex(16)


@pytest.mark.parametrize(
    ("raw", "scrubbed"),
    [
        (f"key {ADMIN_KEY} refused", "key myd-admin-[redacted] refused"),
        (f"key={PROJECT_KEY};", "key=myd-abcdefgh1234-[redacted];"),
        (f"token {JWT}", "token [redacted]"),
        (f"Authorization: Bearer {OPAQUE}", "Authorization: Bearer [redacted]"),
        (f"authorization: bearer\t{PROJECT_KEY}", "authorization: bearer\t[redacted]"),
        (f"upstream key {PROVIDER_KEY}", "upstream key [redacted]"),
        ("x_myd-notakeybutlooksso", "x_myd-[redacted]"),
        # Hints and ordinary words are left alone.
        ("key myd-abcdefgh1234-… revoked", "key myd-abcdefgh1234-… revoked"),
        ("key myd-abcdefgh1234 revoked", "key myd-abcdefgh1234 revoked"),
        ("myd-abcdefgh12345", "myd-[redacted]"),
        ("admin key myd-admin-…", "admin key myd-admin-…"),
        ("disk-abcdefghijklmnopqrstuvwxyz full", "disk-abcdefghijklmnopqrstuvwxyz full"),
        ("role viewer lacks models.use", "role viewer lacks models.use"),
    ],
)
def test_scrub_removes_keys_tokens_and_bearer_values(raw: str, scrubbed: str) -> None:
    assert scrub(raw) == scrubbed
    assert scrub(scrubbed) == scrubbed


def test_no_planted_secret_reaches_the_database(audit: AuditLog, db_url: str) -> None:
    for secret in [*SHAPED, OPAQUE]:
        planted = f"Bearer {secret}" if secret == OPAQUE else f"{secret} / Bearer {secret}"
        audit.append(
            AuditEvent(
                actor=planted,
                action=planted[:60],
                object=planted,
                outcome="failed",
                reason=f"presented {planted} in 'Authorization: Bearer {secret}'",
                project_id=planted,
                client_ip=planted,
                request_id=planted,
            )
        )
    assert audit.verify().ok
    raw = sqlite3.connect(db_url.removeprefix("sqlite:///"))
    values = [str(value) for row in raw.execute("SELECT * FROM audit_events") for value in row]
    raw.close()
    dumped = "\n".join(values)
    assert dumped.count("[redacted]") >= 5 * 7
    for secret in [*SHAPED, OPAQUE]:
        assert secret[-20:] not in dumped


def test_long_and_unstorable_text_is_cut_to_its_column(audit: AuditLog) -> None:
    audit.append(
        AuditEvent(
            actor="a" * 500,
            action="b" * 100,
            object="c" * 500,
            outcome="failed",
            reason="d" * 10_000 + "\x00\ud800",
            request_id="e" * 100,
        )
    )
    (row,) = audit.read()
    assert len(row["actor"]) == 200 and row["actor"].endswith("…")
    assert (len(row["action"]), len(row["object"]), len(row["request_id"])) == (64, 300, 64)
    assert len(row["reason"]) == REASON_LIMIT
    audit.append(AuditEvent("a", "b", "c", "failed", "nul \x00 and lone \ud800"))
    assert audit.read(after_seq=1)[0]["reason"] == "nul \ufffd and lone ?"
    assert audit.verify().ok


def test_an_event_is_checked_when_it_is_made() -> None:
    with pytest.raises(ValueError, match="outcome"):
        AuditEvent("a", "b", "c", "maybe", "r")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="actor"):
        AuditEvent(None, "b", "c", "denied", "r")  # type: ignore[arg-type]


def test_read_filters_and_pages_oldest_first(audit: AuditLog) -> None:
    for n in range(30):
        audit.append(denial(n, project_id="p1" if n % 2 else "p2"))
    assert [row["seq"] for row in audit.read(limit=3)] == [1, 2, 3]
    assert [row["seq"] for row in audit.read(after_seq=27)] == [28, 29, 30]
    p1 = audit.read(project_id="p1", actor="user-0", limit=100)
    assert [row["seq"] for row in p1] == [4, 10, 16, 22, 28]
    assert audit.read(action="keys.manage") == []
    with pytest.raises(ValueError):
        audit.read(limit=0)


def test_verify_streams_a_large_log(audit: AuditLog, engine: Engine) -> None:
    count, prev_hash = 200_000, GENESIS_HASH
    start = datetime(2025, 1, 1, tzinfo=UTC)
    with engine.begin() as connection:
        for first in range(1, count + 1, 20_000):
            batch = []
            for seq in range(first, first + 20_000):
                event = denial(seq)
                record = chained_record(
                    event, seq=seq, at=start + timedelta(seconds=seq), prev_hash=prev_hash
                )
                batch.append(record)
                prev_hash = record["hash"]
            connection.execute(insert(audit_events), batch)
    report = audit.verify(expected_head=prev_hash)
    assert report.ok and report.records == count and report.head_hash == prev_hash
    sql(engine, "UPDATE audit_events SET reason = 'nothing happened' WHERE seq = 150001")
    assert audit.verify().first_bad_seq == 150_001


def test_verify_command_prints_one_line_verdict(
    audit: AuditLog, engine: Engine, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    head = fill(audit, 3)[-1]
    assert verify_command(db_url) == 0
    assert capsys.readouterr().out.startswith(f"audit log intact: 3 records; head 3:{head} ")
    sql(engine, "DELETE FROM audit_events WHERE seq = 2")
    assert verify_command(db_url) == 1
    assert capsys.readouterr().out.startswith("audit log TAMPERED at seq 2: ")


def test_a_wiped_or_truncated_log_is_caught_against_the_head_an_operator_kept(
    audit: AuditLog, engine: Engine, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    fill(audit, 5)
    assert verify_command(db_url) == 0
    kept = capsys.readouterr().out.split("head ", 1)[1].split(" ", 1)[0]
    assert kept.startswith("5:")
    sql(engine, "DELETE FROM audit_events WHERE seq = 5")  # truncated: the chain itself is intact
    assert verify_command(db_url) == 0
    capsys.readouterr()
    assert verify_command(db_url, kept) == 1
    assert "records were removed from its end" in capsys.readouterr().out
    sql(engine, "DELETE FROM audit_events")  # wiped
    assert verify_command(db_url, kept) == 1
    assert "or all of them" in capsys.readouterr().out


def wait_for(condition: Callable[[], bool], timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)
