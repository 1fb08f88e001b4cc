"""The alternative load-generator client: httpx, one pooled `AsyncClient` shared by all workers.

Owns the same contract as `client.RawConnection` (`complete`, `stream`, `closed`, `close`) on
top of httpx, so the load generator can be measured with both and use the faster. httpx keeps
its own keep-alive pool (one connection per concurrent worker), so `closed` stays false and
`close` only matters mid-stream, where it drops that response's connection.
"""

from __future__ import annotations

import httpx
from bench.overhead.client import Exchange, RequestFailed
from bench.overhead.sse import StreamTally


class HttpxConnection:
    def __init__(self, client: httpx.AsyncClient, exchange: Exchange) -> None:
        self._client = client
        self._exchange = exchange
        self._headers = {"content-type": "application/json", **exchange.headers}
        self.closed = False

    @staticmethod
    def shared_client(concurrency: int) -> httpx.AsyncClient:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        return httpx.AsyncClient(limits=limits, timeout=60, trust_env=False)

    def close(self) -> None:
        return None

    async def complete(self) -> None:
        try:
            response = await self._client.post(
                self._exchange.url, content=self._exchange.plain_body, headers=self._headers
            )
        except httpx.HTTPError as exc:
            raise RequestFailed(repr(exc)) from None
        if response.status_code != 200 or b'"choices"' not in response.content:
            raise RequestFailed(f"HTTP {response.status_code}: {response.content[:160]!r}")

    async def stream(self, stop_after: int | None = None) -> StreamTally:
        tally = StreamTally(self._exchange.surface)
        request = self._client.build_request(
            "POST", self._exchange.url, content=self._exchange.stream_body, headers=self._headers
        )
        try:
            response = await self._client.send(request, stream=True)
            try:
                if response.status_code != 200:
                    body = await response.aread()
                    raise RequestFailed(f"HTTP {response.status_code}: {body[:160]!r}")
                async for piece in response.aiter_raw():
                    tally.feed(piece)
                    if stop_after is not None and tally.tokens >= stop_after:
                        break
            finally:
                await response.aclose()
        except httpx.HTTPError as exc:
            raise RequestFailed(repr(exc)) from None
        return tally
