"""The HTTP server's options, in one place, so one process and each of N workers serve alike."""

from __future__ import annotations

import contextlib

import uvicorn
from starlette.applications import Starlette
from uvicorn.config import STARTUP_FAILURE

from modelyard.http_protocol import ConnectionBounds, bounded_protocol
from modelyard.settings import Settings


def server_config(app: Starlette, settings: Settings) -> uvicorn.Config:
    bounds = ConnectionBounds(
        max_head_bytes=settings.max_header_bytes,
        head_timeout_s=settings.request_head_timeout_s,
        body_idle_timeout_s=settings.body_idle_timeout_s,
    )
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        # uvicorn's lines go through the process's own log set-up (observability/logs.py), in its
        # format; the access log is ours (observability/access_log.py).
        log_config=None,
        access_log=False,
        http=bounded_protocol(bounds),
        loop="uvloop",
        timeout_graceful_shutdown=10,
        timeout_keep_alive=settings.keep_alive_s,
        ssl_certfile=settings.tls_certfile,
        ssl_keyfile=settings.tls_keyfile,
        # uvicorn would otherwise rewrite the peer from X-Forwarded-For sent from loopback;
        # ClientAddressMiddleware decides whom to believe, from settings.trusted_proxies.
        proxy_headers=False,
    )


def serve_in_process(app: Starlette, settings: Settings) -> int:
    """Serve until SIGINT or SIGTERM, binding host and port itself (as `uvicorn.run` does);
    uvicorn's start-up failure code when it never served (the port is taken)."""
    server = uvicorn.Server(server_config(app, settings))
    # Ctrl+C ends in KeyboardInterrupt once uvicorn has shut down gracefully.
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    return 0 if server.started else STARTUP_FAILURE
