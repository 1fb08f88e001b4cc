"""The `anthropic` provider's I/O: one call to the Messages API per attempt, and its token
counting endpoint for exact prompt counts.

A deployment's `base_url` runs up to and including the API version segment, as for every remote
kind (`https://api.anthropic.com/v1`): chat is `{base_url}/messages`, counting
`{base_url}/messages/count_tokens`. Every call carries the catalog's credential as `x-api-key`
and the API version this translation is written for; neither is ever logged.
"""

from __future__ import annotations

from typing import Any

import orjson

from modelyard.catalog.cards import Deployment, ModelCard
from modelyard.errors import UpstreamFailed
from modelyard.protocol.chat import ChatCompletionRequest, estimate_prompt_tokens
from modelyard.providers.anthropic.errors import read_error
from modelyard.providers.anthropic.reply import events_from_message
from modelyard.providers.anthropic.request import count_tokens_body, messages_call
from modelyard.providers.anthropic.stream import events_from_stream
from modelyard.providers.credentials import resolve_credential
from modelyard.providers.remote_provider import RemoteProvider
from modelyard.providers.remote_stream import RemoteChatStream
from modelyard.providers.transport import UpstreamCall, UpstreamTransport
from modelyard.structured.contract import OutputContract

ANTHROPIC_VERSION = "2023-06-01"


class AnthropicProvider(RemoteProvider):
    def __init__(self, deployments: list[Deployment], transport: UpstreamTransport) -> None:
        super().__init__(transport)
        self._headers: dict[str, dict[str, str]] = {}
        for deployment in deployments:
            assert deployment.upstream is not None
            headers = {
                "content-type": "application/json",
                "accept": "application/json",
                "anthropic-version": ANTHROPIC_VERSION,
            }
            if deployment.upstream.credential:
                headers["x-api-key"] = resolve_credential(
                    deployment.upstream.credential, deployment.id
                )
            self._headers[deployment.id] = headers

    async def open_chat(
        self,
        request: ChatCompletionRequest,
        card: ModelCard,
        deployment: Deployment,
        contract: OutputContract,
        caller: str = "",
    ) -> RemoteChatStream:
        call = messages_call(request, card, deployment)
        prompt_estimate = estimate_prompt_tokens(request)
        stream = RemoteChatStream()
        if request.stream:
            upstream = self._call(deployment, "messages", {**call.body, "stream": True})
            lines = self._transport.stream_lines(upstream)
            first = await anext(lines, None)  # errors before the first byte are real statuses
            stream.events = events_from_stream(
                first, lines, deployment.id, call.answer_tool, prompt_estimate, stream.report
            )
        else:
            payload = await self._transport.post_json(self._call(deployment, "messages", call.body))
            stream.events = events_from_message(
                payload, deployment.id, call.answer_tool, prompt_estimate, stream.report
            )
        return stream

    async def count_prompt_tokens(
        self,
        request: ChatCompletionRequest,
        card: ModelCard,
        deployment: Deployment,
        contract: OutputContract,
    ) -> int:
        """The prompt's tokens as the deployment's model reads them (tools and the JSON answer
        tool included), from Anthropic's counting endpoint; nothing is generated or billed."""
        body = count_tokens_body(messages_call(request, card, deployment).body)
        payload = await self._transport.post_json(
            self._call(deployment, "messages/count_tokens", body)
        )
        count = payload.get("input_tokens") if isinstance(payload, dict) else None
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise UpstreamFailed(
                f"Deployment '{deployment.id}' counted tokens in an unknown shape."
            )
        return count

    def _call(self, deployment: Deployment, path: str, body: dict[str, Any]) -> UpstreamCall:
        assert deployment.upstream is not None
        return UpstreamCall(
            deployment_id=deployment.id,
            upstream=deployment.upstream,
            url=f"{deployment.upstream.base_url}/{path}",
            headers=self._headers[deployment.id],
            body=orjson.dumps(body),
            read_error=read_error,
        )
