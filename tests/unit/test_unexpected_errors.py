"""An exception no handler takes: a 500 in the OpenAI shape with the request id, logged by class
and code location only, never by its text (which can quote the request)."""

from __future__ import annotations

import logging
import secrets

import httpx
import orjson
import pytest
from starlette.types import Receive, Scope, Send

from modelyard.api.middleware import RequestTelemetryMiddleware, UnexpectedErrorMiddleware


@pytest.fixture()
def anyio_backend() -> str:
    return "asyncio"


def failing_app(text: str) -> object:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise ValueError(f"input should be a valid number, got {text!r}")

    return RequestTelemetryMiddleware(UnexpectedErrorMiddleware(app))


@pytest.mark.anyio
async def test_an_unhandled_exception_is_a_500_logged_without_its_text(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    canary = "PROMPT-" + secrets.token_hex(8)
    transport = httpx.ASGITransport(app=failing_app(canary))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        reply = await client.post("/v1/chat/completions", json={"messages": canary})
    assert reply.status_code == 500
    error = orjson.loads(reply.content)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == "internal_error" and canary not in reply.text
    request_id = reply.headers["x-request-id"]
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "unhandled ValueError" in logged and request_id in logged
    assert "test_unexpected_errors.py" in logged  # where it was raised
    assert canary not in logged
    assert all(record.exc_info is None for record in caplog.records)  # no traceback text
