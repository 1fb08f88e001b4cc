"""The gateway as the evaluation harness sees it: a client of its public HTTP API.

Cases are sent to `/v1/chat/completions` with the caller's key, streamed so the time to the first
token can be measured, exactly as an application would call the gateway (limits, budgets, the
ledger and structured output apply as in production). Runs and results go through
`/admin/evals`. Nothing here decides what a result is worth; that is the runner's and scorers'.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from modelyard.evals.outcome import ToolCall
from modelyard.money import to_micros

COST_HEADER = "x-modelyard-cost-usd"
DEPLOYMENT_HEADER = "x-modelyard-deployment"
ROUTE_HEADER = "x-modelyard-route"
REQUEST_ID_HEADER = "x-request-id"
# A 429 is retried this many times, after the Retry-After it names (capped).
RATE_LIMIT_RETRIES = 4
MAX_RETRY_AFTER_S = 30.0
DEFAULT_RETRY_AFTER_S = 1.0


class GatewayError(Exception):
    """The gateway refused or failed a call: its status, its OpenAI-shaped message and code."""

    def __init__(
        self, status: int, message: str, code: str | None = None, request_id: str | None = None
    ) -> None:
        super().__init__(f"{status} {code or 'error'}: {message}")
        self.status, self.message, self.code, self.request_id = status, message, code, request_id


class GatewayUnreachable(Exception):
    """No answer at all (connection refused, reset, timed out)."""


@dataclass
class StreamedAnswer:
    """One streamed chat completion as the client saw it."""

    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    deployment: str | None = None
    # The route that chose the deployment, when the name called is a route.
    route: str | None = None
    request_id: str | None = None
    # Set when the stream failed after it started (an in-band error event or a cut connection).
    error: str | None = None


@dataclass
class _ToolCallParts:
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class GatewayClient:
    def __init__(self, base_url: str, key: str, timeout_s: float = 300.0) -> None:
        self._base = base_url.rstrip("/")
        self._client = httpx.AsyncClient(
            base_url=self._base,
            headers={"authorization": f"Bearer {key}"},
            timeout=httpx.Timeout(timeout_s, connect=10.0),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
        )

    async def __aenter__(self) -> GatewayClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._client.aclose()

    # -- serving ---------------------------------------------------------------------------------

    async def stream_chat(self, body: dict[str, Any]) -> StreamedAnswer:
        """The completion of `body`, streamed with usage; a 429 is retried after Retry-After.
        Raises `GatewayError` for a refusal before the stream starts."""
        streamed = {**body, "stream": True, "stream_options": {"include_usage": True}}
        for attempt in range(RATE_LIMIT_RETRIES + 1):
            started = time.perf_counter()
            try:
                async with self._client.stream(
                    "POST", "/v1/chat/completions", json=streamed
                ) as response:
                    if response.status_code == 429 and attempt < RATE_LIMIT_RETRIES:
                        await response.aread()
                        await asyncio.sleep(_retry_after_s(response))
                        continue
                    if response.status_code >= 400:
                        await response.aread()
                        raise _error_of(response)
                    return await _read_stream(response, started)
            except httpx.TransportError as exc:
                raise GatewayUnreachable(f"{type(exc).__name__}: {exc}") from None
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def complete(self, body: dict[str, Any]) -> tuple[dict[str, Any], int]:
        """A non-streamed completion and what it cost (micro-dollars, from the cost header)."""
        response = await self._send("POST", "/v1/chat/completions", body)
        cost = response.headers.get(COST_HEADER)
        return response.json(), to_micros(cost) if cost else 0

    async def judge(self, model: str, messages: list[dict[str, Any]]) -> tuple[str, int]:
        """A `JudgeCall`: the judge's reply text and its cost in micro-dollars."""
        completion, cost = await self.complete({"model": model, "messages": messages})
        message = completion["choices"][0]["message"]
        return str(message.get("content") or ""), cost

    async def models(self) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = (await self._send("GET", "/v1/models")).json()["data"]
        return data

    # -- admin -----------------------------------------------------------------------------------

    async def admin(self, method: str, path: str, body: Any = None) -> Any:
        return (await self._send(method, path, body)).json()

    async def _send(self, method: str, path: str, body: Any = None) -> httpx.Response:
        headers = {}
        if method != "GET":
            # A retry of this very call after a network error cannot act twice.
            headers["idempotency-key"] = str(uuid.uuid4())
        for attempt in range(RATE_LIMIT_RETRIES + 1):
            try:
                response = await self._client.request(method, path, json=body, headers=headers)
            except httpx.TransportError as exc:
                raise GatewayUnreachable(f"{type(exc).__name__}: {exc}") from None
            if response.status_code == 429 and attempt < RATE_LIMIT_RETRIES:
                await asyncio.sleep(_retry_after_s(response))
                continue
            if response.status_code >= 400:
                raise _error_of(response)
            return response
        raise AssertionError("unreachable: the last attempt returns or raises")


