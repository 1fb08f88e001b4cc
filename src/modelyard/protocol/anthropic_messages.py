"""The Anthropic Messages request (`POST /v1/messages` and `/v1/messages/count_tokens`) and its
translation onto the canonical chat request.

Validation is strict like the chat request's: unknown keys are refused by name, and parameters
Anthropic defines that Modelyard does not honour (extended thinking, server tools, containers,
MCP servers, ...) are refused as `unsupported_parameter` rather than ignored. Hints that change
nothing but the upstream's bill (`cache_control`, `citations` on text sent back) are accepted
and dropped.

The translation: `system` becomes the first message; `tool_use` blocks become the assistant's
tool calls (their input serialized as JSON arguments); `tool_result` blocks become tool messages,
in order and before the rest of their user turn; text blocks are joined with newlines. Errors
found later on the canonical request name canonical parameters; `Translation.anthropic_param`
names them as this request spelled them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modelyard.errors import InvalidParameter, InvalidRequest, UnsupportedParameter
from modelyard.protocol.chat import ChatCompletionRequest
from modelyard.protocol.tools import FUNCTION_NAME

# Top-level parameters of the Messages API that this gateway does not honour yet.
UNSUPPORTED_PARAMETERS = frozenset(
    {
        "thinking",
        "container",
        "mcp_servers",
        "service_tier",
        "context_management",
        "inference_geo",
        "speed",
        "diagnostics",
    }
)
# Content blocks Anthropic defines that have no canonical form here.
UnsupportedBlockType = Literal[
    "document",
    "search_result",
    "thinking",
    "redacted_thinking",
    "server_tool_use",
    "mcp_tool_use",
    "mcp_tool_result",
    "web_search_tool_result",
    "web_fetch_tool_result",
    "code_execution_tool_result",
    "bash_code_execution_tool_result",
    "text_editor_code_execution_tool_result",
    "tool_search_tool_result",
    "container_upload",
]
# The canonical request's own bounds, repeated here so that a valid Messages request always
# makes a valid canonical one.
MAX_STOP_SEQUENCES = 4
MAX_TOOLS = 128
TOOL_ERROR_PREFIX = "Error: "


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class CacheControl(_Wire):
    type: Literal["ephemeral"]
    ttl: Literal["5m", "1h"] | None = None


class TextBlock(_Wire):
    type: Literal["text"]
    text: str
    cache_control: CacheControl | None = None
    citations: list[dict[str, Any]] | None = None


class Base64Source(_Wire):
    type: Literal["base64"]
    media_type: str
    data: str


class UrlSource(_Wire):
    type: Literal["url"]
    url: str


class ImageBlock(_Wire):
    type: Literal["image"]
    source: Annotated[Base64Source | UrlSource, Field(discriminator="type")]
    cache_control: CacheControl | None = None


class ToolUseBlock(_Wire):
    type: Literal["tool_use"]
    id: Annotated[str, Field(min_length=1)]
    name: Annotated[str, Field(pattern=FUNCTION_NAME)]
    input: dict[str, Any]
    cache_control: CacheControl | None = None


class ToolResultBlock(_Wire):
    type: Literal["tool_result"]
    tool_use_id: Annotated[str, Field(min_length=1)]
    content: str | list[TextBlock] = ""
    is_error: bool = False
    cache_control: CacheControl | None = None


class UnsupportedBlock(BaseModel):
    """A block type Anthropic defines and the gateway cannot pass on; refused by name."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)
    type: UnsupportedBlockType


UserBlock = Annotated[
    TextBlock | ImageBlock | ToolResultBlock | UnsupportedBlock, Field(discriminator="type")
]
AssistantBlock = Annotated[TextBlock | ToolUseBlock | UnsupportedBlock, Field(discriminator="type")]


class UserTurn(_Wire):
    role: Literal["user"]
    content: str | list[UserBlock]


class AssistantTurn(_Wire):
    role: Literal["assistant"]
    content: str | list[AssistantBlock]


Turn = Annotated[UserTurn | AssistantTurn, Field(discriminator="role")]


