"""Pure-ASGI middlewares, one job each.

- `RequestTelemetryMiddleware` gives every request an id (`x-request-id` on every response,
  errors included) that also names its completion, its usage record, its access-log line and
  its trace, and the `RequestTelemetry` its metrics and access-log line are made of
  (`observability/request_telemetry.py`); when traced, it starts the server span
  (`observability/tracing.py`), which the request's code reaches through `current_request`.
- `UnexpectedErrorMiddleware` turns an exception no handler took into a 500 in the shape of
  the request's surface (`api/errors.py`). It logs the exception's class, the request id and
  where in the code it was raised, never its text: exception texts can quote the request
  (pydantic's do), and zero retention means no prompt reaches a log. It also keeps the
  exception from the server, which would log its traceback, texts included.
- `BodyLimitMiddleware` refuses bodies over the limit with 413 without buffering them: at once
  when `Content-Length` says so, otherwise as soon as the streamed bytes pass the limit.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelyard.api.errors import error_response
from modelyard.errors import CLIENT_CLOSED_STATUS, BodyTooLarge, InternalError
from modelyard.observability.logs import origin
from modelyard.observability.request_telemetry import (
    RequestTelemetry,
    TelemetrySink,
    current_request,
)
from modelyard.observability.tracing import Tracing

log = logging.getLogger(__name__)
# Frames of an unexpected exception's origin that are logged (file, line, function only).
LOGGED_FRAMES = 4


def new_request_id() -> str:
    return os.urandom(12).hex()


class RequestTelemetryMiddleware:
    def __init__(
        self, app: ASGIApp, sinks: Sequence[TelemetrySink] = (), tracing: Tracing | None = None
    ) -> None:
        self.app = app
        self.sinks = tuple(sinks)
        # Starts each request's server span (its sink, in `sinks`, ends it); None: untraced.
        self.tracing = tracing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_request_id()
        telemetry = RequestTelemetry(request_id, scope["method"], self.sinks)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        state["telemetry"] = telemetry
        header = (b"x-request-id", request_id.encode("ascii"))
        status = 500  # what the client is told when the response never starts

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        token = current_request.set(telemetry)
        tracing = self.tracing
        if tracing is not None:
            tracing.start_request(telemetry, scope["headers"], scope["path"])
        try:
            await self.app(scope, receive, send_with_id)
        except asyncio.CancelledError:
            if status == 500:
                status = CLIENT_CLOSED_STATUS  # the client left before an answer began
            raise
        finally:
            current_request.reset(token)
            telemetry.http_route = route_template(scope)
            telemetry.http_finished(status)


def route_template(scope: Scope) -> str | None:
    """The matched route's path with its parameters named (`/v1/responses/{response_id}`), so
    that it names a bounded set; None when no route matched."""
    if "endpoint" not in scope:
        return None
    path: str = scope.get("path", "")
    for name, value in scope.get("path_params", {}).items():
        path = path.replace(str(value), "{" + name + "}", 1)
    return path


class UnexpectedErrorMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            where = origin(exc.__traceback__, LOGGED_FRAMES)
            log.error(
                "unhandled %s on %s %s (request %s) at %s",
                type(exc).__name__,
                scope.get("method"),
                scope.get("path"),
                scope.get("state", {}).get("request_id"),
                where,
            )
            if started:
                return  # the response is under way; it ends here, and the connection with it
            error = InternalError(
                "The gateway hit an internal error; the request id identifies it in the logs."
            )
            await error_response(error, scope)(scope, receive, send)


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_body_bytes
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await self._refuse(scope, receive, send)
                return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(self._message())
            return message

        await self.app(scope, limited_receive, send)

    def _message(self) -> str:
        return (
            f"The request body is larger than this gateway's limit of {self.max_body_bytes} bytes."
        )

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(BodyTooLarge(self._message()), scope)
        response.headers["connection"] = "close"
        await response(scope, receive, send)
