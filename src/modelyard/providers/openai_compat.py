"""The `openai_compat` provider: OpenAI and every server that speaks its Chat Completions API
(vLLM, Ollama, llama.cpp server, TGI, Mistral's platform).

Pure translation plus a little I/O on the shared transport: the canonical request becomes the
upstream body (the deployment's upstream model id, gateway-only fields removed, usage always
requested on streams), and the upstream answer or stream becomes provider events. Tool calls
that arrive as incremental deltas are assembled and emitted complete, the form every SDK accepts.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson

from modelyard.catalog.cards import Deployment, ModelCard
from modelyard.errors import ModelyardError, UpstreamFailed, UpstreamStreamBroken
from modelyard.protocol.chat import (
    ChatCompletionRequest,
    estimate_prompt_tokens,
    estimate_text_tokens,
)
from modelyard.protocol.embeddings import EmbeddingsRequest
from modelyard.protocol.generation import (
    ChatEvent,
    ChoiceFinished,
    Embeddings,
    Failed,
    Finished,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from modelyard.providers.credentials import resolve_credential
from modelyard.providers.dialects import Dialect
from modelyard.providers.remote_provider import RemoteProvider
from modelyard.providers.remote_stream import RemoteChatStream, drain
from modelyard.providers.transport import UpstreamCall, UpstreamTransport
from modelyard.structured.contract import OutputContract

log = logging.getLogger(__name__)

# Fields only the gateway understands; the rest of the canonical request is the OpenAI body.
GATEWAY_ONLY_FIELDS = frozenset({"random_seed", "safe_prompt"})


class OpenAICompatProvider(RemoteProvider):
    def __init__(
        self, deployments: list[Deployment], transport: UpstreamTransport, dialect: Dialect
    ) -> None:
        super().__init__(transport)
        self._dialect = dialect
        self._auth_headers: dict[str, dict[str, str]] = {}
        for deployment in deployments:
            assert deployment.upstream is not None
            if deployment.upstream.credential:
                secret = resolve_credential(deployment.upstream.credential, deployment.id)
                self._auth_headers[deployment.id] = dialect.auth_headers(secret)

    async def embed(
        self, request: EmbeddingsRequest, card: ModelCard, deployment: Deployment
    ) -> Embeddings:
        assert deployment.upstream is not None
        body = request.model_dump(mode="json", exclude_none=True)
        for name in ("output_dimension", "output_dtype", "input_type"):
            body.pop(name, None)
        body["model"] = deployment.upstream.model
        body["encoding_format"] = "float"  # re-encoded for the client as it asked
        dimensions = request.requested_dimensions()
        if dimensions is not None:
            body["dimensions"] = dimensions
        call = self._call(deployment, body, "embeddings")
        payload = await self._transport.post_json(call)
        try:
            rows = sorted(payload["data"], key=lambda row: row["index"])
            vectors = [[float(x) for x in row["embedding"]] for row in rows]
        except (KeyError, TypeError, ValueError):
            raise UpstreamFailed(
                f"Deployment '{deployment.id}' answered embeddings in an unknown shape."
            ) from None
        usage = payload.get("usage") or {}
        return Embeddings(vectors=vectors, prompt_tokens=int(usage.get("prompt_tokens") or 0))

    async def open_chat(
        self,
        request: ChatCompletionRequest,
        card: ModelCard,
        deployment: Deployment,
        contract: OutputContract,
        caller: str = "",
    ) -> RemoteChatStream:
        assert deployment.upstream is not None
        body = upstream_body(request, deployment)
        self._dialect.adapt_chat_body(body, bool(request.stream), deployment.upstream)
        call = self._call(deployment, body, "chat/completions")
        prompt_estimate = estimate_prompt_tokens(request)
        stream = RemoteChatStream()
        if request.stream:
            lines = self._transport.stream_lines(call)
            first = await anext(lines, None)  # errors before the first byte are real statuses
            stream.events = events_from_stream(
                first, lines, deployment.id, prompt_estimate, stream.report
            )
        else:
            payload = await self._transport.post_json(call)
            stream.events = events_from_completion(
                payload, deployment.id, prompt_estimate, stream.report
            )
        return stream

    def _call(self, deployment: Deployment, body: dict[str, Any], path: str) -> UpstreamCall:
        assert deployment.upstream is not None
        headers = {
            "content-type": "application/json",
            "accept": "application/json",
            **self._auth_headers.get(deployment.id, {}),
        }
        return UpstreamCall(
            deployment_id=deployment.id,
            upstream=deployment.upstream,
            url=self._dialect.url(deployment.upstream, path),
            headers=headers,
            body=orjson.dumps(body),
        )


def upstream_body(request: ChatCompletionRequest, deployment: Deployment) -> dict[str, Any]:
    assert deployment.upstream is not None
    body = request.model_dump(mode="json", exclude_none=True, by_alias=True)
    for name in GATEWAY_ONLY_FIELDS:
        body.pop(name, None)
    body["model"] = deployment.upstream.model
    seed = request.sampling_seed()
    if seed is not None:
        body["seed"] = seed
    if body.get("tool_choice") == "any":
        body["tool_choice"] = "required"
    for message in body["messages"]:
        message.pop("prefix", None)
        for call in message.get("tool_calls") or []:
            call.pop("index", None)
    if not request.stream:
        body.pop("stream", None)
    return body


async def events_from_completion(
    payload: Any, deployment_id: str, prompt_estimate: int, report: Callable[[Usage], None]
) -> AsyncIterator[ChatEvent]:
    choices = payload.get("choices") if isinstance(payload, dict) else None
    if not isinstance(choices, list) or not choices:
        # Billed for what the upstream says it used (nothing, if it says nothing): a generation
        # reports once however it ends, or its request is never recorded.
        payload_usage = payload.get("usage") if isinstance(payload, dict) else None
        report(_usage(payload_usage) or Usage(0, 0))
        yield Failed(UpstreamFailed(f"Deployment '{deployment_id}' answered without choices."))
        return
    for position, choice in enumerate(choices):
        index = choice.get("index", position)
        message = choice.get("message") or {}
        content = message.get("content")
        if isinstance(content, str) and content:
            yield TextDelta(index, content)
        for call_index, call in enumerate(message.get("tool_calls") or []):
            yield _tool_call(index, call_index, call)
        yield ChoiceFinished(index, choice.get("finish_reason") or "stop")
    usage = _usage(payload.get("usage"))
    if usage is None:
        texts = [str((c.get("message") or {}).get("content") or "") for c in choices]
        usage = Usage(prompt_estimate, sum(estimate_text_tokens(t) for t in texts), estimated=True)
    report(usage)
    yield Finished(usage)


async def events_from_stream(
    first: bytes | None,
    lines: AsyncIterator[bytes],
    deployment_id: str,
    prompt_estimate: int,
    report: Callable[[Usage], None],
) -> AsyncIterator[ChatEvent]:
    """SSE lines to events; a stream that ends without `[DONE]` is a failure, never success."""
    calls: dict[tuple[int, int], dict[str, Any]] = {}
    usage: Usage | None = None
    content_events = 0
    pending = [first] if first is not None else []

    async def all_lines() -> AsyncIterator[bytes]:
        for line in pending:
            yield line
        async for line in lines:
            yield line

    try:
        async for line in all_lines():
            if not line.startswith(b"data:"):
                continue  # blank separators, comments, event: lines
            data = line[5:].strip()
            if data == b"[DONE]":
                await drain(lines)
                final = usage or Usage(prompt_estimate, content_events, estimated=True)
                report(final)
                yield Finished(final)
                return
            try:
                chunk = orjson.loads(data)
            except orjson.JSONDecodeError:
                raise UpstreamStreamBroken(
                    f"Deployment '{deployment_id}' sent a malformed event."
                ) from None
            if not isinstance(chunk, dict):
                raise UpstreamStreamBroken(f"Deployment '{deployment_id}' sent a malformed event.")
            if "error" in chunk:
                raise UpstreamFailed(f"Deployment '{deployment_id}' failed mid-stream.")
            if chunk.get("usage"):
                usage = _usage(chunk["usage"])
            for choice in chunk.get("choices") or []:
                delta = choice.get("delta") or {}
                content_events += bool(delta.get("content") or delta.get("tool_calls"))
                for event in _choice_events(choice, calls):
                    yield event
        raise UpstreamStreamBroken(
            f"The stream from deployment '{deployment_id}' ended before [DONE]."
        )
    except ModelyardError as exc:  # includes the transport's timeouts and broken streams
        yield Failed(exc)
    finally:
        # Cut, failed or abandoned: count what arrived. Without reported usage each content
        # event is one token, as servers that omit usage (llama.cpp's, TGI) send them.
        report(usage or Usage(prompt_estimate, content_events, estimated=True))


def _choice_events(
    choice: dict[str, Any], calls: dict[tuple[int, int], dict[str, Any]]
) -> list[ChatEvent]:
    index = int(choice.get("index", 0))
    delta = choice.get("delta") or {}
    events: list[ChatEvent] = []
    content = delta.get("content")
    if isinstance(content, str) and content:
        events.append(TextDelta(index, content))
    for fragment in delta.get("tool_calls") or []:
        key = (index, int(fragment.get("index", 0)))
        call = calls.setdefault(key, {"id": "", "name": "", "arguments": ""})
        function = fragment.get("function") or {}
        call["id"] = fragment.get("id") or call["id"]
        call["name"] = function.get("name") or call["name"]
        arguments = function.get("arguments")
        if isinstance(arguments, dict):
            call["arguments"] = orjson.dumps(arguments).decode()
        elif isinstance(arguments, str):
            call["arguments"] += arguments
    finish_reason = choice.get("finish_reason")
    if finish_reason:
        for (choice_index, call_index), call in sorted(calls.items()):
            if choice_index == index:
                events.append(
                    ToolCallDelta(
                        index,
                        call_index,
                        call["id"] or f"call_{index}_{call_index}",
                        call["name"],
                        call["arguments"] or "{}",
                    )
                )
        events.append(ChoiceFinished(index, finish_reason))
    return events


def _tool_call(choice: int, call_index: int, call: dict[str, Any]) -> ToolCallDelta:
    function = call.get("function") or {}
    arguments = function.get("arguments", "{}")
    if not isinstance(arguments, str):
        arguments = orjson.dumps(arguments).decode()
    return ToolCallDelta(
        choice,
        call_index,
        str(call.get("id") or f"call_{choice}_{call_index}"),
        str(function.get("name", "")),
        arguments,
    )


def _usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    details = raw.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return Usage(
        int(raw.get("prompt_tokens") or 0),
        int(raw.get("completion_tokens") or 0),
        cached_prompt_tokens=int(cached or 0),
    )
