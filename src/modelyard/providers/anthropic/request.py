"""The canonical chat request as an Anthropic Messages API body (`anthropic-version:
2023-06-01`).

Where the two shapes differ, this module decides:
- system and developer messages become the top-level `system` (Anthropic has no system turn;
  one written mid-conversation is hoisted there too);
- turns alternate: consecutive messages of one role are merged into one turn, and tool results
  (`tool_result` blocks) are a user turn;
- a tool call's arguments become the `tool_use` block's `input` object;
- `max_tokens` is required upstream: the request's, else the model card's maximum;
- tools, tool choice and a JSON answer (`response_format`) are set by `tools.py`.
What Anthropic cannot honour is refused by name, never dropped: several choices (`n`), a seed,
penalties, a temperature above 1 (its range is 0 to 1), participant names, image detail levels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from modelyard.catalog.cards import Deployment, ModelCard
from modelyard.errors import InvalidParameter, UnsupportedParameter
from modelyard.protocol.chat import (
    AssistantMessage,
    ChatCompletionRequest,
    DeveloperMessage,
    ImagePart,
    Message,
    SystemMessage,
    TextPart,
    ToolMessage,
    UserMessage,
    message_text,
)
from modelyard.providers.anthropic.tools import tool_use

MAX_TEMPERATURE = 1.0
# What `/v1/messages/count_tokens` takes of a Messages body; it refuses anything else.
COUNT_TOKENS_FIELDS = ("model", "messages", "system", "tools", "tool_choice")
SUPPORTED_IMAGE_DETAIL = (None, "auto")


@dataclass(frozen=True)
class MessagesCall:
    body: dict[str, Any]
    # The extra tool whose input is the answer, when the request asked for JSON content.
    answer_tool: str | None = None


def messages_call(
    request: ChatCompletionRequest, card: ModelCard, deployment: Deployment
) -> MessagesCall:
    """The upstream body of `request` (without `stream`), or the refusal of what Anthropic
    cannot honour."""
    assert deployment.upstream is not None
    _refuse_unsupported(request)
    system, turns = conversation(request.messages)
    max_tokens = request.requested_max_tokens() or card.max_output_tokens
    if not max_tokens:
        raise InvalidParameter(
            f"Model '{card.id}' needs max_tokens: its card declares no output limit.",
            param="max_tokens",
        )
    body: dict[str, Any] = {
        "model": deployment.upstream.model,
        "max_tokens": max_tokens,
        "messages": turns,
    }
    if system:
        body["system"] = system
    answer_tool = tool_use(request, body)
    stops = request.stop_sequences()
    if stops:
        body["stop_sequences"] = list(stops)
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.top_k is not None:
        body["top_k"] = request.top_k
    if request.user is not None:
        body["metadata"] = {"user_id": request.user}
    return MessagesCall(body, answer_tool)


def count_tokens_body(body: dict[str, Any]) -> dict[str, Any]:
    """The part of a Messages body that `/v1/messages/count_tokens` reads."""
    return {name: body[name] for name in COUNT_TOKENS_FIELDS if name in body}


def _refuse_unsupported(request: ChatCompletionRequest) -> None:
    if request.choice_count() > 1:
        raise InvalidParameter("Anthropic deployments give one choice: n must be 1.", param="n")
    for name in ("seed", "random_seed"):
        if getattr(request, name) is not None:
            raise UnsupportedParameter(
                f"Anthropic deployments cannot sample with a seed: remove {name}.", param=name
            )
    # A penalty of 0 is no penalty, which Anthropic honours by having none.
    for name in ("presence_penalty", "frequency_penalty"):
        if getattr(request, name):
            raise UnsupportedParameter(
                f"Anthropic deployments have no {name.replace('_', ' ')}.", param=name
            )
    if request.safe_prompt:
        raise UnsupportedParameter(
            "safe_prompt is Mistral's guardrail prompt; Anthropic deployments have none.",
            param="safe_prompt",
        )
    if request.temperature is not None and request.temperature > MAX_TEMPERATURE:
        raise InvalidParameter(
            f"Anthropic deployments take a temperature from 0 to {MAX_TEMPERATURE:g}.",
            param="temperature",
        )


def conversation(messages: list[Message]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The `system` blocks and the alternating user/assistant turns of a conversation."""
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if isinstance(message, SystemMessage | DeveloperMessage):
            _refuse_name(message, where)
            system += _text_blocks(message.content)
            continue
        if isinstance(message, ToolMessage):
            # Its `name` (Mistral's) repeats what `tool_call_id` already identifies.
            role, blocks = "user", [_tool_result(message)]
        elif isinstance(message, UserMessage):
            _refuse_name(message, where)
            role, blocks = "user", _user_blocks(message, where)
        else:
            _refuse_name(message, where)
            role, blocks = "assistant", _assistant_blocks(message, where)
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    if turns:
        _trim_prefill(turns)
    if not turns:
        raise InvalidParameter(
            "Anthropic deployments need a user or assistant message besides system messages.",
            param="messages",
        )
    return system, turns


