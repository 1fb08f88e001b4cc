"""The `llamacpp` provider: chat on GGUF models loaded into the gateway process.

Each deployment gets one `ModelWorker` (one thread, one bounded FIFO queue). Admission happens in
`open_chat`, before any byte of the response exists: the prompt is rendered with the model's own
template and tokenized, the context window is checked, and the job is queued or refused with 503.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from modelyard.catalog.cards import Capability, Deployment, ModelCard
from modelyard.errors import (
    ContextLengthExceeded,
    EngineBusy,
    InvalidParameter,
    NotReady,
    UnsupportedParameter,
    UnsupportedSchema,
)
from modelyard.observability.metrics import MetricSample
from modelyard.protocol.chat import ChatCompletionRequest
from modelyard.protocol.embeddings import EmbeddingsRequest
from modelyard.providers.base import ChatStream, Embeddings
from modelyard.providers.llamacpp.chat_template import ChatTemplate
from modelyard.providers.llamacpp.grammar import (
    GrammarFactory,
    failing_schema_param,
    grammar_source,
)
from modelyard.providers.llamacpp.locate import locate_gguf
from modelyard.providers.llamacpp.prompt import prompt_messages
from modelyard.providers.llamacpp.stream import LocalChatStream, ToolCallStream
from modelyard.providers.llamacpp.worker import GenerationJob, ModelWorker, Sampling
from modelyard.structured.contract import OutputContract

log = logging.getLogger(__name__)

INLINE_TOKENIZE_BYTES = 16 * 1024
ENFORCED_BY_GRAMMAR = frozenset({Capability.TOOLS, Capability.JSON_OUTPUT, Capability.JSON_SCHEMA})


def load_llama(path: Path, n_ctx: int, n_threads: int) -> Any:
    import llama_cpp

    return llama_cpp.Llama(
        model_path=str(path),
        n_ctx=n_ctx,
        n_threads=n_threads,
        n_threads_batch=n_threads,
        verbose=False,
    )


@dataclass
class _Loaded:
    template: ChatTemplate
    add_bos: bool
    n_ctx: int
    llama: Any
    grammars: GrammarFactory


class LlamaCppProvider:
    def __init__(
        self, deployments: list[tuple[Deployment, ModelCard]], threads: int, queue_depth: int
    ) -> None:
        """Find every model's weights now, so a missing file stops start-up before binding."""
        n_threads = threads or (os.cpu_count() or 1)
        self._workers: dict[str, ModelWorker] = {}
        self._loaded: dict[str, _Loaded] = {}
        self._loading: list[asyncio.Task[None]] = []
        for deployment, card in deployments:
            assert deployment.weights is not None
            path = locate_gguf(deployment.weights)
            n_ctx = int(deployment.options.get("context_window", card.context_window))
            self._workers[deployment.id] = ModelWorker(
                deployment.id, partial(load_llama, path, n_ctx, n_threads), queue_depth
            )

    async def start(self) -> None:
        """Start each model's thread; models load in the background and `ready()` says when."""
        for deployment_id, worker in self._workers.items():
            worker.start()
            self._loading.append(asyncio.create_task(self._finish_loading(deployment_id, worker)))

    async def _finish_loading(self, deployment_id: str, worker: ModelWorker) -> None:
        try:
            llama = await asyncio.to_thread(worker.wait_loaded)
        except Exception as exc:
            log.error("deployment %s is unavailable: %s", deployment_id, exc)
            return
        metadata = llama.metadata
        source = metadata.get("tokenizer.chat_template")
        if not source:
            log.error("deployment %s: the GGUF file has no chat template", deployment_id)
            return
        self._loaded[deployment_id] = _Loaded(
            template=ChatTemplate(
                source,
                bos_token=_token_text(llama, llama.token_bos()),
                eos_token=_token_text(llama, llama.token_eos()),
            ),
            add_bos=bool(llama._model.add_bos_token()),
            n_ctx=int(llama.n_ctx()),
            llama=llama,
            grammars=await asyncio.to_thread(GrammarFactory, llama),
        )
        log.info("deployment %s loaded (context %d tokens)", deployment_id, llama.n_ctx())

    async def wait_ready(self) -> None:
        await asyncio.gather(*self._loading)

    async def stop(self) -> None:
        for task in self._loading:
            task.cancel()
        await asyncio.gather(*(asyncio.to_thread(w.stop) for w in self._workers.values()))

    def ready(self) -> bool:
        return len(self._loaded) == len(self._workers)

    def metric_samples(self) -> list[MetricSample]:
        samples = []
        for deployment_id, worker in self._workers.items():
            waiting, busy = worker.queue_state()
            labels = {"deployment": deployment_id}
            stats = worker.stats
            samples += [
                MetricSample(
                    "modelyard_local_model_ready",
                    "gauge",
                    "1 when the model is loaded",
                    float(worker.ready()),
                    labels,
                ),
                MetricSample(
                    "modelyard_local_queue_waiting",
                    "gauge",
                    "Requests waiting for the model",
                    waiting,
                    labels,
                ),
                MetricSample(
                    "modelyard_local_busy",
                    "gauge",
                    "1 while the model generates",
                    float(busy),
                    labels,
                ),
                MetricSample(
                    "modelyard_local_jobs_completed_total",
                    "counter",
                    "Generations run to the end",
                    stats.jobs_completed,
                    labels,
                ),
                MetricSample(
                    "modelyard_local_jobs_cancelled_total",
                    "counter",
                    "Generations stopped because the client left",
                    stats.jobs_cancelled,
                    labels,
                ),
                MetricSample(
                    "modelyard_local_completion_tokens_total",
                    "counter",
                    "Tokens generated",
                    stats.tokens_generated,
                    labels,
                ),
                MetricSample(
                    "modelyard_local_prompt_tokens_total",
                    "counter",
                    "Prompt tokens of completed generations",
                    stats.prompt_tokens,
                    labels,
                ),
            ]
        return samples

    def enforced_capabilities(self) -> frozenset[Capability]:
        return ENFORCED_BY_GRAMMAR

    async def embed(
        self, request: EmbeddingsRequest, card: ModelCard, deployment: Deployment
    ) -> Embeddings:
        raise AssertionError("the catalog gives chat models on llama.cpp no embeddings capability")

    async def open_chat(
        self,
        request: ChatCompletionRequest,
        card: ModelCard,
        deployment: Deployment,
        contract: OutputContract,
    ) -> ChatStream:
        if request.model_extra:
            names = ", ".join(f"'{name}'" for name in sorted(request.model_extra))
            raise UnsupportedParameter(
                f"The local engine cannot honour pass-through parameters {names}.",
                param=sorted(request.model_extra)[0],
            )
        loaded = self._loaded.get(deployment.id)
        if loaded is None:
            raise NotReady(f"local model '{card.id}' is not loaded yet", retry_after_s=1)
        messages = prompt_messages(request.messages, contract, request.safe_prompt)
        prompt = loaded.template.render(messages).encode("utf-8")
        tokenize = partial(loaded.llama.tokenize, prompt, loaded.add_bos, True)
        # Short prompts tokenize in microseconds; a thread hop would cost more than it saves.
        tokens: list[int] = (
            tokenize()
            if len(prompt) <= INLINE_TOKENIZE_BYTES
            else await asyncio.to_thread(tokenize)
        )
        max_tokens = _completion_budget(request, card, loaded.n_ctx, len(tokens))
        grammar = grammar_source(contract)
        if grammar is not None:
            # Compile now, so that a schema the grammar engine refuses is a 400, never a 500.
            try:
                loaded.grammars.constraint(grammar)
            except UnsupportedSchema as exc:
                raise UnsupportedSchema(exc.message, param=failing_schema_param(contract)) from None
        stream = LocalChatStream(asyncio.get_running_loop(), len(tokens))
        job = GenerationJob(
            prompt_tokens=tokens,
            sampling=Sampling(
                temperature=1.0 if request.temperature is None else request.temperature,
                top_p=1.0 if request.top_p is None else request.top_p,
                presence_penalty=request.presence_penalty or 0.0,
                frequency_penalty=request.frequency_penalty or 0.0,
                seed=request.sampling_seed(),
            ),
            max_tokens=max_tokens,
            stops=request.stop_sequences(),
            choices=request.choice_count(),
            emit=stream.emit,
            new_constraint=partial(loaded.grammars.constraint, grammar) if grammar else None,
        )
        stream.job = job
        worker = self._workers[deployment.id]
        if not worker.submit(job):
            raise EngineBusy(
                f"local model '{card.id}' is busy: its request queue is full; retry shortly",
                retry_after_s=worker.retry_after_s(),
            )
        return ToolCallStream(stream) if contract.tool_mode != "none" else stream


def _completion_budget(
    request: ChatCompletionRequest, card: ModelCard, n_ctx: int, prompt_tokens: int
) -> int:
    requested = request.requested_max_tokens()
    param = "max_completion_tokens" if request.max_completion_tokens is not None else "max_tokens"
    if requested is not None and requested > card.max_output_tokens:
        raise InvalidParameter(
            f"{param} is too large: {requested}. The model '{card.id}' supports at most "
            f"{card.max_output_tokens} completion tokens.",
            param=param,
        )
    completion = requested if requested is not None else 1
    if prompt_tokens + completion > n_ctx:
        raise ContextLengthExceeded(
            f"This model's maximum context length is {n_ctx} tokens. However, you requested "
            f"{prompt_tokens + completion} tokens ({prompt_tokens} in the messages, "
            f"{completion} in the completion). Please reduce the length of the messages or "
            f"the completion.",
            param="messages",
        )
    if requested is not None:
        return requested
    return min(card.max_output_tokens, n_ctx - prompt_tokens)


def _token_text(llama: Any, token: int) -> str:
    if token < 0:
        return ""
    return str(llama.detokenize([token], special=True).decode("utf-8", errors="replace"))
