"""A Responses request as the canonical chat request, and the canonical parameter names of
errors raised below as this surface names them.

`instructions` becomes the first, system message; a previous response's conversation follows;
then the input: messages keep their role, consecutive `function_call` items become one assistant
message with tool calls (joined to the assistant message just before them, the turn they belong
to), `function_call_output` items become tool messages. `text.format` becomes `response_format`,
`max_output_tokens` `max_completion_tokens`. Every canonical message remembers the parameter it
came from, so that an error about `messages[3].content[1]` is reported as `input[2].content[1]`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from modelyard.errors import InvalidParameter, ModelyardError, UnsupportedParameter
from modelyard.protocol.chat import ChatCompletionRequest
from modelyard.protocol.generation import ToolCallDelta
from modelyard.protocol.responses import (
    ContentPart,
    FunctionCallItem,
    FunctionCallOutputItem,
    FunctionTool,
    InputImage,
    InputText,
    JsonObjectFormat,
    JsonSchemaFormat,
    MessageItem,
    NamedToolChoice,
    OtherKind,
    OutputText,
    Refusal,
    ResponsesRequest,
    TextFormat,
)

JsonObject = dict[str, Any]

INSTRUCTIONS = "instructions"
PREVIOUS = "previous_response_id"


@dataclass(frozen=True)
class Translation:
    request: ChatCompletionRequest
    # The parameter each canonical message came from: "instructions", "input[2]", or
    # "previous_response_id" for the conversation it continues.
    origins: tuple[str, ...]
    # What a later turn continues from: the previous conversation and this input, as canonical
    # messages, without the instructions (which, as at OpenAI, are not carried over).
    conversation: tuple[JsonObject, ...]


def to_chat_request(body: ResponsesRequest, previous: Sequence[JsonObject] = ()) -> Translation:
    """The canonical request of `body`, continuing the conversation `previous` (canonical
    messages of a stored response); raises what the surface does not honour, by name."""
    _refuse_unhonoured(body)
    messages: list[JsonObject] = []
    origins: list[str] = []
    if body.instructions is not None:
        messages.append({"role": "system", "content": body.instructions})
        origins.append(INSTRUCTIONS)
    messages.extend(previous)
    origins.extend([PREVIOUS] * len(previous))
    turn = _input_messages(body)
    messages.extend(message for message, _ in turn)
    origins.extend(origin for _, origin in turn)
    if not messages:
        raise InvalidParameter("input must hold at least one item.", param="input")
    canonical: JsonObject = {"model": body.model, "messages": messages}
    if body.tools is not None:
        canonical["tools"] = [_tool(tool, index) for index, tool in enumerate(body.tools)]
    if body.tool_choice is not None:
        canonical["tool_choice"] = _tool_choice(body.tool_choice)
    if body.text is not None and body.text.format is not None:
        canonical["response_format"] = _response_format(body.text.format)
    for name, value in (
        ("max_completion_tokens", body.max_output_tokens),
        ("temperature", body.temperature),
        ("top_p", body.top_p),
        ("parallel_tool_calls", body.parallel_tool_calls),
        ("user", body.user),
        ("stream", body.stream),
    ):
        if value is not None:
            canonical[name] = value
    try:
        request = ChatCompletionRequest.model_validate(canonical)
    except ValidationError as exc:
        raise _invalid(exc, origins) from None
    return Translation(
        request,
        tuple(origins),
        (*previous, *(message for message, _ in turn)),
    )


def _refuse_unhonoured(body: ResponsesRequest) -> None:
    if body.include:
        raise UnsupportedParameter(
            "Modelyard does not support 'include' on this endpoint yet; remove it.",
            param="include",
        )
    if body.truncation == "auto":
        raise UnsupportedParameter(
            "Modelyard does not truncate conversations ('truncation: auto'); send "
            "'disabled' or leave it out.",
            param="truncation",
        )
    if body.background:
        raise UnsupportedParameter(
            "Modelyard does not run responses in the background; leave 'background' out.",
            param="background",
        )
    if body.text is not None and body.text.verbosity is not None:
        raise UnsupportedParameter(
            "Modelyard does not support 'text.verbosity' yet; remove it.", param="text.verbosity"
        )


def _input_messages(body: ResponsesRequest) -> list[tuple[JsonObject, str]]:
    """This turn's input as (canonical message, the input item it came from)."""
    if isinstance(body.input, str):
        return [({"role": "user", "content": body.input}, "input")]
    turn: list[tuple[JsonObject, str]] = []
    # The assistant message the next function_call joins, if the item before was part of it.
    assistant: JsonObject | None = None
    for index, item in enumerate(body.input):
        where = f"input[{index}]"
        if isinstance(item, MessageItem):
            message = _message(item, where)
            turn.append((message, where))
            assistant = message if item.role == "assistant" else None
        elif isinstance(item, FunctionCallItem):
            call = {
                "id": item.call_id,
                "type": "function",
                "function": {"name": item.name, "arguments": item.arguments},
            }
            if assistant is None:
                assistant = {"role": "assistant", "content": None, "tool_calls": []}
                turn.append((assistant, where))
            assistant.setdefault("tool_calls", []).append(call)
        elif isinstance(item, FunctionCallOutputItem):
            content = _text_content(item.output, f"{where}.output")
            turn.append(({"role": "tool", "tool_call_id": item.call_id, "content": content}, where))
            assistant = None
        else:
            raise UnsupportedParameter(
                f"Modelyard does not support input items of type '{item.type}'; send messages, "
                "function_call and function_call_output items.",
                param=f"{where}.type",
            )
    return turn


