"""The stored-responses store on both databases Modelyard runs on (a SQLite file and a real
PostgreSQL): scoped to its project, deleted once, expiring at the shorter of the project's
retention and the gateway's limit, invisible once expired, purged after."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from modelyard.db.engine import open_database
from modelyard.db.schema import projects, stored_responses
from modelyard.serving.stored_responses import StoredResponse, StoredResponses

pytestmark = pytest.mark.anyio

CONVERSATION = [
    {"role": "user", "content": "I am Ada."},
    {"role": "assistant", "content": "Hello Ada."},
]


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'modelyard.db'}"
    else:
        server = request.getfixturevalue("postgres_server")
        url = server.create_database(f"responses_{uuid.uuid4().hex[:12]}")
    database = open_database(url)
    with database.begin() as connection:
        for project in ("mine", "theirs"):
            connection.execute(
                sa.insert(projects).values(
                    id=project, description="", created_at=datetime.now(UTC), created_by="test"
                )
            )
    yield database
    database.dispose()


def stored(response_id: str, project: str = "mine", retention_days: int = 7) -> StoredResponse:
    return StoredResponse(
        id=response_id,
        project_id=project,
        response={"id": response_id, "object": "response", "output": [], "text": "é"},
        input_items=[{"id": "msg_1", "type": "message", "role": "user", "content": []}],
        conversation=CONVERSATION,
        retention_days=retention_days,
    )


async def test_a_stored_response_reads_back_only_in_its_project(engine: Engine) -> None:
    store = StoredResponses(engine, ttl_days=30)
    await store.put(stored("resp_a"))
    assert await store.response("mine", "resp_a") == stored("resp_a").response
    assert await store.conversation("mine", "resp_a") == CONVERSATION
    assert await store.input_items("mine", "resp_a") == stored("resp_a").input_items
    assert await store.response("theirs", "resp_a") is None
    assert await store.conversation("theirs", "resp_a") is None
    assert await store.delete("theirs", "resp_a") is False
    assert await store.delete("mine", "resp_a") is True
    assert await store.delete("mine", "resp_a") is False
    assert await store.response("mine", "resp_a") is None


async def test_expiry_is_the_shorter_of_retention_and_the_gateways_limit(engine: Engine) -> None:
    await StoredResponses(engine, ttl_days=30).put(stored("resp_short", retention_days=2))
    await StoredResponses(engine, ttl_days=1).put(stored("resp_capped", retention_days=7))
    with engine.connect() as connection:
        kept = {
            row.id: row.expires_at - row.created_at
            for row in connection.execute(sa.select(stored_responses))
        }
    assert kept == {"resp_short": timedelta(days=2), "resp_capped": timedelta(days=1)}


async def test_expired_responses_are_invisible_at_once_and_purged(engine: Engine) -> None:
    store = StoredResponses(engine, ttl_days=0.5 / 86400)
    await store.put(stored("resp_old"))
    await StoredResponses(engine, ttl_days=30).put(stored("resp_new"))
    await anyio.sleep(0.6)
    assert await store.response("mine", "resp_old") is None
    assert await store.conversation("mine", "resp_old") is None
    assert await store.delete("mine", "resp_old") is False
    assert store.purge_expired() == 1
    with engine.connect() as connection:
        left = connection.execute(sa.select(stored_responses.c.id)).scalars().all()
    assert left == ["resp_new"]


async def test_documents_are_stored_as_compact_json(engine: Engine) -> None:
    await StoredResponses(engine, ttl_days=30).put(stored("resp_c"))
    with engine.connect() as connection:
        raw = connection.execute(sa.select(stored_responses.c.conversation)).scalar_one()
    assert bytes(raw) == b'[{"role":"user","content":"I am Ada."},' + (
        b'{"role":"assistant","content":"Hello Ada."}]'
    )
