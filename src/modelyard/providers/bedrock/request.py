"""The canonical chat request as a Bedrock Converse body (the same body serves ConverseStream).

- System and developer messages become `system` blocks; user, assistant and tool messages
  become `messages` with alternating roles (consecutive turns of one role are merged; tool
  results are `toolResult` blocks of a user turn). Images must be inline `data:` URLs.
  A message's `name` has no place in Converse and is not sent.
- Tools become `toolConfig.tools` (`toolSpec`), `tool_choice` auto / required / named becomes
  `toolChoice` auto / any / tool. Converse has no "none": without tool blocks in the
  conversation the tools are left out; with them Bedrock needs the definitions and would let the
  model call them, so `tool_choice: "none"` is refused there rather than not honoured.
- Structured output (`response_format` json_schema or json_object): Converse has no JSON mode
  that every model honours, so the schema becomes the input schema of one more tool that the
  model is made to call (`toolChoice` tool, or any when the caller's tools may be called
  instead), and that call's input is returned as the answer's text. With `tool_choice:
  "required"` the answer is tool calls and the schema has nothing to shape.
- `top_k` goes in `additionalModelRequestFields`, `user` in `requestMetadata`; `max_tokens`
  defaults to the card's `max_output_tokens`. What Converse cannot honour (`n` > 1, `seed`,
  penalties, `parallel_tool_calls: false`, temperatures above 1) is refused by name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from modelyard.catalog.cards import ModelCard
from modelyard.errors import InvalidParameter, UnsupportedParameter
from modelyard.protocol.chat import (
    AssistantMessage,
    ChatCompletionRequest,
    DeveloperMessage,
    ImagePart,
    SystemMessage,
    TextPart,
    ToolMessage,
    UserMessage,
    message_text,
)
from modelyard.protocol.tools import JsonSchemaFormat, NamedToolChoice
from modelyard.structured.contract import OutputContract

# Bedrock's `requestMetadata` values: what `user` may hold to be sent there.
METADATA_VALUE = re.compile(r"[a-zA-Z0-9\s:_@$#=/+,\-.]{0,256}", re.ASCII)
IMAGE_FORMATS = {"png": "png", "jpeg": "jpeg", "jpg": "jpeg", "gif": "gif", "webp": "webp"}
# The answer tool's name when `response_format` is json_object (json_schema names its own).
JSON_OBJECT_TOOL = "json_answer"
ANSWER_TOOL_DESCRIPTION = "Give your answer as this tool's input; it must match the input schema."


@dataclass(frozen=True)
class ConverseRequest:
    body: dict[str, Any]
    # The tool whose input is the answer's text (structured output), if any.
    answer_tool: str | None = None


def converse_request(
    request: ChatCompletionRequest, card: ModelCard, contract: OutputContract
) -> ConverseRequest:
    refuse_unhonoured(request, contract)
    system, messages, tool_blocks = converse_messages(request)
    body: dict[str, Any] = {"messages": messages}
    if system:
        body["system"] = system
    body["inferenceConfig"] = inference_config(request, card)
    tool_config, answer_tool = converse_tools(request, contract, tool_blocks)
    if tool_config is not None:
        body["toolConfig"] = tool_config
    if request.top_k is not None:
        body["additionalModelRequestFields"] = {"top_k": request.top_k}
    if request.user:
        body["requestMetadata"] = {"user": request.user}
    return ConverseRequest(body, answer_tool)


def refuse_unhonoured(request: ChatCompletionRequest, contract: OutputContract) -> None:
    if request.choice_count() > 1:
        raise InvalidParameter("Bedrock generates one choice per request; n must be 1.", param="n")
    for name in ("seed", "random_seed", "presence_penalty", "frequency_penalty"):
        if getattr(request, name) is not None:
            raise UnsupportedParameter(f"Bedrock's Converse API has no {name}.", param=name)
    if request.safe_prompt:
        raise UnsupportedParameter(
            "Bedrock's Converse API has no safe_prompt.", param="safe_prompt"
        )
    if request.temperature is not None and request.temperature > 1:
        raise InvalidParameter("Bedrock takes a temperature from 0 to 1.", param="temperature")
    if request.parallel_tool_calls is False and contract.tool_mode != "none":
        raise UnsupportedParameter(
            "Bedrock's Converse API cannot be asked for at most one tool call.",
            param="parallel_tool_calls",
        )
    if request.user and not METADATA_VALUE.fullmatch(request.user):
        raise InvalidParameter(
            "Bedrock takes a user of letters, digits, spaces and :_@$#=/+,-. only.", param="user"
        )


def inference_config(request: ChatCompletionRequest, card: ModelCard) -> dict[str, Any]:
    config: dict[str, Any] = {"maxTokens": request.requested_max_tokens() or card.max_output_tokens}
    if request.temperature is not None:
        config["temperature"] = request.temperature
    if request.top_p is not None:
        config["topP"] = request.top_p
    stops = request.stop_sequences()
    if stops:
        config["stopSequences"] = list(stops)
    return config


def converse_messages(
    request: ChatCompletionRequest,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], bool]:
    """(system blocks, messages, whether the conversation holds tool blocks)."""
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    tool_blocks = False
    for index, message in enumerate(request.messages):
        if isinstance(message, SystemMessage | DeveloperMessage):
            text = message_text(message.content)
            if text:
                system.append({"text": text})
        elif isinstance(message, UserMessage):
            _append(turns, "user", _user_blocks(message, index))
        elif isinstance(message, AssistantMessage):
            blocks = _assistant_blocks(message, index)
            tool_blocks = tool_blocks or any("toolUse" in block for block in blocks)
            _append(turns, "assistant", blocks)
        elif isinstance(message, ToolMessage):
            text = message_text(message.content)
            result = {
                "toolUseId": message.tool_call_id,
                "content": [{"text": text}] if text else [],
            }
            tool_blocks = True
            _append(turns, "user", [{"toolResult": result}])
    return system, turns, tool_blocks


def _append(turns: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    if not blocks:
        return
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"].extend(blocks)
    else:
        turns.append({"role": role, "content": blocks})


def _user_blocks(message: UserMessage, index: int) -> list[dict[str, Any]]:
    if isinstance(message.content, str):
        return [{"text": message.content}]
    blocks: list[dict[str, Any]] = []
    for position, part in enumerate(message.content):
        if isinstance(part, TextPart):
            blocks.append({"text": part.text})
        elif isinstance(part, ImagePart):
            blocks.append(_image_block(part, f"messages[{index}].content[{position}].image_url"))
    return blocks


def _image_block(part: ImagePart, param: str) -> dict[str, Any]:
    url = part.image_url if isinstance(part.image_url, str) else part.image_url.url
    head, _, data = url.partition(",")
    media, _, encoding = head.partition(";")
    image_format = IMAGE_FORMATS.get(media.removeprefix("data:image/")) if media else None
    if not media.startswith("data:image/") or encoding != "base64" or not image_format or not data:
        raise UnsupportedParameter(
            "Bedrock takes images inline only: a data: URL of a base64 png, jpeg, gif or webp.",
            param=param,
        )
    # A blob in Bedrock's JSON protocol is its base64 text: passed on as it came.
    return {"image": {"format": image_format, "source": {"bytes": data}}}


def _assistant_blocks(message: AssistantMessage, index: int) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    text = message_text(message.content) or message.refusal
    if text:
        blocks.append({"text": text})
    for position, call in enumerate(message.tool_calls or []):
        param = f"messages[{index}].tool_calls[{position}].function.arguments"
        try:
            arguments = orjson.loads(call.function.arguments or "{}")
        except orjson.JSONDecodeError:
            raise InvalidParameter(
                "Tool call arguments must be a JSON object.", param=param
            ) from None
        if not isinstance(arguments, dict):
            raise InvalidParameter("Tool call arguments must be a JSON object.", param=param)
        blocks.append(
            {"toolUse": {"toolUseId": call.id, "name": call.function.name, "input": arguments}}
        )
    return blocks


def converse_tools(
    request: ChatCompletionRequest, contract: OutputContract, tool_blocks: bool
) -> tuple[dict[str, Any] | None, str | None]:
    """(`toolConfig` or None, the answer tool's name or None)."""
    declared = [
        _tool_spec(tool.name, tool.description, tool.parameters) for tool in contract.declared_tools
    ]
    mode = contract.tool_mode
    if mode == "required":
        choice = request.tool_choice
        if isinstance(choice, NamedToolChoice):
            return {"tools": declared, "toolChoice": {"tool": {"name": choice.function.name}}}, None
        return {"tools": declared, "toolChoice": {"any": {}}}, None
    if contract.json_schema is not None:
        name = _answer_tool_name(contract)
        answer = _tool_spec(name, _answer_description(request), contract.json_schema)
        if mode == "auto":
            # Either a tool of the caller's or the answer: one of them must be called.
            return {"tools": [*declared, answer], "toolChoice": {"any": {}}}, name
        tools = [*declared, answer] if tool_blocks else [answer]
        return {"tools": tools, "toolChoice": {"tool": {"name": name}}}, name
    if mode == "auto":
        return {"tools": declared, "toolChoice": {"auto": {}}}, None
    if tool_blocks:
        if declared:
            raise UnsupportedParameter(
                "Bedrock cannot be told not to call tools in a conversation that holds tool "
                "calls; leave tool_choice out or set it to auto.",
                param="tool_choice",
            )
        raise InvalidParameter(
            "Bedrock needs the definitions of the tools this conversation calls.", param="tools"
        )
    return None, None


def _tool_spec(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": name, "inputSchema": {"json": schema}}
    if description:
        spec["description"] = description
    return {"toolSpec": spec}


def _answer_tool_name(contract: OutputContract) -> str:
    name = contract.schema_name or JSON_OBJECT_TOOL
    if contract.declared_tool(name) is not None:
        param = "response_format.json_schema.name" if contract.schema_name else "response_format"
        raise InvalidParameter(
            f"Bedrock gets the response schema as a tool named '{name}', and a tool of that name "
            "is already declared; rename one of them.",
            param=param,
        )
    return name


def _answer_description(request: ChatCompletionRequest) -> str:
    response_format = request.response_format
    if isinstance(response_format, JsonSchemaFormat) and response_format.json_schema.description:
        return response_format.json_schema.description
    return ANSWER_TOOL_DESCRIPTION
