"""What the load clients send and what they keep of each answer: status, the gateway's request
id (the ledger's key), the error code, and how long the client waited."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx

from tests.support.gateway import GatewayProcess

CLIENT_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Reply:
    gateway: str
    status: int
    # "" when the request never got an answer (transport error or client timeout).
    request_id: str
    code: str
    retry_after_s: float
    elapsed_s: float
    # When the client sent it (time.monotonic()).
    sent_at: float
    transport_error: str = ""


# Far shorter than the gateway's keep-alive (65 s): a connection the client takes from its pool
# is never one the server is closing at that moment (with the server's old 5 s, equal to httpx's
# default expiry, that race made a rare ReadError).
CLIENT_KEEPALIVE_S = 2.0


def async_client(connections: int) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=CLIENT_TIMEOUT_S,
        limits=httpx.Limits(
            max_connections=connections,
            max_keepalive_connections=connections,
            keepalive_expiry=CLIENT_KEEPALIVE_S,
        ),
    )


async def post_chat(
    client: httpx.AsyncClient, gateway: GatewayProcess, secret: str, body: dict[str, Any]
) -> Reply:
    sent_at = time.monotonic()
    try:
        response = await client.post(
            f"{gateway.base_url}/v1/chat/completions",
            json=body,
            headers={"authorization": f"Bearer {secret}"},
        )
    except httpx.HTTPError as error:
        elapsed = time.monotonic() - sent_at
        return Reply(gateway.base_url, 0, "", "", 0.0, elapsed, sent_at, type(error).__name__)
    elapsed = time.monotonic() - sent_at
    code = ""
    if response.status_code >= 400:
        try:
            code = str(response.json()["error"]["code"])
        except (ValueError, KeyError, TypeError):
            code = "unparsed"
    return Reply(
        gateway.base_url,
        response.status_code,
        response.headers.get("x-request-id", ""),
        code,
        float(response.headers.get("retry-after", "0")),
        elapsed,
        sent_at,
    )
