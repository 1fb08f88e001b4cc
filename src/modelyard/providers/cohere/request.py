"""The canonical chat request as a Cohere v2 `/chat` body.

Everything Cohere can honour is translated: roles (`developer` becomes `system`), text and image
parts, assistant tool calls (their text becomes Cohere's `tool_plan`), tool results, `tools`,
`tool_choice`, `response_format`, sampling (`top_p` is `p`, `top_k` is `k`), `stop`, `seed` and
the output budget. What it cannot honour is refused by the canonical parameter's name before any
call. Two things are accepted without an upstream switch: `parallel_tool_calls: false` (Cohere
has none; the gateway validates the answer against the output contract, so a second call is
caught there) and `user` (the gateway itself uses it, to keep a caller's requests together).
"""

from __future__ import annotations

from typing import Any

from modelyard.catalog.cards import Deployment
from modelyard.errors import InvalidParameter, UnsupportedParameter
from modelyard.protocol.chat import (
    AssistantMessage,
    ChatCompletionRequest,
    ImagePart,
    Message,
    TextPart,
    ToolMessage,
    UserMessage,
    message_text,
)
from modelyard.structured.contract import OutputContract, ToolSpec

# Cohere's documented ranges for what the canonical request allows more widely.
MAX_TOP_K = 500
MIN_P, MAX_P = 0.01, 0.99
PENALTIES = ("presence_penalty", "frequency_penalty")


def chat_body(
    request: ChatCompletionRequest, deployment: Deployment, contract: OutputContract
) -> dict[str, Any]:
    """The upstream body, or the error naming the first parameter Cohere cannot honour."""
    assert deployment.upstream is not None
    _refuse_unservable(request)
    body: dict[str, Any] = {
        "model": deployment.upstream.model,
        "messages": [_message(message, index) for index, message in enumerate(request.messages)],
    }
    if request.stream:
        body["stream"] = True
    body.update(_sampling(request))
    body.update(_tools(request, contract))
    response_format = _response_format(contract)
    if response_format is not None:
        body["response_format"] = response_format
    return body


def _refuse_unservable(request: ChatCompletionRequest) -> None:
    if request.model_extra:
        name = sorted(request.model_extra)[0]
        raise UnsupportedParameter(
            f"Cohere deployments cannot honour the pass-through parameter '{name}'.", param=name
        )
    if request.choice_count() > 1:
        raise InvalidParameter("Cohere deployments generate one choice: 'n' must be 1.", param="n")
    if request.safe_prompt:
        raise UnsupportedParameter(
            "Cohere deployments have no 'safe_prompt' guardrail prompt.", param="safe_prompt"
        )
    if request.top_k is not None and request.top_k > MAX_TOP_K:
        raise InvalidParameter(
            f"Cohere deployments accept 'top_k' up to {MAX_TOP_K}.", param="top_k"
        )
    for name in PENALTIES:
        value = getattr(request, name)
        if value is not None and not 0 <= value <= 1:
            raise InvalidParameter(
                f"Cohere deployments accept '{name}' between 0 and 1.", param=name
            )


def _sampling(request: ChatCompletionRequest) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    max_tokens = request.requested_max_tokens()
    if max_tokens is not None:
        fields["max_tokens"] = max_tokens  # without it, Cohere allows the model's own maximum
    if request.temperature is not None:
        fields["temperature"] = request.temperature
    if request.top_p is not None:
        # Cohere's `p` stops at 0.99: `top_p: 1` (no nucleus cut-off) is the nearest it allows.
        fields["p"] = min(max(request.top_p, MIN_P), MAX_P)
    if request.top_k is not None:
        fields["k"] = request.top_k
    stops = request.stop_sequences()
    if stops:
        fields["stop_sequences"] = list(stops)
    seed = request.sampling_seed()
    if seed is not None:
        fields["seed"] = seed
    for name in PENALTIES:
        value = getattr(request, name)
        if value is not None:
            fields[name] = value
    return fields


def _tools(request: ChatCompletionRequest, contract: OutputContract) -> dict[str, Any]:
    if not contract.declared_tools:
        return {}
    fields: dict[str, Any] = {}
    if contract.tool_mode == "none":
        fields["tools"] = [_tool(tool) for tool in contract.declared_tools]
        fields["tool_choice"] = "NONE"
    elif contract.tool_mode == "required":
        # Cohere has no named tool_choice: a named one is served by offering only that tool
        # (the contract's callable tools) and requiring a call.
        fields["tools"] = [_tool(tool) for tool in contract.callable_tools]
        fields["tool_choice"] = "REQUIRED"
    else:
        fields["tools"] = [_tool(tool) for tool in contract.declared_tools]
    # `strict_tools` is one switch for every tool: set only when each tool asked for strictness
    # (strict mode constrains the schemas a tool may have); the gateway validates calls anyway.
    if request.tools and all(tool.function.strict for tool in request.tools):
        fields["strict_tools"] = True
    return fields


def _tool(tool: ToolSpec) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.name, "parameters": tool.parameters}
    if tool.description:
        function["description"] = tool.description
    return {"type": "function", "function": function}


def _response_format(contract: OutputContract) -> dict[str, Any] | None:
    if contract.json_schema is None:
        return None
    if contract.schema_name is None:  # `json_object`: any object
        return {"type": "json_object"}
    return {"type": "json_object", "json_schema": contract.json_schema}


def _message(message: Message, index: int) -> dict[str, Any]:
    if isinstance(message, ToolMessage):
        # A tool result's `name` (Mistral's) repeats the called function's: the id says it all.
        return {
            "role": "tool",
            "tool_call_id": message.tool_call_id,
            "content": _text_content(message.content),
        }
    if message.name is not None:
        raise UnsupportedParameter(
            "Cohere deployments have no participant names on messages.",
            param=f"messages[{index}].name",
        )
    if isinstance(message, AssistantMessage):
        return _assistant(message)
    if isinstance(message, UserMessage):
        return {"role": "user", "content": _user_content(message.content)}
    return {"role": "system", "content": _text_content(message.content)}  # system, developer


def _assistant(message: AssistantMessage) -> dict[str, Any]:
    text = message_text(message.content) or message.refusal or ""
    if not message.tool_calls:
        return {"role": "assistant", "content": text}
    translated: dict[str, Any] = {
        "role": "assistant",
        "tool_calls": [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.function.name, "arguments": call.function.arguments},
            }
            for call in message.tool_calls
        ],
    }
    if text:
        # Cohere's text before its tool calls is the tool plan (and comes back as content).
        translated["tool_plan"] = text
    return translated


def _text_content(content: str | list[TextPart]) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    return [{"type": "text", "text": part.text} for part in content]


def _user_content(content: str | list[TextPart | ImagePart]) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    parts: list[dict[str, Any]] = []
    for part in content:
        if isinstance(part, TextPart):
            parts.append({"type": "text", "text": part.text})
            continue
        image = part.image_url
        url: dict[str, Any] = {"url": image} if isinstance(image, str) else {"url": image.url}
        if not isinstance(image, str) and image.detail is not None:
            url["detail"] = image.detail
        parts.append({"type": "image_url", "image_url": url})
    return parts
