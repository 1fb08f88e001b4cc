"""What every /admin route shares: its table entry, and how it runs a read or an idempotent
mutation off the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import orjson
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from modelyard.admin.idempotency import HEADER as IDEMPOTENCY_HEADER
from modelyard.admin.shapes import JsonObject
from modelyard.state import app_state

Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class AdminRoute:
    method: str
    path: str
    handler: Handler
    summary: str
    action: str
    body: type[BaseModel] | None = None
    status: int = 200


async def mutate(request: Request, act: Callable[[], JsonObject], status: int = 200) -> Response:
    return await mutate_answering(request, lambda: (status, act()))


async def mutate_answering(request: Request, act: Callable[[], tuple[int, JsonObject]]) -> Response:
    """`mutate` for a change whose status depends on what it found (201 made, 200 existed)."""
    state = app_state(request)
    principal = request.scope["state"]["principal"]
    body = await request.body()

    async def respond() -> tuple[int, bytes]:
        code, answer = await asyncio.to_thread(act)
        return code, orjson.dumps(answer)

    fingerprint = b"\n".join([request.method.encode(), request.url.path.encode(), body])
    # Replies are kept per credential, not per subject: one key never replays another's.
    credential = f"{principal.kind}:{principal.key_id or principal.subject}"
    code, payload, replayed = await state.idempotency.run(
        credential, request.headers.get(IDEMPOTENCY_HEADER), fingerprint, respond
    )
    headers = {"idempotent-replayed": "true"} if replayed else {}
    return Response(payload, status_code=code, media_type="application/json", headers=headers)


async def read(act: Callable[[], JsonObject]) -> Response:
    return Response(orjson.dumps(await asyncio.to_thread(act)), media_type="application/json")