def _refuse_name(message: Message, where: str) -> None:
    if message.name is not None:
        raise UnsupportedParameter(
            "Anthropic deployments have no participant names on messages.",
            param=f"{where}.name",
        )


def _text_blocks(content: str | list[TextPart] | None) -> list[dict[str, Any]]:
    """Anthropic refuses empty text blocks; an empty text says nothing, so none is sent."""
    if content is None:
        return []
    texts = [content] if isinstance(content, str) else [part.text for part in content]
    return [{"type": "text", "text": text} for text in texts if text]


def _user_blocks(message: UserMessage, where: str) -> list[dict[str, Any]]:
    if isinstance(message.content, str):
        return _text_blocks(message.content)
    blocks: list[dict[str, Any]] = []
    for position, part in enumerate(message.content):
        if isinstance(part, ImagePart):
            blocks.append(_image_block(part, f"{where}.content[{position}].image_url"))
        elif part.text:
            blocks.append({"type": "text", "text": part.text})
    return blocks


def _image_block(part: ImagePart, where: str) -> dict[str, Any]:
    image = part.image_url
    url = image if isinstance(image, str) else image.url
    if not isinstance(image, str) and image.detail not in SUPPORTED_IMAGE_DETAIL:
        raise UnsupportedParameter(
            "Anthropic deployments read images at the resolution they need: detail must be "
            "'auto' or absent.",
            param=f"{where}.detail",
        )
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    header, comma, data = url.partition(",")
    if url.startswith("data:") and comma and header.endswith(";base64"):
        media_type = header[len("data:") : -len(";base64")]
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }
    raise InvalidParameter(
        "An image must be an http(s) URL or a base64 data URL.", param=f"{where}.url"
    )


def _assistant_blocks(message: AssistantMessage, where: str) -> list[dict[str, Any]]:
    content = message.content if message.content is not None else message.refusal
    blocks = _text_blocks(content)
    for position, call in enumerate(message.tool_calls or []):
        blocks.append(
            {
                "type": "tool_use",
                "id": call.id,
                "name": call.function.name,
                "input": _arguments(
                    call.function.arguments, f"{where}.tool_calls[{position}].function.arguments"
                ),
            }
        )
    return blocks


def _arguments(arguments: str, where: str) -> Any:
    if not arguments.strip():
        return {}
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise InvalidParameter("Tool call arguments must be a JSON object.", param=where)
    return value


def _tool_result(message: ToolMessage) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": message.tool_call_id}
    text = message_text(message.content)
    if text:
        block["content"] = text
    return block


def _trim_prefill(turns: list[dict[str, Any]]) -> None:
    """A last assistant turn is a prefill Anthropic continues, and it refuses one that ends in
    whitespace: the trailing whitespace goes (the continuation supplies its own), and a turn
    left empty goes with it."""
    last = turns[-1]
    if last["role"] != "assistant" or last["content"][-1]["type"] != "text":
        return
    text = last["content"][-1]["text"].rstrip()
    if text:
        last["content"][-1]["text"] = text
        return
    last["content"].pop()
    if not last["content"]:
        turns.pop()
