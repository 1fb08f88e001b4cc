"""What a gateway keeps of its Responses API answers, read straight from its SQLite database,
and the helpers both test modules use to make projects and keys through the admin API."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import openai
import sqlalchemy as sa

from modelyard.db.schema import stored_responses
from tests.support.gateway import GatewayProcess
from tests.support.ledger_rows import ledger_rows


def stored_rows(gateway: GatewayProcess, response_id: str | None = None) -> list[dict[str, Any]]:
    engine = sa.create_engine(f"sqlite:///{gateway.data_dir / 'modelyard.db'}")
    try:
        with engine.connect() as connection:
            query = sa.select(stored_responses)
            if response_id is not None:
                query = query.where(stored_responses.c.id == response_id)
            return [dict(row._mapping) for row in connection.execute(query)]
    finally:
        engine.dispose()


def project_with_key(gateway: GatewayProcess, prefix: str, **settings: Any) -> tuple[str, str]:
    """A new project (a unique name from `prefix`) and a developer key of it."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    made = gateway.admin("POST", "/admin/projects", {"id": name, **settings})
    assert made.status_code == 201, made.text
    minted = gateway.admin("POST", f"/admin/projects/{name}/keys", {"name": "k"})
    assert minted.status_code == 201, minted.text
    key: str = minted.json()["key"]
    return name, key


def sdk(gateway: GatewayProcess, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{gateway.base_url}/v1", api_key=key or gateway.admin_key, max_retries=0
    )


def post(gateway: GatewayProcess, key: str | None, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        f"{gateway.base_url}/v1/responses",
        json=body,
        headers={"authorization": f"Bearer {key or gateway.admin_key}"},
        timeout=60,
    )


def billed(gateway: GatewayProcess, project: str, request_id: str) -> dict[str, Any]:
    """The one usage record of a request, once the ledger's writer has committed it."""
    deadline = time.monotonic() + 15
    while True:
        rows = [r for r in ledger_rows(gateway, project) if r["request_id"] == request_id]
        if rows:
            assert len(rows) == 1
            return rows[0]
        assert time.monotonic() < deadline, f"no usage record for {request_id}"
        time.sleep(0.05)
