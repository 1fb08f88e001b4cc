"""The console's way to act: the gateway's own /admin and /v1 routes, called in-process with the
signed-in person's principal, so the console can do exactly what that person's credential may do
through the API, with the same validation, audit records, limits and usage records.

`call` collects the answer (JSON); `relay` streams it straight to the browser (the playground's
chat stream). Errors come back as the API renders them (status and OpenAI error shape).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import orjson
from starlette.requests import Request
from starlette.types import Message, Receive, Scope, Send

from modelyard.api.console.session import SignedIn
from modelyard.auth.principal import Principal
from modelyard.state import app_state

# What the in-process request keeps of the browser's: the connection, never its headers.
_KEPT_SCOPE = (
    "type", "asgi", "http_version", "scheme", "server", "client", "app", "extensions",
    "starlette.exception_handlers",
)  # fmt: skip


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def ok(self) -> bool:
        return self.status < 400

    def json(self) -> Any:
        return orjson.loads(self.body) if self.body else None

    @property
    def error_message(self) -> str:
        try:
            return str(self.json()["error"]["message"])
        except (KeyError, TypeError, orjson.JSONDecodeError):
            return f"The gateway answered {self.status}."


def principal_in(request: Request, who: SignedIn, project: str | None) -> Principal:
    """The person acting in `project` (None: their key's own project, or none)."""
    return app_state(request).authenticator.acting_as(who.principal, project)


def _scope(
    request: Request,
    principal: Principal,
    method: str,
    path: str,
    query: dict[str, Any] | None,
    body: bytes,
    accept: str,
) -> Scope:
    scope: Scope = {key: request.scope[key] for key in _KEPT_SCOPE if key in request.scope}
    query_string = urlencode({k: v for k, v in (query or {}).items() if v is not None}, doseq=True)
    scope.update(
        method=method,
        path=path,
        raw_path=path.encode(),
        root_path="",
        query_string=query_string.encode(),
        headers=[
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"accept", accept.encode()),
        ],
        state={**request.scope.get("state", {}), "principal": principal},
    )
    return scope


def _receive_once(body: bytes, then: Receive) -> Receive:
    """The body, then whatever the browser's connection says (its disconnect, above all)."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await then()

    return receive


async def call(
    request: Request,
    who: SignedIn,
    method: str,
    path: str,
    *,
    json: Any = None,
    query: dict[str, Any] | None = None,
    project: str | None = None,
) -> Answer:
    """`method path` as the signed-in person (acting in `project`), answered whole."""
    body = orjson.dumps(json) if json is not None else b""
    principal = principal_in(request, who, project)
    scope = _scope(request, principal, method, path, query, body, "application/json")
    status = 500
    headers: dict[str, str] = {}
    chunks: list[bytes] = []

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            headers.update(
                (name.decode("latin-1"), value.decode("latin-1"))
                for name, value in message.get("headers", [])
            )
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await request.app.router(scope, _receive_once(body, request.receive), send)
    return Answer(status, headers, b"".join(chunks))


class Relay:
    """An ASGI response that is the in-process route's own response, streamed as it comes."""

    def __init__(
        self,
        request: Request,
        principal: Principal,
        method: str,
        path: str,
        json: Any,
        extra_headers: dict[str, str] | None = None,
    ) -> None:
        self._body = orjson.dumps(json)
        self._inner = _scope(
            request, principal, method, path, None, self._body, "text/event-stream"
        )
        self._router = request.app.router
        self._extra = [(k.encode(), v.encode()) for k, v in (extra_headers or {}).items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *self._extra]}
            await send(message)

        await self._router(self._inner, _receive_once(self._body, receive), send_with_headers)


def relay(
    request: Request,
    who: SignedIn,
    method: str,
    path: str,
    json: Any,
    *,
    project: str | None = None,
    extra_headers: dict[str, str] | None = None,
) -> Relay:
    """`method path` as the signed-in person, its response streamed to the browser as is."""
    return Relay(request, principal_in(request, who, project), method, path, json, extra_headers)
