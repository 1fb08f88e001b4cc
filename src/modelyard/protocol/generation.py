"""What a generation yields, whatever produced it: text and tool-call events, the end of each
choice, and the exact token usage; and the vectors of an embedding. Providers produce these
values, the serving layer consumes them, the ledger prices `Usage`.
"""

from __future__ import annotations

from dataclasses import dataclass

from modelyard.errors import ModelyardError


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    # True when an upstream reported no usage and the gateway counted it itself.
    estimated: bool = False
    # Of the prompt tokens, how many the upstream served from its prompt cache.
    cached_prompt_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class TextDelta:
    choice: int
    text: str


@dataclass(frozen=True)
class ToolCallDelta:
    """One complete tool call (the only streamed form every SDK accepts, CLIENTS.md §4)."""

    choice: int
    index: int
    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ChoiceFinished:
    choice: int
    finish_reason: str


@dataclass(frozen=True)
class Finished:
    """The last event of a successful generation: exact token usage for the whole request."""

    usage: Usage


@dataclass(frozen=True)
class Failed:
    error: ModelyardError


ChatEvent = TextDelta | ToolCallDelta | ChoiceFinished | Finished | Failed


@dataclass(frozen=True)
class Embeddings:
    vectors: list[list[float]]
    prompt_tokens: int