class ToolDefinition(BaseModel):
    """A client tool. Server tools (a `type` other than `custom`) and tool options the gateway
    cannot honour are refused in the translation, by name."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)
    name: Annotated[str, Field(pattern=FUNCTION_NAME)]
    type: str | None = None
    description: str | None = None
    input_schema: dict[str, Any] | None = None
    cache_control: CacheControl | None = None
    strict: bool | None = None


class AutoChoice(_Wire):
    type: Literal["auto"]
    disable_parallel_tool_use: bool | None = None


class AnyChoice(_Wire):
    type: Literal["any"]
    disable_parallel_tool_use: bool | None = None


class NamedChoice(_Wire):
    type: Literal["tool"]
    name: Annotated[str, Field(min_length=1)]
    disable_parallel_tool_use: bool | None = None


class NoChoice(_Wire):
    type: Literal["none"]


ToolChoice = Annotated[AutoChoice | AnyChoice | NamedChoice | NoChoice, Field(discriminator="type")]


class JsonOutputFormat(_Wire):
    type: Literal["json_schema"]
    # `schema` is the wire name; pydantic reserves the attribute.
    json_schema: Annotated[dict[str, Any], Field(alias="schema")]


class OutputConfig(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True, frozen=True)
    format: JsonOutputFormat | None = None


class Metadata(_Wire):
    user_id: Annotated[str, Field(max_length=256)] | None = None


class CountTokensRequest(BaseModel):
    """What `/v1/messages/count_tokens` reads: the conversation, without generation settings."""

    # extra="allow" so that unknown keys can be refused by name with our own error code.
    model_config = ConfigDict(extra="allow", strict=True, frozen=True)

    model: Annotated[str, Field(min_length=1)]
    messages: Annotated[list[Turn], Field(min_length=1)]
    system: str | list[TextBlock] | None = None
    tools: Annotated[list[ToolDefinition], Field(max_length=MAX_TOOLS)] | None = None
    tool_choice: ToolChoice | None = None
    output_config: OutputConfig | None = None
    # Automatic prompt caching: a hint to Anthropic's own cache, nothing to honour here.
    cache_control: CacheControl | None = None


class MessagesRequest(CountTokensRequest):
    max_tokens: Annotated[int, Field(ge=1)]
    stop_sequences: Annotated[list[str], Field(max_length=MAX_STOP_SEQUENCES)] | None = None
    temperature: Annotated[float, Field(ge=0, le=1)] | None = None
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    top_k: Annotated[int, Field(ge=1, le=1000)] | None = None
    metadata: Metadata | None = None
    stream: bool | None = None


# Where a canonical message came from: the index of its Anthropic message and, for each content
# part, the index of its block (None for the system message).
Origin = tuple[int, tuple[int, ...]] | None

_CANONICAL_MESSAGE = re.compile(r"messages\[(\d+)\](?:\.content\[(\d+)\])?")
# Canonical parameter names and what this surface calls them, longest match first.
_RENAMED = (
    (re.compile(r"tools\[(\d+)\]\.function\.parameters"), r"tools[\1].input_schema"),
    (re.compile(r"tools\[(\d+)\]\.function\."), r"tools[\1]."),
    (re.compile(r"tool_choice\.function\.name"), "tool_choice.name"),
    (re.compile(r"response_format\.json_schema\.schema"), "output_config.format.schema"),
    (re.compile(r"response_format(\.json_schema)?"), "output_config.format"),
    (re.compile(r"stop\b"), "stop_sequences"),
    (re.compile(r"user\b"), "metadata.user_id"),
    (re.compile(r"max_completion_tokens\b"), "max_tokens"),
    (re.compile(r"parallel_tool_calls\b"), "tool_choice.disable_parallel_tool_use"),
)


@dataclass(frozen=True)
class Translation:
    request: ChatCompletionRequest
    origins: tuple[Origin, ...]

    def anthropic_param(self, param: str | None) -> str | None:
        """A canonical parameter path as the Messages request named it."""
        if param is None:
            return None
        located = _CANONICAL_MESSAGE.match(param)
        if located is not None:
            index = int(located.group(1))
            origin = self.origins[index] if index < len(self.origins) else None
            if origin is None:
                return "system"
            turn, blocks = origin
            path = f"messages[{turn}]"
            if located.group(2) is not None:
                part = int(located.group(2))
                path += f".content[{blocks[part] if part < len(blocks) else part}]"
            return path + param[located.end() :]
        for pattern, replacement in _RENAMED:
            if pattern.match(param):
                return pattern.sub(replacement, param, count=1)
        return param

    def located(self, error: InvalidRequest) -> InvalidRequest:
        """`error`, its parameter renamed for this surface."""
        error.param = self.anthropic_param(error.param)
        return error


def to_canonical(body: CountTokensRequest) -> Translation:
    """The canonical chat request for a Messages (or count_tokens) request."""
    messages: list[dict[str, Any]] = []
    origins: list[Origin] = []
    if body.system is not None:
        messages.append({"role": "system", "content": _joined(body.system)})
        origins.append(None)
    for index, turn in enumerate(body.messages):
        turn_messages = (
            _user_messages(turn, index)
            if isinstance(turn, UserTurn)
            else [_assistant_message(turn, index)]
        )
        for message, blocks in turn_messages:
            messages.append(message)
            origins.append((index, blocks))
    if isinstance(body.messages[-1], AssistantTurn):
        raise UnsupportedParameter(
            "A final assistant message (a prefill for the model to continue) is not supported "
            "by Modelyard yet; end the conversation with a user message.",
            param=f"messages[{len(body.messages) - 1}]",
        )
    canonical: dict[str, Any] = {"model": body.model, "messages": messages}
    if body.tools is not None:
        canonical["tools"] = [_function_tool(tool, i) for i, tool in enumerate(body.tools)]
    if body.tool_choice is not None:
        canonical.update(_tool_choice(body.tool_choice))
    if body.output_config is not None:
        response_format = _response_format(body.output_config)
        if response_format is not None:
            canonical["response_format"] = response_format
    if isinstance(body, MessagesRequest):
        canonical["max_tokens"] = body.max_tokens
        optional = {
            "stop": body.stop_sequences,
            "temperature": body.temperature,
            "top_p": body.top_p,
            "top_k": body.top_k,
            "user": body.metadata.user_id if body.metadata is not None else None,
            "stream": body.stream,
        }
        canonical.update({key: value for key, value in optional.items() if value is not None})
    translation = Translation(_validated(canonical), tuple(origins))
    return translation


def _validated(canonical: dict[str, Any]) -> ChatCompletionRequest:
    try:
        return ChatCompletionRequest.model_validate(canonical)
    except ValidationError as exc:
        # The bounds above mirror the canonical ones, so this is a gap between the two models.
        error = exc.errors(include_url=False, include_input=False)[0]
        param = ".".join(str(part) for part in error["loc"])
        raise InvalidRequest(
            f"The request cannot be expressed for this gateway: {error['msg']}.", param=param
        ) from None


def _joined(content: str | list[TextBlock]) -> str:
    if isinstance(content, str):
        return content
    return "\n".join(block.text for block in content)


def _user_messages(turn: UserTurn, index: int) -> list[tuple[dict[str, Any], tuple[int, ...]]]:
    """Tool results first (each a tool message, in order), then the turn's text and images."""
    if isinstance(turn.content, str):
        return [({"role": "user", "content": turn.content}, ())]
    results: list[tuple[dict[str, Any], tuple[int, ...]]] = []
    parts: list[dict[str, Any]] = []
    positions: list[int] = []
    for position, block in enumerate(turn.content):
        if isinstance(block, ToolResultBlock):
            text = _joined(block.content)
            result = TOOL_ERROR_PREFIX + text if block.is_error else text
            message = {"role": "tool", "tool_call_id": block.tool_use_id, "content": result}
            results.append((message, (position,)))
        elif isinstance(block, TextBlock):
            parts.append({"type": "text", "text": block.text})
            positions.append(position)
        elif isinstance(block, ImageBlock):
            parts.append({"type": "image_url", "image_url": {"url": _image_url(block)}})
            positions.append(position)
        else:
            raise _unsupported_block(block, index, position)
    if parts or not results:
        has_images = any(part["type"] == "image_url" for part in parts)
        content: str | list[dict[str, Any]] = (
            parts if has_images else "\n".join(part["text"] for part in parts)
        )
        results.append(({"role": "user", "content": content}, tuple(positions)))
    return results


