"""The OpenAI Chat Completions request: Modelyard's canonical chat request.

Validation is strict (JSON types are not coerced: `"temperature": "1"` is an error), and every
failure is reported with the dotted path of the offending parameter. Parameters OpenAI defines
that Modelyard does not honour are refused by name rather than ignored.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from modelyard.protocol.tools import ResponseFormat, Tool, ToolChoice

# Parameters of the OpenAI API that this gateway does not honour yet. They are refused by name
# (never silently dropped); everything else unknown is refused as unrecognized.
UNSUPPORTED_PARAMETERS = frozenset(
    {
        "functions",
        "function_call",
        "logit_bias",
        "top_logprobs",
        "modalities",
        "audio",
        "prediction",
        "reasoning_effort",
        "web_search_options",
        "service_tier",
        "metadata",
    }
)

# Parameters the canonical request carries beyond OpenAI's own (what the Anthropic surface and
# vLLM-style clients send): the Azure AI Inference surface treats them as extra parameters.
EXTENSION_PARAMETERS = frozenset({"top_k"})


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class TextPart(_Wire):
    type: Literal["text"]
    text: str


class ImageUrl(_Wire):
    url: str
    detail: str | None = None


class ImagePart(_Wire):
    type: Literal["image_url"]
    image_url: ImageUrl | str


UserPart = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class FunctionCall(_Wire):
    name: str
    arguments: str


class ToolCall(_Wire):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall
    index: int | None = None  # sent back by the Mistral SDK in assistant echoes


class SystemMessage(_Wire):
    role: Literal["system"]
    content: str | list[TextPart]
    name: str | None = None


class DeveloperMessage(_Wire):
    role: Literal["developer"]
    content: str | list[TextPart]
    name: str | None = None


class UserMessage(_Wire):
    role: Literal["user"]
    content: str | list[UserPart]
    name: str | None = None


class AssistantMessage(_Wire):
    role: Literal["assistant"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    refusal: str | None = None
    tool_calls: list[ToolCall] | None = None
    # Mistral: `prefix: true` asks to continue this message; only `false` is honoured.
    prefix: Literal[False] = False


class ToolMessage(_Wire):
    role: Literal["tool"]
    content: str | list[TextPart]
    tool_call_id: str
    name: str | None = None  # Mistral sends the function name on tool results


Message = Annotated[
    SystemMessage | DeveloperMessage | UserMessage | AssistantMessage | ToolMessage,
    Field(discriminator="role"),
]


class StreamOptions(_Wire):
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    # extra="allow" so that unknown keys can be refused by name with our own error code.
    model_config = ConfigDict(extra="allow", strict=True, frozen=True)

    model: Annotated[str, Field(min_length=1)]
    messages: Annotated[list[Message], Field(min_length=1)]
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    # Not OpenAI's: Anthropic's and vLLM's sampling cut-off, honoured by the local engine.
    top_k: Annotated[int, Field(ge=1, le=1000)] | None = None
    stop: str | Annotated[list[str], Field(max_length=4)] | None = None
    seed: int | None = None
    random_seed: int | None = None  # Mistral's name for `seed`
    safe_prompt: bool = False  # Mistral: prepend its guardrail system prompt
    presence_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    frequency_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    n: Annotated[int, Field(ge=1)] | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    user: Annotated[str, Field(max_length=256)] | None = None
    logprobs: Literal[False] | None = None
    # Modelyard never stores completions, so only `store: false` can be honoured.
    store: Literal[False] | None = None
    tools: Annotated[list[Tool], Field(max_length=128)] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None

    def stop_sequences(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        stops = [self.stop] if isinstance(self.stop, str) else self.stop
        return tuple(s for s in stops if s)

    def sampling_seed(self) -> int | None:
        return self.seed if self.seed is not None else self.random_seed

    def requested_max_tokens(self) -> int | None:
        """`max_completion_tokens` wins over the older `max_tokens` when both are sent."""
        if self.max_completion_tokens is not None:
            return self.max_completion_tokens
        return self.max_tokens

    def choice_count(self) -> int:
        return self.n or 1

    def wants_stream_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


def message_text(content: str | list[TextPart] | list[UserPart] | None) -> str:
    """The text of a message's content; image parts are refused before this is called."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "\n".join(part.text for part in content if isinstance(part, TextPart))


def estimate_prompt_tokens(request: ChatCompletionRequest) -> int:
    """A rough count where no tokenizer is at hand (upstreams that report no usage, routing by
    context window): about 4 characters a token, plus framing per message."""
    characters = sum(len(message_text(message.content)) for message in request.messages)
    return (characters + 3) // 4 + 4 * len(request.messages)


def estimate_text_tokens(text: str) -> int:
    return (len(text) + 3) // 4
