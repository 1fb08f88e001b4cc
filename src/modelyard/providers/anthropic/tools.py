"""Tools, tool choice and JSON answers as Anthropic Messages API fields.

Tools become `{name, description, input_schema}`; `tool_choice` auto/none/required/named become
`auto`/`none`/`any`/`tool`, and `parallel_tool_calls: false` is `disable_parallel_tool_use`.
A JSON answer (`response_format` json_schema or json_object): API version 2023-06-01 has no JSON
mode, so the request is given one more tool, the answer tool, whose input schema is the answer's
schema, and the model is made to call it (Anthropic's documented way: "JSON mode" in its
tool-use guide). The call's input is returned as the message content (`reply.py`, `stream.py`)
and the gateway validates it against the schema as it does for every provider. Beside callable
tools the model must call some tool: one of the caller's, or the answer tool to answer.
"""

from __future__ import annotations

from typing import Any

from modelyard.errors import InvalidParameter, UnsupportedSchema
from modelyard.protocol.chat import ChatCompletionRequest
from modelyard.protocol.tools import (
    FunctionDefinition,
    JsonObjectFormat,
    JsonSchemaFormat,
    NamedToolChoice,
)

# The answer tool's name for `json_object` (a `json_schema` answer takes the schema's name).
JSON_OBJECT_TOOL = "json_answer"
ANSWER_TOOL_DESCRIPTION = (
    "Give your answer with this tool: its input is your whole answer, as JSON that matches the "
    "input schema."
)


def tool_use(request: ChatCompletionRequest, body: dict[str, Any]) -> str | None:
    """Set `tools` and `tool_choice`; the name of the JSON answer tool when one is offered."""
    tools = [_tool(tool.function) for tool in request.tools or []]
    choice = _tool_choice(request)
    answer = _answer_tool(request, tools)
    if answer is not None:
        mode = choice["type"] if choice is not None else ("auto" if tools else "none")
        if mode == "auto":
            # The model may call a tool or answer: it must call one, and the answer is a call
            # of the answer tool.
            choice = {**(choice or {}), "type": "any"}
            tools.append(answer)
        elif mode == "none":
            choice = {"type": "tool", "name": answer["name"]}
            tools.append(answer)
        else:
            answer = None  # a call of the caller's tools is required: there is no content
    if tools:
        body["tools"] = tools
    if choice is not None:
        body["tool_choice"] = choice
    return answer["name"] if answer is not None else None


def _tool(function: FunctionDefinition) -> dict[str, Any]:
    schema = function.parameters_schema()
    tool: dict[str, Any] = {"name": function.name}
    if function.description:
        tool["description"] = function.description
    # Anthropic requires an object schema; one without `type` describes an object's members.
    tool["input_schema"] = schema if "type" in schema else {"type": "object", **schema}
    # `strict` needs no translation: the gateway validates every call against its schema.
    return tool


def _tool_choice(request: ChatCompletionRequest) -> dict[str, Any] | None:
    if not request.tools:
        return None
    choice = request.tool_choice
    if isinstance(choice, NamedToolChoice):
        shape: dict[str, Any] = {"type": "tool", "name": choice.function.name}
    elif choice == "none":
        return {"type": "none"}
    elif choice in ("required", "any"):
        shape = {"type": "any"}
    elif choice == "auto" or request.parallel_tool_calls is False:
        shape = {"type": "auto"}
    else:
        return None  # Anthropic's default is auto
    if request.parallel_tool_calls is False:
        shape["disable_parallel_tool_use"] = True
    return shape


def _answer_tool(
    request: ChatCompletionRequest, tools: list[dict[str, Any]]
) -> dict[str, Any] | None:
    response_format = request.response_format
    if isinstance(response_format, JsonSchemaFormat):
        spec = response_format.json_schema
        name, schema, param = spec.name, spec.json_schema, "response_format.json_schema"
        description = ANSWER_TOOL_DESCRIPTION
        if spec.description:
            description = f"{spec.description}\n\n{ANSWER_TOOL_DESCRIPTION}"
        if schema.get("type") != "object":
            raise UnsupportedSchema(
                "Anthropic deployments answer in JSON through a tool, whose input must be an "
                "object: the schema's type must be 'object'.",
                param=f"{param}.schema",
            )
    elif isinstance(response_format, JsonObjectFormat):
        name, param = JSON_OBJECT_TOOL, "response_format"
        schema, description = {"type": "object"}, ANSWER_TOOL_DESCRIPTION
    else:
        return None
    if any(tool["name"] == name for tool in tools):
        raise InvalidParameter(
            f"A tool is named '{name}', the name this answer's JSON takes on Anthropic "
            "deployments: rename one of them.",
            param=f"{param}.name" if param != "response_format" else param,
        )
    return {"name": name, "description": description, "input_schema": schema}
