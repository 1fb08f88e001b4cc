"""The OpenAI Responses API request (`POST /v1/responses`), as the official SDK sends it.

Validation is strict like the chat request's, and failures name the dotted parameter. What the
surface defines but Modelyard does not honour is refused by name: top-level parameters in
`UNSUPPORTED_PARAMETERS`, and values that only parse here so that they can be refused by name
(`include`, `truncation: "auto"`, `background: true`, built-in tools, input items and content
parts other than text, images and function calls; see `responses_chat.py`). Output items a
client passes back as input carry their server fields (`id`, `status`, `annotations`), which
are accepted.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from modelyard.protocol.tools import FUNCTION_NAME

UNSUPPORTED_PARAMETERS = frozenset(
    {
        "access_programs",
        "background_options",
        "context_management",
        "conversation",
        "image",
        "max_tool_calls",
        "moderation",
        "prompt",
        "prompt_cache_key",
        "prompt_cache_options",
        "prompt_cache_retention",
        "reasoning",
        "safety_identifier",
        "service_tier",
        "stream_options",
        "top_logprobs",
    }
)

ItemStatus = Literal["in_progress", "completed", "incomplete"]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class OtherKind(BaseModel):
    """Any other `type`: parsed only so that it can be refused by name."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)

    type: str


def _kind(known: frozenset[str], default: str | None = None) -> Discriminator:
    """A discriminator on `type` that sends unknown types to `OtherKind` (tag "other")."""

    def tag(value: Any) -> str | None:
        if isinstance(value, dict):
            kind = value.get("type", default)
        elif isinstance(value, BaseModel):
            kind = getattr(value, "type", None)
        else:
            return None  # not an object: the custom error below
        return kind if kind in known else "other"

    return Discriminator(
        tag, custom_error_type="not_an_object", custom_error_message="must be an object"
    )


class InputText(_Wire):
    type: Literal["input_text"]
    text: str


class OutputText(_Wire):
    type: Literal["output_text"]
    text: str
    annotations: list[dict[str, Any]] | None = None
    logprobs: list[dict[str, Any]] | None = None


class InputImage(_Wire):
    type: Literal["input_image"]
    image_url: str | None = None
    file_id: str | None = None
    detail: Literal["low", "high", "auto", "original"] | None = None


class Refusal(_Wire):
    type: Literal["refusal"]
    refusal: str


ContentPart = Annotated[
    Annotated[InputText, Tag("input_text")]
    | Annotated[OutputText, Tag("output_text")]
    | Annotated[InputImage, Tag("input_image")]
    | Annotated[Refusal, Tag("refusal")]
    | Annotated[OtherKind, Tag("other")],
    _kind(frozenset({"input_text", "output_text", "input_image", "refusal"})),
]


class MessageItem(_Wire):
    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[ContentPart]
    id: str | None = None
    status: ItemStatus | None = None
    phase: Literal["commentary", "final_answer"] | None = None


class FunctionCallItem(_Wire):
    type: Literal["function_call"]
    call_id: Annotated[str, Field(min_length=1)]
    name: Annotated[str, Field(min_length=1)]
    arguments: str
    id: str | None = None
    status: ItemStatus | None = None


class FunctionCallOutputItem(_Wire):
    type: Literal["function_call_output"]
    call_id: Annotated[str, Field(min_length=1)]
    output: str | list[ContentPart]
    id: str | None = None
    status: ItemStatus | None = None


InputItem = Annotated[
    Annotated[MessageItem, Tag("message")]
    | Annotated[FunctionCallItem, Tag("function_call")]
    | Annotated[FunctionCallOutputItem, Tag("function_call_output")]
    | Annotated[OtherKind, Tag("other")],
    _kind(frozenset({"message", "function_call", "function_call_output"}), default="message"),
]


class FunctionTool(_Wire):
    type: Literal["function"]
    name: Annotated[str, Field(pattern=FUNCTION_NAME)]
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


Tool = Annotated[
    Annotated[FunctionTool, Tag("function")] | Annotated[OtherKind, Tag("other")],
    _kind(frozenset({"function"})),
]


class NamedToolChoice(OtherKind):
    """`{"type": "function", "name": ...}`; other kinds (hosted tools, `allowed_tools`) are
    refused by name."""

    name: str | None = None


ToolChoice = Literal["auto", "none", "required"] | NamedToolChoice


class TextFormat(_Wire):
    type: Literal["text"]


class JsonObjectFormat(_Wire):
    type: Literal["json_object"]


class JsonSchemaFormat(_Wire):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=True)

    type: Literal["json_schema"]
    name: Annotated[str, Field(pattern=FUNCTION_NAME)]
    # `schema` is the wire name; pydantic reserves the attribute.
    json_schema: Annotated[dict[str, Any], Field(alias="schema")]
    description: str | None = None
    strict: bool | None = None


class TextConfig(_Wire):
    format: (
        Annotated[TextFormat | JsonObjectFormat | JsonSchemaFormat, Field(discriminator="type")]
        | None
    ) = None
    verbosity: Literal["low", "medium", "high"] | None = None


Metadata = Annotated[
    dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=512)]],
    Field(max_length=16),
]


class ResponsesRequest(BaseModel):
    # extra="allow" so that unknown keys can be refused by name with our own error code.
    model_config = ConfigDict(extra="allow", strict=True, frozen=True)

    model: Annotated[str, Field(min_length=1)]
    input: str | list[InputItem]
    instructions: str | None = None
    tools: Annotated[list[Tool], Field(max_length=128)] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    text: TextConfig | None = None
    max_output_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    # Echoed back and stored with the response, never sent to a model.
    metadata: Metadata | None = None
    user: Annotated[str, Field(max_length=256)] | None = None
    store: bool | None = None
    stream: bool | None = None
    previous_response_id: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    # Accepted only at the values Modelyard honours (none, "disabled", false).
    include: list[str] | None = None
    truncation: Literal["auto", "disabled"] | None = None
    background: bool | None = None
