"""The `cohere` provider: Cohere's v2 Chat API (`POST {base_url}/chat`, `base_url` ending in
`/v2`), on the shared transport.

The I/O only: translation lives in `request.py`, `answer.py` and `stream.py`, the error mapping
in `errors.py`. The credential comes from the catalog, is resolved once at start-up, and is sent
only as the `Authorization` header. No token counter: Cohere's `/tokenize` counts a text, not a
chat request as the model reads it (its template, tools and preamble), so it would not be exact.
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from modelyard.catalog.cards import Deployment, ModelCard
from modelyard.protocol.chat import ChatCompletionRequest, estimate_prompt_tokens
from modelyard.providers.cohere.answer import answer_usage, events_from_answer
from modelyard.providers.cohere.errors import read_error
from modelyard.providers.cohere.request import chat_body
from modelyard.providers.cohere.stream import events_from_stream
from modelyard.providers.credentials import resolve_credential
from modelyard.providers.remote_provider import RemoteProvider
from modelyard.providers.remote_stream import RemoteChatStream
from modelyard.providers.transport import UpstreamCall, UpstreamTransport
from modelyard.structured.contract import OutputContract

# Cohere's optional header naming the calling application, for its own diagnostics.
CLIENT_NAME = "modelyard"


class CohereProvider(RemoteProvider):
    def __init__(self, deployments: list[Deployment], transport: UpstreamTransport) -> None:
        super().__init__(transport)
        self._auth_headers: dict[str, Mapping[str, str]] = {}
        for deployment in deployments:
            assert deployment.upstream is not None
            if deployment.upstream.credential:
                secret = resolve_credential(deployment.upstream.credential, deployment.id)
                self._auth_headers[deployment.id] = {"authorization": f"Bearer {secret}"}

    async def open_chat(
        self,
        request: ChatCompletionRequest,
        card: ModelCard,
        deployment: Deployment,
        contract: OutputContract,
        caller: str = "",
    ) -> RemoteChatStream:
        assert deployment.upstream is not None
        body = chat_body(request, deployment, contract)
        streamed = bool(request.stream)
        call = UpstreamCall(
            deployment_id=deployment.id,
            upstream=deployment.upstream,
            url=f"{deployment.upstream.base_url}/chat",
            headers={
                "content-type": "application/json",
                "accept": "text/event-stream" if streamed else "application/json",
                "x-client-name": CLIENT_NAME,
                **self._auth_headers.get(deployment.id, {}),
            },
            body=orjson.dumps(body),
            read_error=read_error,
        )
        prompt_estimate = estimate_prompt_tokens(request)
        stream = RemoteChatStream()
        if streamed:
            lines = self._transport.stream_lines(call)
            first = await anext(lines, None)  # errors before the first byte are real statuses
            stream.events = events_from_stream(
                first, lines, deployment.id, prompt_estimate, stream.report
            )
        else:
            payload = await self._transport.post_json(call)
            usage = answer_usage(payload, prompt_estimate)
            stream.report(usage)
            stream.events = events_from_answer(payload, deployment.id, usage)
        return stream
