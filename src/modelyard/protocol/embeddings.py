"""The embeddings request (OpenAI shape, plus the Azure and Mistral spellings) and response."""

from __future__ import annotations

import base64
import struct
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_INPUTS = 2048


class EmbeddingsRequest(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True, frozen=True)

    model: Annotated[str, Field(min_length=1)]
    input: (
        str
        | Annotated[list[str], Field(min_length=1, max_length=MAX_INPUTS)]
        | Annotated[list[int], Field(min_length=1)]
        | Annotated[list[list[int]], Field(min_length=1, max_length=MAX_INPUTS)]
    )
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: Annotated[int, Field(ge=1)] | None = None
    user: Annotated[str, Field(max_length=256)] | None = None
    # Azure AI Inference: a hint for asymmetric models; symmetric ones embed all kinds alike.
    input_type: Literal["text", "query", "document"] | None = None
    # Mistral's spellings.
    output_dimension: Annotated[int, Field(ge=1)] | None = None
    output_dtype: Literal["float"] | None = None

    def texts(self) -> list[str] | None:
        """The inputs as text, or None when they are token ids."""
        if isinstance(self.input, str):
            return [self.input]
        if all(isinstance(item, str) for item in self.input):
            return [str(item) for item in self.input]
        return None

    def requested_dimensions(self) -> int | None:
        return self.dimensions if self.dimensions is not None else self.output_dimension


def embeddings_response(
    response_id: str,
    model: str,
    vectors: Sequence[Sequence[float]],
    prompt_tokens: int,
    encoding_format: str | None,
) -> dict[str, Any]:
    return {
        "id": response_id,
        "object": "list",
        "data": [
            {"object": "embedding", "index": index, "embedding": _encode(vector, encoding_format)}
            for index, vector in enumerate(vectors)
        ],
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }


def _encode(vector: Sequence[float], encoding_format: str | None) -> list[float] | str:
    if encoding_format == "base64":
        # What the openai SDK decodes by default: little-endian float32.
        packed = struct.pack(f"<{len(vector)}f", *vector)
        return base64.b64encode(packed).decode("ascii")
    return [float(x) for x in vector]