def _assistant_message(turn: AssistantTurn, index: int) -> tuple[dict[str, Any], tuple[int, ...]]:
    if isinstance(turn.content, str):
        return {"role": "assistant", "content": turn.content}, ()
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for position, block in enumerate(turn.content):
        if isinstance(block, TextBlock):
            texts.append(block.text)
        elif isinstance(block, ToolUseBlock):
            arguments = _arguments(block.input, f"messages[{index}].content[{position}].input")
            calls.append(
                {
                    "id": block.id,
                    "type": "function",
                    "function": {"name": block.name, "arguments": arguments},
                }
            )
        else:
            raise _unsupported_block(block, index, position)
    message: dict[str, Any] = {"role": "assistant", "content": "\n".join(texts)}
    if calls:
        message["tool_calls"] = calls
        message["content"] = message["content"] or None
    return message, ()


def _arguments(tool_input: dict[str, Any], param: str) -> str:
    try:
        return orjson.dumps(tool_input).decode()
    except TypeError:  # integers beyond 64 bits: valid JSON that no JSON encoder here writes
        raise InvalidParameter(
            "Invalid value for 'input': integers must fit in 64 bits.", param=param
        ) from None


def _image_url(block: ImageBlock) -> str:
    source = block.source
    if isinstance(source, Base64Source):
        return f"data:{source.media_type};base64,{source.data}"
    return source.url


