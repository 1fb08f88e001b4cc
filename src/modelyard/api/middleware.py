"""Pure-ASGI middlewares, one job each.

- `RequestIdMiddleware` gives every request an id (`x-request-id` on every response, errors
  included) that also names its completion and its log lines.
- `UnexpectedErrorMiddleware` turns an exception no handler took into a 500 in the shape of
  the request's surface (`api/errors.py`). It logs the exception's class, the request id and
  where in the code it was raised, never its text: exception texts can quote the request
  (pydantic's do), and zero retention means no prompt reaches a log. It also keeps the
  exception from the server, which would log its traceback, texts included.
- `BodyLimitMiddleware` refuses bodies over the limit with 413 without buffering them: at once
  when `Content-Length` says so, otherwise as soon as the streamed bytes pass the limit.
"""

from __future__ import annotations

import logging
import os
import traceback

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelyard.api.errors import error_response
from modelyard.errors import BodyTooLarge, InternalError

log = logging.getLogger(__name__)
# Frames of an unexpected exception's origin that are logged (file, line, function only).
LOGGED_FRAMES = 4


def new_request_id() -> str:
    return os.urandom(12).hex()


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        header = (b"x-request-id", request_id.encode("ascii"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        await self.app(scope, receive, send_with_id)


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
            frames = traceback.extract_tb(exc.__traceback__)[-LOGGED_FRAMES:]
            where = " < ".join(
                f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} {f.name}" for f in reversed(frames)
            )
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
