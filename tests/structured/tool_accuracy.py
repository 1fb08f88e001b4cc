"""How often the bundled SmolLM2 picks the right tool: a measurement of the model, not a test.

Every case in `tool_cases.CASES` is asked with `tool_choice: "auto"` and with `"required"`,
always with the whole toolbox declared; greedy by default, or `--temperature T --repeats N`
for N sampled runs per case (seeds 0..N-1).
Argument validity is the gateway's promise (grammar + validation) and must print 100%; the
rest is the model's quality and is only reported.

    .venv/bin/python -m tests.structured.tool_accuracy            # starts its own gateway
    .venv/bin/python -m tests.structured.tool_accuracy --base-url http://127.0.0.1:8080 --key K
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import openai

from tests.structured.tool_cases import CASES, TOOLBOX, ToolCase, call_problem
from tests.support.gateway import GatewayProcess

MODEL = "smollm2"
MAX_TOKENS = 160
MODES = ("auto", "required")


@dataclass(frozen=True)
class Outcome:
    case: ToolCase
    mode: str
    called: tuple[str, ...]
    problems: tuple[str, ...]


def ask(client: openai.OpenAI, case: ToolCase, mode: str, temperature: float, seed: int) -> Outcome:
    """One run, streamed: a tool call arrives whole in one chunk, and the first text chunk
    already decides "answered in text", so the stream is closed there (which stops the
    generation) instead of paying for a long answer nobody reads."""
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": case.prompt}],
        tools=list(TOOLBOX),
        tool_choice=mode,
        temperature=temperature,
        seed=seed,
        max_tokens=MAX_TOKENS,
        stream=True,
    )
    calls = []
    with stream:
        for chunk in stream:
            delta = chunk.choices[0].delta if chunk.choices else None
            if delta is not None and delta.content:
                break
            if delta is not None and delta.tool_calls:
                calls.extend(delta.tool_calls)
    problems = [
        problem
        for call in calls
        if call.function is not None
        and (problem := call_problem(call.function.name, call.function.arguments, TOOLBOX))
    ]
    names = tuple(call.function.name or "" for call in calls if call.function is not None)
    return Outcome(case=case, mode=mode, called=names, problems=tuple(problems))


def picks(outcomes: Iterable[Outcome]) -> str:
    """What the runs of one case chose: `get_time`, or `text:2,get_time:1` over repeats."""
    counts = Counter(",".join(o.called) or "text" for o in outcomes)
    if len(counts) == 1 and sum(counts.values()) == 1:
        return next(iter(counts))
    return ",".join(f"{choice}:{n}" for choice, n in counts.most_common())


def percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:5.1f}% ({part}/{whole})" if whole else "  n/a"


def report(outcomes: list[Outcome]) -> str:
    auto = [o for o in outcomes if o.mode == "auto"]
    auto_tool = [o for o in auto if o.case.right_tool]
    auto_none = [o for o in auto if not o.case.right_tool]
    required = [o for o in outcomes if o.mode == "required" and o.case.right_tool]
    calls = sum(len(o.called) for o in outcomes)
    invalid = sum(len(o.problems) for o in outcomes)
    tool_cases = len({o.case for o in auto_tool})

    def right(o: Outcome) -> bool:
        return o.case.right_tool in o.called

    rows = [
        ("auto, tool needed", "called any tool", sum(bool(o.called) for o in auto_tool), auto_tool),
        ("auto, tool needed", "called the right tool", sum(map(right, auto_tool)), auto_tool),
        (
            "auto, no tool needed",
            "answered in text",
            sum(not o.called for o in auto_none),
            auto_none,
        ),
        ("required", "picked the right tool", sum(map(right, required)), required),
    ]
    lines = [
        f"cases: {len(CASES)} ({tool_cases} need a tool, {len(CASES) - tool_cases} need none); "
        f"{len(TOOLBOX)} tools declared on every request",
        *(f"{mode:22}{what:24}{percent(hits, len(runs))}" for mode, what, hits, runs in rows),
        f"{'every mode':22}{'valid arguments':24}{percent(calls - invalid, calls)}",
    ]
    lines.append("per case (auto -> required):")
    for case in CASES:
        picked = [picks(o for o in outcomes if o.case == case and o.mode == m) for m in MODES]
        lines.append(f"  {case.id:16} {picked[0]:>18} -> {picked[1]:22} {case.prompt}")
    lines.extend(f"INVALID: {problem}" for o in outcomes for problem in o.problems)
    return "\n".join(lines)


def measure(client: openai.OpenAI, temperature: float, repeats: int) -> list[Outcome]:
    return [
        ask(client, case, mode, temperature, seed)
        for seed in range(repeats)
        for case in CASES
        for mode in MODES
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", help="a running gateway (default: start one)")
    parser.add_argument("--key", default="", help="API key for --base-url")
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--repeats", type=int, default=1, help="runs per case (seeds 0..N-1)")
    args = parser.parse_args(argv)
    gateway = None
    if args.base_url:
        base_url, key = args.base_url, args.key
    else:
        gateway = GatewayProcess(Path(tempfile.mkdtemp(prefix="tool-accuracy-"))).start()
        base_url, key = gateway.base_url, gateway.admin_key or ""
    started = time.monotonic()
    try:
        client = openai.OpenAI(base_url=f"{base_url}/v1", api_key=key, max_retries=0)
        outcomes = measure(client, args.temperature, args.repeats)
    finally:
        if gateway is not None:
            gateway.stop()
    print(report(outcomes))
    print(f"{len(outcomes)} requests in {time.monotonic() - started:.0f}s")


if __name__ == "__main__":
    main()
