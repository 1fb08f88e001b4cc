"""The `llamacpp` provider: chat on GGUF models, each served by an engine process of its own.

Each deployment gets one `EngineProcess` (see `engine_process.py`). Admission happens in
`open_chat`, before any byte of the response exists: the prompt is rendered with the model's own
template on the gateway, cut into template text and message content, and sent to the engine,
which tokenizes it, checks it against the context window, compiles its grammar, and queues it or
says why not; a full queue is a 503 here, before anything is sent. The same rendered prompt can
be counted without generating (`count_prompt_tokens`, a `TokenCounter`), exactly as its usage
would report it.
"""

from __future__ import annotations

import logging
import os

from modelyard.catalog.cards import Capability, Deployment, ModelCard
from modelyard.engine.wire import EngineInfo, Sampling
from modelyard.errors import (
    EngineUnavailable,
    InvalidParameter,
    UnsupportedParameter,
    UnsupportedSchema,
)
from modelyard.observability.metrics import MetricSample
from modelyard.observability.tracing import RequestTrace, request_trace, traced
from modelyard.protocol.chat import ChatCompletionRequest
from modelyard.providers.base import ChatStream
from modelyard.providers.llamacpp.chat_template import ChatTemplate
from modelyard.providers.llamacpp.engine_process import EngineProcess, EngineSpec, EngineStatus
from modelyard.providers.llamacpp.engine_stream import EngineStream
from modelyard.providers.llamacpp.grammar import failing_schema_param, grammar_source
from modelyard.providers.llamacpp.locate import locate_gguf
from modelyard.providers.llamacpp.prompt import prompt_messages
from modelyard.providers.llamacpp.prompt_pieces import PromptBuilder
from modelyard.providers.llamacpp.tool_call_stream import ToolCallStream
from modelyard.structured.contract import OutputContract

log = logging.getLogger(__name__)

ENFORCED_BY_GRAMMAR = frozenset({Capability.TOOLS, Capability.JSON_OUTPUT, Capability.JSON_SCHEMA})


