"""The shared HTTP transport to remote upstreams, and the one place upstream failures are mapped
into our error tree.

One pooled keep-alive client serves every remote deployment. Each call gets the deployment's
connect, read (until headers or the whole non-streamed body), idle-stream and total timeouts.
Upstream messages are passed on only for requests the upstream rejected as invalid; nothing else
an upstream says (and never its URL or our credential) reaches the client.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from modelyard.catalog.cards import Upstream
from modelyard.errors import (
    ModelyardError,
    RateLimited,
    UpstreamFailed,
    UpstreamRejected,
    UpstreamStreamBroken,
    UpstreamTimeout,
    UpstreamUnavailable,
)

log = logging.getLogger(__name__)

MAX_RETRY_AFTER_S = 120


@dataclass(frozen=True)
class UpstreamCall:
    deployment_id: str
    upstream: Upstream
    url: str
    headers: Mapping[str, str]
    body: bytes


class UpstreamTransport:
    def __init__(self) -> None:
        self._client = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=512, max_keepalive_connections=128),
            follow_redirects=False,
            trust_env=False,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def post_json(self, call: UpstreamCall) -> Any:
        """POST and return the parsed JSON body of a 2xx answer, or raise a mapped error."""
        timeout = _timeout(call.upstream, call.upstream.read_timeout_s)
        try:
            async with asyncio.timeout(call.upstream.total_timeout_s):
                response = await self._client.post(
                    call.url, content=call.body, headers=dict(call.headers), timeout=timeout
                )
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise _timed_out(call, exc) from None
        except httpx.HTTPError as exc:
            raise _unreachable(call, exc) from None
        if response.status_code >= 300:
            raise status_error(
                call.deployment_id, response.status_code, response.headers, response.content
            )
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise UpstreamFailed(
                f"Deployment '{call.deployment_id}' answered with invalid JSON."
            ) from None

    async def stream_lines(self, call: UpstreamCall) -> AsyncIterator[bytes]:
        """POST and yield the lines of a 2xx streamed answer; errors before the first line are
        raised as they are, later ones as UpstreamStreamBroken/UpstreamTimeout."""
        deadline = time.monotonic() + call.upstream.total_timeout_s
        request = self._client.build_request(
            "POST",
            call.url,
            content=call.body,
            headers=dict(call.headers),
            timeout=_timeout(call.upstream, call.upstream.read_timeout_s),
        )
        try:
            response = await self._client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise _timed_out(call, exc) from None
        except httpx.HTTPError as exc:
            raise _unreachable(call, exc) from None
        try:
            if response.status_code >= 300:
                body = await response.aread()
                raise status_error(call.deployment_id, response.status_code, response.headers, body)
            # From here on, the idle timeout bounds the silence between lines.
            lines = response.aiter_lines()
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise UpstreamTimeout(
                        f"Deployment '{call.deployment_id}' exceeded its total time."
                    )
                try:
                    async with asyncio.timeout(min(remaining, call.upstream.idle_timeout_s)):
                        line = await anext(lines)
                except StopAsyncIteration:
                    return
                yield line.encode("utf-8")
        except (TimeoutError, httpx.TimeoutException):
            raise UpstreamTimeout(
                f"Deployment '{call.deployment_id}' went silent mid-stream for longer than "
                f"{call.upstream.idle_timeout_s:g}s."
            ) from None
        except httpx.HTTPError as exc:
            log.warning("stream from %s broke: %s", call.deployment_id, type(exc).__name__)
            raise UpstreamStreamBroken(
                f"The stream from deployment '{call.deployment_id}' was cut before it finished."
            ) from None
        finally:
            await response.aclose()


def _timeout(upstream: Upstream, read_s: float) -> httpx.Timeout:
    return httpx.Timeout(connect=upstream.connect_timeout_s, read=read_s, write=read_s, pool=read_s)


def _timed_out(call: UpstreamCall, exc: Exception) -> ModelyardError:
    if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
        return UpstreamUnavailable(
            f"Deployment '{call.deployment_id}' could not be reached in time.", retry_after_s=1
        )
    return UpstreamTimeout(f"Deployment '{call.deployment_id}' did not answer in time.")


def _unreachable(call: UpstreamCall, exc: Exception) -> ModelyardError:
    log.warning("upstream %s unreachable: %s", call.deployment_id, type(exc).__name__)
    return UpstreamUnavailable(
        f"Deployment '{call.deployment_id}' is unreachable.", retry_after_s=1
    )


def status_error(
    deployment_id: str, status: int, headers: Mapping[str, str], body: bytes
) -> ModelyardError:
    """The error a non-2xx upstream answer becomes."""
    if status == 429:
        return RateLimited(
            f"Deployment '{deployment_id}' is rate limited upstream; retry after the delay.",
            retry_after_s=retry_after_s(headers),
        )
    if status in (400, 404, 413, 422):
        return UpstreamRejected(
            f"Deployment '{deployment_id}' rejected the request: {_upstream_message(body)}"
        )
    if status in (401, 403):
        log.error("upstream %s refused our credential (%d)", deployment_id, status)
        return UpstreamFailed(f"Deployment '{deployment_id}' refused the gateway's credential.")
    if status == 503:
        return UpstreamUnavailable(
            f"Deployment '{deployment_id}' is unavailable.", retry_after_s=retry_after_s(headers)
        )
    return UpstreamFailed(f"Deployment '{deployment_id}' failed with status {status}.")


def retry_after_s(headers: Mapping[str, str]) -> int:
    """Seconds from `retry-after-ms`, or `Retry-After` (seconds or HTTP date), capped at 120."""
    milliseconds = headers.get("retry-after-ms")
    seconds: float | None = None
    if milliseconds is not None:
        try:
            seconds = float(milliseconds) / 1000
        except ValueError:
            seconds = None
    value = headers.get("retry-after")
    if seconds is None and value is not None:
        try:
            seconds = float(value)
        except ValueError:
            parsed = email.utils.parsedate_to_datetime(value) if value else None
            if parsed is not None:
                seconds = parsed.timestamp() - time.time()
    if seconds is None:
        return 1
    return int(min(max(1, round(seconds + 0.499)), MAX_RETRY_AFTER_S))


def _upstream_message(body: bytes) -> str:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "(no detail)"
    error = payload.get("error", payload) if isinstance(payload, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    if not isinstance(message, str):
        message = payload.get("detail") if isinstance(payload, dict) else None
    return str(message)[:500] if message else "(no detail)"
