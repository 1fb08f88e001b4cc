"""How local models that were never given a tool API are asked for, and answer with, tool calls.

Tools are described in the system prompt in the format SmolLM2 was instruction-tuned on, and a
call is written as one `<tool_call>[{"name": ..., "arguments": {...}}, ...]</tool_call>` block;
the grammar (see `grammar.py`) guarantees the block parses and names declared tools. A free-text
answer never starts with `<` (it may start with whitespace and then markup), so the very first
character tells the two apart.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from modelyard.structured.contract import ToolSpec

CALL_OPEN = "<tool_call>"
CALL_CLOSE = "</tool_call>"


def tool_system_prompt(tools: Sequence[ToolSpec], required: bool) -> str:
    described = orjson.dumps(
        [{"name": t.name, "description": t.description, "parameters": t.parameters} for t in tools]
    ).decode()
    when = (
        "You must call one or more of the functions."
        if required
        else "If none of the functions can be used, answer the question directly in plain text."
    )
    return (
        "You are an expert in composing functions. You are given a question and a set of "
        "possible functions. Based on the question, you will need to make one or more "
        f"function/tool calls to achieve the purpose. {when}\n\n"
        f"You have access to the following tools:\n<tools>{described}</tools>\n\n"
        "To call functions, reply with exactly this format and no other text:\n"
        f'{CALL_OPEN}[{{"name": "func_name1", "arguments": {{"argument1": "value1"}}}}]{CALL_CLOSE}'
    )


def json_system_prompt(schema: dict[str, object]) -> str:
    return (
        "Answer only with a JSON value that matches this JSON schema:\n"
        + orjson.dumps(schema).decode()
    )


def render_tool_calls(calls: Sequence[tuple[str, str]]) -> str:
    """An assistant turn's calls (name, JSON arguments), written back in the model's format."""
    items = [
        {"name": name, "arguments": orjson.loads(arguments or "{}")} for name, arguments in calls
    ]
    return CALL_OPEN + orjson.dumps(items).decode() + CALL_CLOSE


@dataclass(frozen=True)
class ParsedCall:
    id: str
    name: str
    arguments: str


class ToolCallExtractor:
    """Splits one choice's generated text into plain content or complete tool calls."""

    def __init__(self) -> None:
        self._mode: str | None = None  # None until the first character decides
        self._held = ""

    @property
    def calling(self) -> bool:
        return self._mode == "calls"

    def push(self, text: str) -> tuple[str, list[ParsedCall]]:
        """Feed generated text; returns (content to emit, calls completed by this text)."""
        if self._mode == "text":
            return text, []
        self._held += text
        if self._mode is None:
            if not self._held:
                return "", []
            # Exactly the grammar's rule: a call starts with "<"; text, even "\n<u>", never does.
            self._mode = "calls" if self._held.startswith("<") else "text"
            if self._mode == "text":
                content, self._held = self._held, ""
                return content, []
        return "", self._complete_calls()

    def finish(
        self, cut_short: bool = False, forced_name: str | None = None
    ) -> tuple[str, list[ParsedCall]]:
        """At the end of generation. Held text that began a call is never shown as content; when
        `max_tokens` cut the call short, the calls written so far come back as they are, the
        last one with partial arguments (as OpenAI returns them with `finish_reason: length`);
        `forced_name` names a call whose name was cut off too. Other held text is content."""
        calls = self._complete_calls()
        leftover, self._held = self._held, ""
        if self._mode == "calls":
            if cut_short and CALL_OPEN in leftover:
                block = leftover[leftover.rfind(CALL_OPEN) + len(CALL_OPEN) :]
                calls.extend(_partial_calls(block, forced_name))
            return "", calls
        if not leftover.strip():
            return "", calls
        return leftover, calls

    def _complete_calls(self) -> list[ParsedCall]:
        calls: list[ParsedCall] = []
        while (end := self._held.find(CALL_CLOSE)) != -1:
            start = self._held.find(CALL_OPEN)
            block = self._held[start + len(CALL_OPEN) : end] if start != -1 else ""
            self._held = self._held[end + len(CALL_CLOSE) :]
            calls.extend(_parse_block(block))
        return calls


NAME = re.compile(r'"name"\s*:\s*"((?:[^"\\]|\\.)*)"')
ARGUMENTS = re.compile(r'"arguments"\s*:\s*')


def _partial_calls(block: str, forced_name: str | None) -> list[ParsedCall]:
    """The calls of a block cut off before its end: complete items whole, the last partly."""
    decoder = json.JSONDecoder()
    calls: list[ParsedCall] = []
    at = block.find("[") + 1
    while at > 0:
        while at < len(block) and block[at] in " \n\t,":
            at += 1
        if at >= len(block) or block[at] != "{":
            break
        try:
            item, at = decoder.raw_decode(block, at)
        except json.JSONDecodeError:
            calls.extend(_partial_call(block[at:], forced_name))
            break
        calls.extend(_parse_block(json.dumps([item])))
    return calls


def _partial_call(text: str, forced_name: str | None) -> list[ParsedCall]:
    named = NAME.search(text)
    name = named.group(1) if named else forced_name
    if name is None:
        return []
    arguments = ARGUMENTS.search(text)
    partial = text[arguments.end() :] if arguments else ""
    return [ParsedCall(f"call_{os.urandom(12).hex()}", name, partial)]


def _parse_block(block: str) -> list[ParsedCall]:
    try:
        items = orjson.loads(block)
    except orjson.JSONDecodeError:
        return []
    if isinstance(items, dict):
        items = [items]
    calls = []
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            arguments = orjson.dumps(item.get("arguments", {})).decode()
            calls.append(ParsedCall(f"call_{os.urandom(12).hex()}", item["name"], arguments))
    return calls
