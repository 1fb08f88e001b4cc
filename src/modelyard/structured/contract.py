"""The output contract of a chat request: what the model must produce, derived once from
`tools`, `tool_choice`, `parallel_tool_calls` and `response_format`.

Every schema in it has passed `check_schema`, so whatever enforces the contract (a grammar on the
local engine, validation for remote providers) can rely on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from modelyard.catalog.cards import Capability
from modelyard.errors import InvalidParameter
from modelyard.protocol.chat import ChatCompletionRequest
from modelyard.protocol.tools import JsonObjectFormat, JsonSchemaFormat, NamedToolChoice
from modelyard.structured.schema_support import check_schema

ToolMode = Literal["none", "auto", "required"]


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class OutputContract:
    # The content must be JSON matching this schema; None means free text.
    json_schema: dict[str, Any] | None = None
    schema_name: str | None = None
    # Every tool the request declared (a named tool_choice narrows `callable_tools`, not this).
    declared_tools: tuple[ToolSpec, ...] = ()
    callable_tools: tuple[ToolSpec, ...] = ()
    tool_mode: ToolMode = "none"
    parallel_tool_calls: bool = True

    @property
    def constrained(self) -> bool:
        return self.json_schema is not None or self.tool_mode != "none"

    def required_capabilities(self) -> frozenset[Capability]:
        needed = set()
        if self.tool_mode != "none":
            needed.add(Capability.TOOLS)
        if self.schema_name is not None:
            needed.add(Capability.JSON_SCHEMA)
        elif self.json_schema is not None:
            needed.add(Capability.JSON_OUTPUT)
        return frozenset(needed)

    def declared_tool(self, name: str) -> ToolSpec | None:
        return next((tool for tool in self.declared_tools if tool.name == name), None)


FREE_TEXT = OutputContract()


def contract_for(request: ChatCompletionRequest) -> OutputContract:
    if not request.tools and request.response_format is None:
        if request.tool_choice not in (None, "none", "auto"):
            raise InvalidParameter("tool_choice requires tools.", param="tool_choice")
        return FREE_TEXT
    declared = _declared_tools(request)
    json_schema, schema_name = _content_schema(request)
    mode, callable_tools = _tool_mode(request, declared)
    return OutputContract(
        json_schema=json_schema,
        schema_name=schema_name,
        declared_tools=declared,
        callable_tools=callable_tools,
        tool_mode=mode,
        parallel_tool_calls=request.parallel_tool_calls is not False and mode != "none",
    )


def _declared_tools(request: ChatCompletionRequest) -> tuple[ToolSpec, ...]:
    tools: list[ToolSpec] = []
    for index, tool in enumerate(request.tools or []):
        function = tool.function
        if any(existing.name == function.name for existing in tools):
            raise InvalidParameter(
                f"Two tools are named '{function.name}'; tool names must be unique.",
                param=f"tools[{index}].function.name",
            )
        parameters = function.parameters_schema()
        check_schema(parameters, f"tools[{index}].function.parameters")
        tools.append(ToolSpec(function.name, function.description or "", parameters))
    return tuple(tools)


def _content_schema(request: ChatCompletionRequest) -> tuple[dict[str, Any] | None, str | None]:
    response_format = request.response_format
    if isinstance(response_format, JsonObjectFormat):
        return {"type": "object"}, None
    if isinstance(response_format, JsonSchemaFormat):
        schema = response_format.json_schema.json_schema
        check_schema(schema, "response_format.json_schema.schema")
        return schema, response_format.json_schema.name
    return None, None


def _tool_mode(
    request: ChatCompletionRequest, declared: tuple[ToolSpec, ...]
) -> tuple[ToolMode, tuple[ToolSpec, ...]]:
    choice = request.tool_choice
    if not declared:
        if choice not in (None, "none", "auto"):
            raise InvalidParameter("tool_choice requires tools.", param="tool_choice")
        return "none", ()
    if isinstance(choice, NamedToolChoice):
        named = next((tool for tool in declared if tool.name == choice.function.name), None)
        if named is None:
            raise InvalidParameter(
                f"tool_choice names the function '{choice.function.name}', which is not in tools.",
                param="tool_choice.function.name",
            )
        return "required", (named,)
    if choice == "none":
        return "none", ()
    if choice in ("required", "any"):
        return "required", declared
    return "auto", declared
