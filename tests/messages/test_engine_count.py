"""The local engine's `count` command (what `/v1/messages/count_tokens` asks of a local model):
driven through the gateway's own `EngineProcess` on a real engine process, no HTTP."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable

import orjson
import pytest

from modelyard.engine.wire import CountCommand, encode_frame
from modelyard.errors import EngineUnavailable
from modelyard.protocol.chat import ChatCompletionRequest
from modelyard.providers.llamacpp.grammar import grammar_source
from modelyard.structured.contract import contract_for
from tests.llamacpp.engine_harness import (
    LONG_STORY_PROMPT,
    UNENDING_STORY,
    chat_pieces,
    collect,
    command,
    running_engine,
)

pytestmark = [pytest.mark.anyio, pytest.mark.model]
QUESTION = "Name three colours."


async def until(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        await asyncio.sleep(0.01)


def test_a_count_command_survives_the_wire() -> None:
    sent = CountCommand(7, [("<|im_start|>user\n", False), ("Hi", True)])
    received = orjson.loads(encode_frame(sent.to_wire())[4:])
    assert received["op"] == "count"
    assert CountCommand.from_wire(received) == sent


async def test_a_count_is_the_prompt_a_generation_evaluates_and_waits_for_no_slot() -> None:
    async with running_engine(parallel=1) as engine:
        counted = await engine.count(chat_pieces(QUESTION))
        outcome = await collect(await engine.open(command(QUESTION, max_tokens=4)))
        assert outcome.usage is not None and counted == outcome.usage.prompt_tokens
        story = ChatCompletionRequest.model_validate(
            {
                "model": "m",
                "messages": LONG_STORY_PROMPT,
                "response_format": {"type": "json_schema", "json_schema": UNENDING_STORY},
            }
        )
        grammar = grammar_source(contract_for(story))
        busy = await engine.open(command("Write a story.", max_tokens=1500, grammar=grammar))
        try:
            await until(lambda: engine.queue_state() == (0, 1))  # the only slot generates
            assert await asyncio.wait_for(engine.count(chat_pieces(QUESTION)), 5) == counted
        finally:
            busy.cancel()
            await collect(busy)


async def test_a_count_asked_of_a_dead_engine_is_refused_as_unavailable() -> None:
    async with running_engine(parallel=1) as engine:
        assert engine.pid is not None
        os.kill(engine.pid, signal.SIGKILL)
        await until(lambda: engine.info is None)
        with pytest.raises(EngineUnavailable):
            await engine.count(chat_pieces("Hi"))