async def _read_stream(response: httpx.Response, started: float) -> StreamedAnswer:
    answer = StreamedAnswer(
        deployment=response.headers.get(DEPLOYMENT_HEADER),
        route=response.headers.get(ROUTE_HEADER),
        request_id=response.headers.get(REQUEST_ID_HEADER),
    )
    content: list[str] = []
    calls: dict[int, _ToolCallParts] = {}
    try:
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            chunk = orjson.loads(data)
            if "error" in chunk:
                error = chunk["error"] or {}
                answer.error = f"{error.get('code') or 'error'}: {error.get('message')}"
                break
            if _take_chunk(chunk, answer, content, calls) and answer.ttft_ms is None:
                answer.ttft_ms = (time.perf_counter() - started) * 1000
    except (httpx.TransportError, orjson.JSONDecodeError) as exc:
        answer.error = f"the stream broke off: {type(exc).__name__}"
    answer.latency_ms = (time.perf_counter() - started) * 1000
    answer.content = "".join(content)
    answer.tool_calls = tuple(
        ToolCall(parts.name, "".join(parts.arguments)) for _, parts in sorted(calls.items())
    )
    return answer


def _take_chunk(
    chunk: dict[str, Any],
    answer: StreamedAnswer,
    content: list[str],
    calls: dict[int, _ToolCallParts],
) -> bool:
    """Fold one chunk into the answer; whether it carried output (text or a tool call)."""
    usage = chunk.get("usage")
    if usage:
        answer.prompt_tokens = int(usage.get("prompt_tokens") or 0)
        answer.completion_tokens = int(usage.get("completion_tokens") or 0)
    produced = False
    for choice in chunk.get("choices") or []:
        if choice.get("index", 0) != 0:
            continue
        delta = choice.get("delta") or {}
        if delta.get("content"):
            content.append(delta["content"])
            produced = True
        for call in delta.get("tool_calls") or []:
            parts = calls.setdefault(int(call.get("index", 0)), _ToolCallParts())
            function = call.get("function") or {}
            parts.name += function.get("name") or ""
            parts.arguments.append(function.get("arguments") or "")
            produced = True
        if choice.get("finish_reason"):
            answer.finish_reason = choice["finish_reason"]
    return produced


def _retry_after_s(response: httpx.Response) -> float:
    try:
        seconds = float(response.headers.get("retry-after", DEFAULT_RETRY_AFTER_S))
    except ValueError:
        seconds = DEFAULT_RETRY_AFTER_S
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def _error_of(response: httpx.Response) -> GatewayError:
    try:
        error = response.json().get("error") or {}
    except ValueError:
        error = {}
    return GatewayError(
        response.status_code,
        str(error.get("message") or response.reason_phrase),
        error.get("code"),
        response.headers.get(REQUEST_ID_HEADER),
    )