def _unsupported_block(block: UnsupportedBlock, index: int, position: int) -> UnsupportedParameter:
    return UnsupportedParameter(
        f"Content blocks of type '{block.type}' are not supported by Modelyard yet.",
        param=f"messages[{index}].content[{position}]",
    )


def _function_tool(tool: ToolDefinition, index: int) -> dict[str, Any]:
    if tool.type not in (None, "custom"):
        raise UnsupportedParameter(
            f"Server tools ('{tool.type}') are not supported by Modelyard; declare client tools "
            "with a name and an input_schema.",
            param=f"tools[{index}].type",
        )
    if tool.model_extra:
        name = sorted(tool.model_extra)[0]
        raise UnsupportedParameter(
            f"The tool option '{name}' is not supported by Modelyard yet.",
            param=f"tools[{index}].{name}",
        )
    if tool.input_schema is None:
        raise InvalidParameter(
            "Invalid value for 'input_schema': Field required.",
            param=f"tools[{index}].input_schema",
        )
    function: dict[str, Any] = {"name": tool.name, "parameters": tool.input_schema}
    if tool.description is not None:
        function["description"] = tool.description
    if tool.strict is not None:
        function["strict"] = tool.strict
    return {"type": "function", "function": function}


def _tool_choice(choice: AutoChoice | AnyChoice | NamedChoice | NoChoice) -> dict[str, Any]:
    chosen: dict[str, Any]
    if isinstance(choice, AutoChoice):
        chosen = {"tool_choice": "auto"}
    elif isinstance(choice, AnyChoice):
        chosen = {"tool_choice": "required"}
    elif isinstance(choice, NamedChoice):
        chosen = {"tool_choice": {"type": "function", "function": {"name": choice.name}}}
    else:
        return {"tool_choice": "none"}
    if choice.disable_parallel_tool_use:
        chosen["parallel_tool_calls"] = False
    return chosen


def _response_format(config: OutputConfig) -> dict[str, Any] | None:
    if config.model_extra:
        name = sorted(config.model_extra)[0]
        raise UnsupportedParameter(
            f"'output_config.{name}' is not supported by Modelyard yet.",
            param=f"output_config.{name}",
        )
    if config.format is None:
        return None
    return {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": config.format.json_schema, "strict": True},
    }