class LlamaCppProvider:
    def __init__(
        self,
        deployments: list[tuple[Deployment, ModelCard]],
        threads: int,
        queue_depth: int,
        parallel: int,
    ) -> None:
        """Find every model's weights now, so a missing file stops start-up before binding."""
        n_threads = threads or (os.cpu_count() or 1)
        self._engines: dict[str, EngineProcess] = {}
        self._builders: dict[str, tuple[EngineInfo, PromptBuilder]] = {}
        for deployment, card in deployments:
            assert deployment.weights is not None
            spec = EngineSpec(
                deployment=deployment.id,
                gguf=locate_gguf(deployment.weights),
                context_window=int(deployment.options.get("context_window", card.context_window)),
                parallel=int(deployment.options.get("parallel", parallel)),
                threads=n_threads,
                flash_attention=bool(deployment.options.get("flash_attention", False)),
            )
            self._engines[deployment.id] = EngineProcess(spec, queue_depth)

    async def start(self) -> None:
        """Start each model's engine process; they load in the background, `unready` says
        which are not serving yet."""
        for engine in self._engines.values():
            engine.start()

    async def stop(self) -> None:
        for engine in self._engines.values():
            await engine.stop()

    def engine(self, deployment_id: str) -> EngineProcess:
        return self._engines[deployment_id]

    def unready(self) -> dict[str, str]:
        return {
            deployment_id: engine.reason
            for deployment_id, engine in self._engines.items()
            if engine.status != EngineStatus.READY
        }

    def healthy(self, deployment_id: str) -> bool:
        engine = self._engines.get(deployment_id)
        return engine is not None and engine.status == EngineStatus.READY

    def metric_samples(self) -> list[MetricSample]:
        samples = []
        for deployment_id, engine in self._engines.items():
            waiting, running = engine.queue_state()
            counters = engine.counters
            labels = {"deployment": deployment_id}

            def sample(name: str, kind: str, help_text: str, value: float) -> MetricSample:
                return MetricSample(name, kind, help_text, value, labels)  # noqa: B023

            samples += [
                sample("modelyard_local_model_ready", "gauge", "1 when the engine serves",
                       float(engine.status == EngineStatus.READY)),
                sample("modelyard_local_queue_waiting", "gauge",
                       "Requests waiting for a slot", waiting),
                sample("modelyard_local_queue_capacity", "gauge",
                       "Requests that may wait for a slot; one more is refused",
                       engine.queue_capacity),
                sample("modelyard_local_busy", "gauge", "Sequences generating now", running),
                sample("modelyard_local_slots", "gauge", "Sequences the engine decodes together",
                       engine.spec.parallel),
                sample("modelyard_local_jobs_completed_total", "counter",
                       "Generations run to the end", counters.completed),
                sample("modelyard_local_jobs_cancelled_total", "counter",
                       "Generations stopped because the client left", counters.cancelled),
                sample("modelyard_local_jobs_failed_total", "counter",
                       "Generations that failed or were lost with their engine", counters.failed),
                sample("modelyard_local_completion_tokens_total", "counter",
                       "Tokens generated", counters.completion_tokens),
                sample("modelyard_local_prompt_tokens_total", "counter",
                       "Prompt tokens of finished generations", counters.prompt_tokens),
                sample("modelyard_local_engine_restarts_total", "counter",
                       "Times the engine process ended and was started again", counters.restarts),
            ]  # fmt: skip
            samples += [
                MetricSample(
                    "modelyard_local_engine_state",
                    "gauge",
                    "The state of the deployment's engine: 1 for the current one",
                    float(engine.status == status),
                    {**labels, "state": str(status)},
                )
                for status in EngineStatus
            ]
        return samples

    def enforced_capabilities(self) -> frozenset[Capability]:
        return ENFORCED_BY_GRAMMAR

    async def open_chat(
        self,
        request: ChatCompletionRequest,
        card: ModelCard,
        deployment: Deployment,
        contract: OutputContract,
        caller: str = "",
    ) -> ChatStream:
        if request.model_extra:
            names = ", ".join(f"'{name}'" for name in sorted(request.model_extra))
            raise UnsupportedParameter(
                f"The local engine cannot honour pass-through parameters {names}.",
                param=sorted(request.model_extra)[0],
            )
        engine = self._engines[deployment.id]
        requested = _requested_max_tokens(request, card)
        pieces = self._pieces(request, deployment.id, engine, contract)
        # `constrained_decoding: false` lets the model write freely (the schema is still in the
        # prompt and the gateway still validates the output): to measure what the grammar buys.
        constrained = bool(deployment.options.get("constrained_decoding", True))
        grammar = None
        if constrained and contract.constrained:
            with traced("grammar compile"):
                grammar = grammar_source(contract)
        seed = request.sampling_seed()
        try:
            stream = await engine.open(
                {
                    "pieces": pieces,
                    "sampling": Sampling(
                        temperature=1.0 if request.temperature is None else request.temperature,
                        top_p=1.0 if request.top_p is None else request.top_p,
                        top_k=request.top_k or 0,
                        presence_penalty=request.presence_penalty or 0.0,
                        frequency_penalty=request.frequency_penalty or 0.0,
                        seed=seed if seed is not None else int.from_bytes(os.urandom(4), "big"),
                    ),
                    "max_tokens": requested,
                    "max_output_tokens": card.max_output_tokens,
                    "stops": list(request.stop_sequences()),
                    "choices": request.choice_count(),
                    "grammar": grammar,
                    "fairness_key": caller,
                    # Free text may come instead of a call only in "auto" mode without a schema.
                    "close_within_budget": grammar is not None
                    and not (contract.tool_mode == "auto" and contract.json_schema is None),
                }
            )
        except UnsupportedSchema as exc:
            raise UnsupportedSchema(exc.message, param=failing_schema_param(contract)) from None
        trace = request_trace()
        if trace is not None:
            _trace_engine_times(trace, stream)
        if contract.tool_mode == "none":
            return stream
        tools = contract.callable_tools
        forced = tools[0].name if contract.tool_mode == "required" and len(tools) == 1 else None
        return ToolCallStream(stream, forced)

    async def count_prompt_tokens(
        self,
        request: ChatCompletionRequest,
        card: ModelCard,
        deployment: Deployment,
        contract: OutputContract,
    ) -> int:
        engine = self._engines[deployment.id]
        return await engine.count(self._pieces(request, deployment.id, engine, contract))

    def _pieces(
        self,
        request: ChatCompletionRequest,
        deployment_id: str,
        engine: EngineProcess,
        contract: OutputContract,
    ) -> list[tuple[str, bool]]:
        """The prompt the model reads: the messages, with the contract's instructions written
        in, rendered by its template and cut into template text and message content."""
        builder = self._builder(deployment_id, engine)
        messages = prompt_messages(request.messages, contract, request.safe_prompt)
        return builder.pieces(messages)

    def _builder(self, deployment_id: str, engine: EngineProcess) -> PromptBuilder:
        """The prompt builder of the engine's current life (a restart may bring another)."""
        info = engine.info
        if info is None:
            raise EngineUnavailable(
                f"The local model deployment '{deployment_id}' is not available: its engine is "
                f"{engine.status.value} ({engine.reason}).",
                retry_after_s=2,
            )
        cached = self._builders.get(deployment_id)
        if cached is not None and cached[0] is info:
            return cached[1]
        builder = PromptBuilder(
            ChatTemplate(info.chat_template, bos_token=info.bos_text, eos_token=info.eos_text),
            info.special_texts,
            info.max_token_bytes,
            info.context_window,
        )
        self._builders[deployment_id] = (info, builder)
        return builder


def _trace_engine_times(trace: RequestTrace, stream: EngineStream) -> None:
    """Spans over the engine's admission of the request (tokenized, checked against the
    context window, its grammar compiled for the model's tokenizer) and its wait for a slot."""
    admission = trace.start("local engine admission", start_ns=stream.sent_ns)
    admission.end(stream.admitted_ns)
    waiting = trace.start("local queue wait", start_ns=stream.admitted_ns)
    if stream.started:  # the slot came with the admission
        waiting.end(stream.started_ns)
    else:
        stream.on_started = waiting.end


def _requested_max_tokens(request: ChatCompletionRequest, card: ModelCard) -> int | None:
    requested = request.requested_max_tokens()
    param = "max_completion_tokens" if request.max_completion_tokens is not None else "max_tokens"
    if requested is not None and requested > card.max_output_tokens:
        raise InvalidParameter(
            f"{param} is too large: {requested}. The model '{card.id}' supports at most "
            f"{card.max_output_tokens} completion tokens.",
            param=param,
        )
    return requested