def _message(item: MessageItem, where: str) -> JsonObject:
    if isinstance(item.content, str):
        return {"role": item.role, "content": item.content}
    parts: list[JsonObject] = []
    refusals: list[str] = []
    for index, part in enumerate(item.content):
        at = f"{where}.content[{index}]"
        if isinstance(part, InputText | OutputText):
            parts.append({"type": "text", "text": part.text})
        elif isinstance(part, InputImage):
            parts.append(_image(part, item.role, at))
        elif isinstance(part, Refusal) and item.role == "assistant":
            refusals.append(part.refusal)
        elif isinstance(part, Refusal):
            raise InvalidParameter("Only assistant messages may hold a refusal.", param=at)
        else:
            raise _unsupported_part(part.type, f"{at}.type")
    message: JsonObject = {"role": item.role, "content": parts}
    if refusals:
        message["refusal"] = "\n".join(refusals)
        message["content"] = parts or None
    return message


def _image(part: InputImage, role: str, at: str) -> JsonObject:
    if role != "user":
        raise InvalidParameter("Only user messages may hold images.", param=at)
    if part.image_url is None:
        raise UnsupportedParameter(
            "Modelyard does not support images by 'file_id'; send 'image_url' (a URL or a "
            "data: URL).",
            param=f"{at}.file_id" if part.file_id is not None else f"{at}.image_url",
        )
    image: JsonObject = {"url": part.image_url}
    if part.detail is not None:
        image["detail"] = part.detail
    return {"type": "image_url", "image_url": image}


def _text_content(content: str | list[ContentPart], where: str) -> str | list[JsonObject]:
    if isinstance(content, str):
        return content
    parts: list[JsonObject] = []
    for index, part in enumerate(content):
        if not isinstance(part, InputText | OutputText):
            raise _unsupported_part(part.type, f"{where}[{index}].type")
        parts.append({"type": "text", "text": part.text})
    return parts


def _unsupported_part(kind: str, param: str) -> UnsupportedParameter:
    return UnsupportedParameter(
        f"Modelyard does not support content parts of type '{kind}' here; send text "
        "(input_text, output_text) or, in user messages, input_image.",
        param=param,
    )


def _tool(tool: FunctionTool | OtherKind, index: int) -> JsonObject:
    if not isinstance(tool, FunctionTool):
        raise UnsupportedParameter(
            f"Modelyard does not support the built-in tool '{tool.type}'; declare function tools "
            "and run the tool yourself.",
            param=f"tools[{index}].type",
        )
    function: JsonObject = {"name": tool.name}
    if tool.description is not None:
        function["description"] = tool.description
    if tool.parameters is not None:
        function["parameters"] = tool.parameters
    if tool.strict is not None:
        function["strict"] = tool.strict
    return {"type": "function", "function": function}


