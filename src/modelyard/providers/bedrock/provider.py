"""The `bedrock` provider: Amazon Bedrock's Converse and ConverseStream APIs, every request
signed with SigV4 for the deployment's `aws_region`.

Translation lives beside it (`request.py` to Converse, `response.py` and `eventstream.py` from
it, `errors.py` for failures); this module is the I/O: URLs, signing, the shared transport.
Bedrock's CountTokens endpoint makes it a `TokenCounter`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import orjson

from modelyard.catalog.cards import Deployment, ModelCard
from modelyard.errors import UpstreamFailed
from modelyard.protocol.chat import ChatCompletionRequest, estimate_prompt_tokens
from modelyard.providers.bedrock.errors import read_error
from modelyard.providers.bedrock.request import converse_request
from modelyard.providers.bedrock.response import Reading, events_from_answer, events_from_stream
from modelyard.providers.bedrock.signing import (
    RequestSigner,
    chain_credentials,
    credentials_from_reference,
    quiet_signing_logs,
)
from modelyard.providers.remote_provider import RemoteProvider
from modelyard.providers.remote_stream import RemoteChatStream
from modelyard.providers.transport import UpstreamCall, UpstreamTransport
from modelyard.structured.contract import OutputContract

log = logging.getLogger(__name__)

# What CountTokens reads of a Converse body.
COUNTED_FIELDS = ("messages", "system", "toolConfig", "additionalModelRequestFields")


class BedrockProvider(RemoteProvider):
    def __init__(self, deployments: list[Deployment], transport: UpstreamTransport) -> None:
        quiet_signing_logs()
        super().__init__(transport)
        self._signers: dict[str, RequestSigner] = {}
        # Deployments without a credential reference sign with the standard chain's.
        chained = [d for d in deployments if d.upstream is not None and not d.upstream.credential]
        shared = chain_credentials([d.id for d in chained]) if chained else None
        if shared is not None:
            log.info("bedrock: AWS credentials from the standard chain (%s)", shared.method)
        for deployment in deployments:
            upstream = deployment.upstream
            assert upstream is not None and upstream.aws_region is not None  # the loader checks
            credentials = (
                credentials_from_reference(upstream.credential, deployment.id)
                if upstream.credential
                else shared
            )
            assert credentials is not None
            self._signers[deployment.id] = RequestSigner(credentials, upstream.aws_region)

    async def open_chat(
        self,
        request: ChatCompletionRequest,
        card: ModelCard,
        deployment: Deployment,
        contract: OutputContract,
        caller: str = "",
    ) -> RemoteChatStream:
        converse = converse_request(request, card, contract)
        reading = Reading(deployment.id, converse.answer_tool, estimate_prompt_tokens(request))
        stream = RemoteChatStream()
        if request.stream:
            call = await self._call(
                deployment, "converse-stream", converse.body, "application/vnd.amazon.eventstream"
            )
            chunks = self._transport.stream_chunks(call)
            first = await anext(chunks, None)  # errors before the first byte are real statuses
            stream.events = events_from_stream(first, chunks, reading, stream.report)
        else:
            call = await self._call(deployment, "converse", converse.body)
            payload = await self._transport.post_json(call)
            stream.events = events_from_answer(payload, reading, stream.report)
        return stream

    async def count_prompt_tokens(
        self,
        request: ChatCompletionRequest,
        card: ModelCard,
        deployment: Deployment,
        contract: OutputContract,
    ) -> int:
        body = converse_request(request, card, contract).body
        counted = {name: body[name] for name in COUNTED_FIELDS if name in body}
        call = await self._call(deployment, "count-tokens", {"input": {"converse": counted}})
        payload = await self._transport.post_json(call)
        tokens = payload.get("inputTokens") if isinstance(payload, dict) else None
        if not isinstance(tokens, int):
            raise UpstreamFailed(
                f"Deployment '{deployment.id}' counted tokens in an unknown shape."
            )
        return tokens

    async def _call(
        self,
        deployment: Deployment,
        operation: str,
        body: Mapping[str, Any],
        accept: str = "application/json",
    ) -> UpstreamCall:
        upstream = deployment.upstream
        assert upstream is not None
        url = model_url(upstream.base_url, upstream.model, operation)
        payload = orjson.dumps(body)
        headers = {"content-type": "application/json", "accept": accept}
        signed = await self._signers[deployment.id].signed_headers(
            deployment.id, url, payload, headers
        )
        return UpstreamCall(
            deployment_id=deployment.id,
            upstream=upstream,
            url=url,
            headers=signed,
            body=payload,
            read_error=read_error,
        )


def model_url(base_url: str, model_id: str, operation: str) -> str:
    """`{base_url}/model/{modelId}/{operation}`, the model id percent-encoded whole (an
    inference profile's ARN or `...-v1:0` holds `:` and `/`), as AWS's SDKs send it."""
    return f"{base_url.rstrip('/')}/model/{quote(model_id, safe='')}/{operation}"
