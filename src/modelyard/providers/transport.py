"""The shared HTTP transport to remote upstreams; it maps its own failures (unreachable, timed
out, cut) and OpenAI-shaped upstreams' non-2xx answers into our error tree (the errors' wording
lives in `upstream_errors.py`; other kinds bring their own `ErrorReader`).

One pooled keep-alive client serves every remote deployment. Each call gets the deployment's
connect, read (until headers or the whole non-streamed body), idle-stream and total timeouts.
Upstream messages are passed on only for requests the upstream rejected as invalid; nothing else
an upstream says (and never its URL or our credential) reaches the client. A traced request's
W3C `traceparent` (and `tracestate`) goes with every call.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from modelyard.catalog.cards import Upstream
from modelyard.errors import (
    ContextLengthExceeded,
    ModelyardError,
    UpstreamFailed,
    UpstreamStreamBroken,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from modelyard.observability.tracing import propagated_trace
from modelyard.providers.http_client import (
    ConnectionPool,
    ConnectTimeout,
    HttpError,
    PoolTimeout,
    ReadTimeout,
    Response,
)
from modelyard.providers.upstream_errors import (
    credential_refused,
    failed,
    rate_limited,
    rejected,
    timed_out,
    too_long,
    unavailable,
)

log = logging.getLogger(__name__)


# How one upstream kind's non-2xx answer (deployment id, status, headers, body) becomes our
# error; every kind maps by status and by the fields its API defines, never by free text alone.
ErrorReader = Callable[[str, int, Mapping[str, str], bytes], ModelyardError]


@dataclass(frozen=True)
class UpstreamCall:
    deployment_id: str
    upstream: Upstream
    url: str
    headers: Mapping[str, str]
    body: bytes
    # OpenAI's error shape unless the provider reads its upstream's own.
    read_error: ErrorReader | None = None

    def error(self, status: int, headers: Mapping[str, str], body: bytes) -> ModelyardError:
        reader = self.read_error or status_error
        return reader(self.deployment_id, status, headers, body)


class UpstreamTransport:
    def __init__(self, pool: ConnectionPool | None = None) -> None:
        self._pool = pool or ConnectionPool(max_connections=512, max_idle=128)

    async def aclose(self) -> None:
        await self._pool.aclose()

    async def post_json(self, call: UpstreamCall) -> Any:
        """POST and return the parsed JSON body of a 2xx answer, or raise a mapped error."""
        upstream = call.upstream
        read_s = min(upstream.read_timeout_s, upstream.total_timeout_s)
        deadline = asyncio.get_running_loop().time() + read_s
        try:
            response = await self._post(call, read_s)
            try:
                body = await response.read(deadline)
            finally:
                response.close()
        except HttpError as exc:
            raise _transport_error(call, exc) from None
        if response.status >= 300:
            raise call.error(response.status, response.headers, body)
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            raise UpstreamFailed(
                f"Deployment '{call.deployment_id}' answered with invalid JSON."
            ) from None

    async def stream_lines(self, call: UpstreamCall) -> AsyncIterator[bytes]:
        """POST and yield the lines of a 2xx streamed answer (SSE); errors as `stream_chunks`."""
        pending = b""
        chunks = self.stream_chunks(call)
        try:
            async for chunk in chunks:
                lines = (pending + chunk).split(b"\n")
                pending = lines.pop()
                for line in lines:
                    yield line[:-1] if line.endswith(b"\r") else line
            if pending:
                yield pending.rstrip(b"\r")
        finally:
            await chunks.aclose()  # abandoned: the connection closes now, not when collected

    async def stream_chunks(self, call: UpstreamCall) -> AsyncGenerator[bytes, None]:
        """POST and yield the body of a 2xx streamed answer as it arrives (binary framings such
        as AWS event streams read these); errors before the first chunk are raised as they are,
        later ones as UpstreamStreamBroken/UpstreamTimeout."""
        upstream = call.upstream
        loop = asyncio.get_running_loop()
        total_deadline = loop.time() + upstream.total_timeout_s
        try:
            response = await self._post(
                call, min(upstream.read_timeout_s, upstream.total_timeout_s)
            )
        except HttpError as exc:
            raise _transport_error(call, exc) from None
        try:
            if response.status >= 300:
                try:
                    body = await response.read(loop.time() + upstream.read_timeout_s)
                except HttpError as exc:
                    raise _transport_error(call, exc) from None
                raise call.error(response.status, response.headers, body)
            # From here on, the idle timeout bounds the silence between reads.
            while True:
                if loop.time() >= total_deadline:
                    raise UpstreamTimeout(
                        f"Deployment '{call.deployment_id}' exceeded its total time."
                    )
                deadline = min(total_deadline, loop.time() + upstream.idle_timeout_s)
                chunk = await response.next_chunk(deadline)
                if chunk is None:
                    return
                yield chunk
        except ReadTimeout:
            raise UpstreamTimeout(
                f"Deployment '{call.deployment_id}' went silent mid-stream for longer than "
                f"{upstream.idle_timeout_s:g}s."
            ) from None
        except HttpError as exc:
            log.warning("stream from %s broke: %s", call.deployment_id, exc)
            raise UpstreamStreamBroken(
                f"The stream from deployment '{call.deployment_id}' was cut before it finished."
            ) from None
        finally:
            response.close()

    async def _post(self, call: UpstreamCall, read_s: float) -> Response:
        headers = call.headers
        trace = propagated_trace()
        if trace is not None:  # the upstream's spans join the request's trace, under its attempt
            headers = trace.outgoing_headers(headers)
        return await self._pool.post(
            call.url,
            headers,
            call.body,
            connect_timeout_s=call.upstream.connect_timeout_s,
            read_timeout_s=read_s,
        )


def _transport_error(call: UpstreamCall, exc: HttpError) -> ModelyardError:
    if isinstance(exc, ConnectTimeout | PoolTimeout):
        return UpstreamUnavailable(
            f"Deployment '{call.deployment_id}' could not be reached in time.", retry_after_s=1
        )
    if isinstance(exc, ReadTimeout):
        return timed_out(call.deployment_id)
    log.warning("upstream %s unreachable: %s", call.deployment_id, exc)
    return UpstreamUnavailable(
        f"Deployment '{call.deployment_id}' is unreachable.", retry_after_s=1
    )


def status_error(
    deployment_id: str, status: int, headers: Mapping[str, str], body: bytes
) -> ModelyardError:
    """The error a non-2xx upstream answer becomes, with the usage the answer reported, if
    any (some upstreams bill a request that failed part-way; so do we, once)."""
    error = _status_error(deployment_id, status, headers, body)
    error.upstream_usage = _reported_usage(body)
    return error


def _status_error(
    deployment_id: str, status: int, headers: Mapping[str, str], body: bytes
) -> ModelyardError:
    if status == 429:
        return rate_limited(deployment_id, headers)
    if status in (400, 413) and _upstream_code(body) == ContextLengthExceeded.code:
        return too_long(deployment_id, _upstream_message(body))
    if status in (400, 404, 413, 422):
        return rejected(deployment_id, _upstream_message(body))
    if status in (401, 403):
        return credential_refused(deployment_id, status)
    if status == 503:
        return unavailable(deployment_id, headers)
    return failed(deployment_id, status)


def _reported_usage(body: bytes) -> tuple[int, int] | None:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    usage = payload.get("usage") if isinstance(payload, dict) else None
    if not isinstance(usage, dict):
        return None
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    counts = [
        value if isinstance(value, int) and value >= 0 else 0 for value in (prompt, completion)
    ]
    return (counts[0], counts[1]) if any(counts) else None


def _upstream_code(body: bytes) -> str | None:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    error = payload.get("error") if isinstance(payload, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) else None


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
