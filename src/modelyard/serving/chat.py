"""The chat use-case: from a validated request and a Principal to an admitted generation.

`open_chat` does everything that can fail with a clean HTTP status (resolve the model, check
capabilities, let the provider admit the request) before any output exists. The returned
`ChatRun` then yields either one completion or a sequence of chunks; once chunks have started,
failures surface as exceptions the SSE layer turns into an in-band error.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from modelyard.auth.principal import Principal
from modelyard.catalog.cards import Capability, Deployment, ModelCard
from modelyard.catalog.catalog import Catalog
from modelyard.errors import InvalidParameter, InvalidRequest, ModelNotFound, NotReady
from modelyard.protocol import chat_response
from modelyard.protocol.chat import ChatCompletionRequest, ImagePart, UserMessage
from modelyard.protocol.chat_response import JsonObject
from modelyard.providers.base import ChatStream, ChoiceFinished, Failed, Finished, TextDelta, Usage
from modelyard.providers.registry import ProviderRegistry


@dataclass
class ChatRun:
    completion_id: str
    created: int
    card: ModelCard
    deployment: Deployment
    route_reason: str
    request: ChatCompletionRequest
    stream: ChatStream

    async def complete(self) -> JsonObject:
        """Wait for the whole generation and shape it as one chat.completion."""
        count = self.request.choice_count()
        texts: list[list[str]] = [[] for _ in range(count)]
        finish_reasons = ["stop"] * count
        async for event in self.stream:
            if isinstance(event, TextDelta):
                texts[event.choice].append(event.text)
            elif isinstance(event, ChoiceFinished):
                finish_reasons[event.choice] = event.finish_reason
            elif isinstance(event, Finished):
                return chat_response.completion(
                    self.completion_id,
                    self.created,
                    self.card.id,
                    ["".join(parts) for parts in texts],
                    finish_reasons,
                    event.usage,
                )
            elif isinstance(event, Failed):
                raise event.error
        raise NotReady("the generation ended without a result")

    async def chunks(self) -> AsyncIterator[JsonObject]:
        """The stream as chat.completion.chunk objects; cancels generation if abandoned."""
        ids = (self.completion_id, self.created, self.card.id)
        started: set[int] = set()
        held_finish: ChoiceFinished | None = None
        last_choice = self.request.choice_count() - 1
        try:
            async for event in self.stream:
                if isinstance(event, TextDelta):
                    delta: JsonObject = {"content": event.text}
                    if event.choice not in started:
                        started.add(event.choice)
                        delta = {"role": "assistant", "content": event.text}
                    yield chat_response.chunk(*ids, event.choice, delta)
                elif isinstance(event, ChoiceFinished):
                    if event.choice not in started:
                        started.add(event.choice)
                        yield chat_response.chunk(
                            *ids, event.choice, {"role": "assistant", "content": ""}
                        )
                    if event.choice == last_choice:
                        # Usage rides on the last chunk (Mistral and Azure never ask for it).
                        held_finish = event
                    else:
                        yield chat_response.chunk(*ids, event.choice, {}, event.finish_reason)
                elif isinstance(event, Finished):
                    for chunk in self._closing_chunks(held_finish, event.usage):
                        yield chunk
                    return
                elif isinstance(event, Failed):
                    raise event.error
        finally:
            self.stream.cancel()

    def _closing_chunks(self, finish: ChoiceFinished | None, usage: Usage) -> list[JsonObject]:
        ids = (self.completion_id, self.created, self.card.id)
        index = finish.choice if finish else 0
        reason = finish.finish_reason if finish else "stop"
        if self.request.wants_stream_usage():
            return [
                chat_response.chunk(*ids, index, {}, reason),
                chat_response.usage_chunk(*ids, usage),
            ]
        return [chat_response.chunk(*ids, index, {}, reason, usage=usage)]


class ChatService:
    def __init__(self, catalog: Catalog, providers: ProviderRegistry, max_choices: int) -> None:
        self._catalog = catalog
        self._providers = providers
        self._max_choices = max_choices

    async def open_chat(
        self, request: ChatCompletionRequest, principal: Principal, request_id: str
    ) -> ChatRun:
        resolution = self._catalog.resolve(request.model)
        card = resolution.card
        self._check_capabilities(request, card)
        if not resolution.deployments:
            raise ModelNotFound(f"The model '{request.model}' has no deployment.", param="model")
        deployment = resolution.deployments[0]
        provider = self._providers.for_deployment(deployment)
        stream = await provider.open_chat(request, card, deployment)
        return ChatRun(
            completion_id=f"chatcmpl-{request_id}",
            created=int(time.time()),
            card=card,
            deployment=deployment,
            route_reason="the only deployment of this model",
            request=request,
            stream=stream,
        )

    def _check_capabilities(self, request: ChatCompletionRequest, card: ModelCard) -> None:
        if not card.supports(Capability.CHAT):
            raise InvalidRequest(
                f"The model '{card.id}' does not support chat completions.", param="model"
            )
        if request.stream and not card.supports(Capability.STREAMING):
            raise InvalidParameter(
                f"The model '{card.id}' does not support streaming.", param="stream"
            )
        if request.stream_options is not None and not request.stream:
            raise InvalidParameter(
                "stream_options is only allowed when stream is true.", param="stream_options"
            )
        if request.choice_count() > self._max_choices:
            raise InvalidParameter(
                f"n must be at most {self._max_choices} on this gateway; got {request.n}.",
                param="n",
            )
        if not card.supports(Capability.VISION):
            for m_index, message in enumerate(request.messages):
                if isinstance(message, UserMessage) and isinstance(message.content, list):
                    for p_index, part in enumerate(message.content):
                        if isinstance(part, ImagePart):
                            raise InvalidParameter(
                                f"The model '{card.id}' does not accept image input.",
                                param=f"messages[{m_index}].content[{p_index}]",
                            )