def _tool_choice(choice: str | NamedToolChoice) -> str | JsonObject:
    if isinstance(choice, str):
        return choice
    if choice.type != "function":
        raise UnsupportedParameter(
            f"Modelyard does not support tool_choice of type '{choice.type}'; send 'auto', "
            "'none', 'required' or a function.",
            param="tool_choice.type",
        )
    if choice.model_extra:
        name = sorted(choice.model_extra)[0]
        raise UnsupportedParameter(
            f"Unrecognized argument in tool_choice: '{name}'.", param=f"tool_choice.{name}"
        )
    if not choice.name:
        raise InvalidParameter("tool_choice of type 'function' needs a name.", param="tool_choice")
    return {"type": "function", "function": {"name": choice.name}}


def _response_format(fmt: TextFormat | JsonObjectFormat | JsonSchemaFormat) -> JsonObject:
    if isinstance(fmt, JsonSchemaFormat):
        spec: JsonObject = {"name": fmt.name, "schema": fmt.json_schema}
        if fmt.description is not None:
            spec["description"] = fmt.description
        if fmt.strict is not None:
            spec["strict"] = fmt.strict
        return {"type": "json_schema", "json_schema": spec}
    if isinstance(fmt, JsonObjectFormat):
        return {"type": "json_object"}
    return {"type": "text"}


def _invalid(exc: ValidationError, origins: Sequence[str]) -> InvalidParameter:
    """What the canonical request refused, which this surface's own checks let through."""
    error = exc.errors(include_url=False, include_input=False)[0]
    location = error["loc"]
    canonical = str(location[0]) if location else ""
    if canonical == "messages" and len(location) > 1 and isinstance(location[1], int):
        canonical = f"messages[{location[1]}]"
    param = surface_param(canonical, origins) or "input"
    return InvalidParameter(f"Invalid value for '{param}': {error['msg']}.", param=param)


# Canonical parameters this surface names otherwise; prefixes are mapped with what follows.
_RENAMED = {
    "max_completion_tokens": "max_output_tokens",
    "max_tokens": "max_output_tokens",
    "messages": "input",
}
_PREFIXES = (
    (re.compile(r"^response_format(?:\.json_schema)?"), "text.format"),
    (re.compile(r"^tools\[(\d+)\]\.function"), r"tools[\1]"),
    (re.compile(r"^tool_choice\.function"), "tool_choice"),
)
_MESSAGE = re.compile(r"^messages\[(\d+)\]")


def surface_param(param: str | None, origins: Sequence[str]) -> str | None:
    """`param` (a canonical request's) as this surface names it."""
    if param is None:
        return None
    if param in _RENAMED:
        return _RENAMED[param]
    message = _MESSAGE.match(param)
    if message is not None:
        index = int(message.group(1))
        origin = origins[index] if index < len(origins) else "input"
        rest = param[message.end() :]
        return origin + rest if origin.startswith("input[") else origin
    for pattern, replacement in _PREFIXES:
        renamed, count = pattern.subn(replacement, param, count=1)
        if count:
            return renamed
    return param


def in_surface_terms(error: ModelyardError, origins: Sequence[str]) -> ModelyardError:
    """The error, its parameter (and that name in its message) as this surface names it."""
    canonical = error.param
    param = surface_param(canonical, origins)
    if canonical is None or param is None or param == canonical:
        return error
    text = error.message
    if text.startswith(canonical):
        text = param + text[len(canonical) :]
    error.message = text.replace(f"'{canonical}'", f"'{param}'")
    error.args = (error.message,)
    error.param = param
    return error


def assistant_message(text: str, calls: Sequence[ToolCallDelta]) -> JsonObject:
    """An answer as the canonical assistant message a later turn continues from."""
    message: JsonObject = {"role": "assistant", "content": text or None}
    if calls:
        message["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in calls
        ]
    elif not text:
        message["content"] = ""
    return message
