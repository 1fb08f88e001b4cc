"""What keeps the console's pages safe in a browser: the headers every page carries and the
checks every state-changing request passes.

No inline script or style runs (the Content-Security-Policy allows only the gateway's own
files), pages are never framed or cached, and a POST must carry the session's synchronizer
token (form field `csrf_token` or header `X-CSRF-Token`) and, when the browser says where it
comes from, come from this origin. The session cookie is also `SameSite=Strict`.
"""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

from starlette.requests import Request

from modelyard.errors import PermissionDenied

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "font-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ]
)
PAGE_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
    "cross-origin-opener-policy": "same-origin",
}
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class CsrfRefused(PermissionDenied):
    code = "csrf_failed"


async def presented_csrf_token(request: Request) -> str | None:
    """The token a request carries: its header, else its form field (url-encoded or multipart)."""
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()
        value = form.get(CSRF_FIELD)
        return value if isinstance(value, str) else None
    return None


def check_origin(request: Request) -> None:
    """Refuse a request whose Origin (or, lacking it, Referer) names another site."""
    claimed = request.headers.get("origin") or request.headers.get("referer")
    if not claimed or claimed == "null":
        return
    parts = urlsplit(claimed)
    if (parts.scheme, parts.netloc) != (request.url.scheme, request.url.netloc):
        raise CsrfRefused("The request came from another site; the console refused it.")


async def check_csrf(request: Request, expected: str) -> None:
    check_origin(request)
    presented = await presented_csrf_token(request)
    if presented is None or not hmac.compare_digest(presented, expected):
        raise CsrfRefused(
            "The form's CSRF token is missing or stale; reload the page and try again.",
            param=CSRF_FIELD,
        )
