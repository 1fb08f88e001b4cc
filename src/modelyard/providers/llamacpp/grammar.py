"""The grammar of a local request's output contract, with llguidance.

An output contract becomes one llguidance grammar (JSON Schema and tool calls; see
`tool_format.py` for the call syntax). The gateway builds it here, without the model; the engine
process compiles it against the model's tokenizer and masks every token that would break it
(`modelyard/engine/constraint.py`). Measured on SmolLM2 this costs a few percent of throughput,
where llama.cpp's own GBNF engine costs about 40%.
"""

from __future__ import annotations

import functools
from typing import Any

import llguidance
import orjson

from modelyard.providers.llamacpp.tool_format import CALL_CLOSE, CALL_OPEN
from modelyard.structured.contract import OutputContract, ToolSpec

JSON_OPTIONS: Any = {"whitespace_flexible": False}
# Free text that cannot be mistaken for a tool call: it never starts with "<".
FREE_TEXT_LEXEME = r"/[^<](.|\n)*/"


def grammar_source(contract: OutputContract) -> str | None:
    """The llguidance grammar for a contract, or None when output is unconstrained."""
    if not contract.constrained:
        return None
    # Key order is kept: the grammar writes properties in schema order, which clients rely on.
    return _grammar_for(orjson.dumps(_contract_key(contract)))


def _contract_key(contract: OutputContract) -> dict[str, Any]:
    return {
        "schema": contract.json_schema,
        "mode": contract.tool_mode,
        "parallel": contract.parallel_tool_calls,
        "tools": [[t.name, t.parameters] for t in contract.callable_tools],
    }


@functools.lru_cache(maxsize=256)
def _grammar_for(key_json: bytes) -> str:
    key = orjson.loads(key_json)
    schema = key["schema"]
    if key["mode"] == "none":
        return str(llguidance.LLMatcher.grammar_from_json_schema(schema, defaults=JSON_OPTIONS))
    calls = _calls_schema(
        [ToolSpec(name, "", parameters) for name, parameters in key["tools"]], key["parallel"]
    )
    call_rule = f'call: "{CALL_OPEN}" %json {orjson.dumps(calls).decode()} "{CALL_CLOSE}"'
    if key["mode"] == "required":
        lark = f"start: call\n{call_rule}\n"
    elif schema is None:
        lark = f"start: TEXT | call\n{call_rule}\nTEXT: {FREE_TEXT_LEXEME}\n"
    else:
        lark = f"start: answer | call\n{call_rule}\nanswer: %json {orjson.dumps(schema).decode()}\n"
    return str(llguidance.LLMatcher.grammar_from_lark(lark))


def _calls_schema(tools: list[ToolSpec], parallel: bool) -> dict[str, Any]:
    """A JSON array of calls; each tool's parameters move under $defs so their refs still work."""
    definitions = {f"tool_{t.name}": _relocate(t.parameters, f"tool_{t.name}") for t in tools}
    options = [
        {
            "type": "object",
            "properties": {
                "name": {"const": t.name},
                "arguments": {"$ref": f"#/$defs/tool_{t.name}"},
            },
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for t in tools
    ]
    schema: dict[str, Any] = {
        "$defs": definitions,
        "type": "array",
        "minItems": 1,
        "items": {"anyOf": options},
    }
    if not parallel:
        schema["maxItems"] = 1
    return schema


def _relocate(schema: Any, name: str) -> Any:
    """Rewrite local refs ('#', '#/$defs/X') to point into `#/$defs/<name>`."""
    if isinstance(schema, dict):
        return {
            key: f"#/$defs/{name}{value[1:]}"
            if key == "$ref" and isinstance(value, str) and value.startswith("#")
            else _relocate(value, name)
            for key, value in schema.items()
        }
    if isinstance(schema, list):
        return [_relocate(item, name) for item in schema]
    return schema


def failing_schema_param(contract: OutputContract) -> str:
    """Which request parameter holds the schema that made a contract's grammar fail."""
    callable_names = {tool.name for tool in contract.callable_tools}
    for index, tool in enumerate(contract.declared_tools):
        if tool.name in callable_names:
            grammar = llguidance.LLMatcher.grammar_from_json_schema(
                tool.parameters, defaults=JSON_OPTIONS
            )
            if llguidance.LLMatcher.validate_grammar(grammar):
                return f"tools[{index}].function.parameters"
    return "response_format.json_schema.schema"
