"""The decorator every console page goes through.

`console_page` resolves the session (`session.py`), sends a browser that is not signed in to
the sign-in page, checks CSRF on every state-changing request, renders errors as the console's
own page or fragment (or, to a script asking for JSON or a stream, in the API's error shape),
and adds the security headers. Handlers never authorize anything themselves: what they do goes
through the same /admin and /v1 route code (`internal.py`), with the session's principal.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from modelyard.api.console.internal import Relay
from modelyard.api.console.rendering import error_page
from modelyard.api.console.security import PAGE_HEADERS, UNSAFE_METHODS, check_csrf
from modelyard.api.console.session import SIGN_IN_PATH, SignedIn, signed_in
from modelyard.errors import AuthenticationFailed, ModelyardError

ConsoleHandler = Callable[[Request, SignedIn], Awaitable[Response | Relay]]


def console_page(handler: ConsoleHandler) -> Callable[[Request], Awaitable[Response | Relay]]:
    async def endpoint(request: Request) -> Response | Relay:
        started = time.perf_counter()
        try:
            who = await signed_in(request)
        except AuthenticationFailed:
            if request.method == "GET" and not wants_fragment(request):
                asked = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                target = quote(asked)
                return with_page_headers(
                    RedirectResponse(f"{SIGN_IN_PATH}?next={target}", status_code=303)
                )
            raise
        if request.method in UNSAFE_METHODS:
            await check_csrf(request, who.csrf_token)
        try:
            response = await handler(request, who)
        except ModelyardError as error:
            if wants_json(request):
                raise
            response = error_page(request, who, error.status, error.message)
        if isinstance(response, Relay):
            return response  # the API route's own response, headers and all
        # What the page cost the server, for browsers' developer tools and bench/console.py.
        elapsed_ms = (time.perf_counter() - started) * 1000
        response.headers["server-timing"] = f"app;dur={elapsed_ms:.2f}"
        return with_page_headers(response)

    endpoint.__name__ = handler.__name__
    endpoint.__doc__ = handler.__doc__
    return endpoint


def with_page_headers(response: Response) -> Response:
    for name, value in PAGE_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def wants_fragment(request: Request) -> bool:
    """An htmx request: it swaps the answer into the page, so errors come back as fragments."""
    return request.headers.get("hx-request") == "true"


def wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "application/json" in accept or "text/event-stream" in accept
