"""What the gateway and an engine process say to each other, and how it is framed.

A frame is a 4-byte little-endian length and an orjson document. The gateway sends one command
per frame (a dict with an "op"); the engine sends a list of events per frame (a decode step's
events go out together, in one write). Events are short lists whose first item names them:

    ["loading", cpu_variant]                        which CPU backend build it is loading
    ["ready", EngineInfo-as-dict]                   loaded and self-tested; serving
    ["load_failed", reason]                         then the process exits
    ["admitted", id, prompt_tokens]                 tokenized and checked; waits for a slot
    ["rejected", id, code, message, detail]         never admitted (context too long, schema)
    ["started", id]                                 has a slot: prompt evaluation begins
    ["text", id, choice, text, tokens]              generated text and the tokens it took
    ["choice", id, choice, finish_reason]           one choice ended
    ["finished", id, prompt_tokens, completion_tokens, cached_tokens]
                                                    the last event of a request, also when it
                                                    was cancelled (prompt_tokens then counts
                                                    only what was evaluated)
    ["failed", id, code, message, prompt_tokens, completion_tokens]
    ["counted", id, prompt_tokens]                  a `count` command's answer: the tokens the
                                                    prompt would take, nothing generated

This module holds no native code: the gateway imports it without loading llama.cpp.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

HEADER = struct.Struct("<I")
# A request's prompt is bounded by the body limit; anything larger is a broken peer.
MAX_FRAME_BYTES = 64 * 1024 * 1024


class ChannelClosed(Exception):
    """The other side closed the connection (or died)."""


@dataclass(frozen=True)
class EngineConfig:
    """How the gateway starts an engine process (its one command-line argument, as JSON)."""

    deployment: str
    gguf: Path
    context_window: int
    parallel: int
    threads: int
    fd: int
    excluded_variants: tuple[str, ...] = ()
    flash_attention: bool = False

    @classmethod
    def from_json(cls, text: str) -> EngineConfig:
        data = orjson.loads(text)
        data["gguf"] = Path(data["gguf"])
        data["excluded_variants"] = tuple(data.get("excluded_variants", ()))
        return cls(**data)

    def to_json(self) -> str:
        return orjson.dumps(
            {**self.__dict__, "gguf": str(self.gguf), "excluded_variants": self.excluded_variants}
        ).decode()


@dataclass(frozen=True)
class EngineInfo:
    """What the gateway learns about a loaded model when its engine says it is ready."""

    chat_template: str
    bos_text: str
    eos_text: str
    # Tokens each sequence may hold (prompt and completion); the card's context window or less.
    context_window: int
    parallel: int
    # The longest token's text in bytes: a prompt of N bytes has at least N / this many tokens.
    max_token_bytes: int
    # The text of every special token, to tell whether message content could forge one.
    special_texts: list[str]
    cpu_variant: str
    system_info: str
    self_test_ms: float

    def to_wire(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> EngineInfo:
        return cls(**data)


@dataclass(frozen=True)
class Sampling:
    temperature: float
    top_p: float
    presence_penalty: float
    frequency_penalty: float
    seed: int
    top_k: int = 0  # 0: every token stays a candidate


@dataclass(frozen=True)
class GenerateCommand:
    """One chat request for the engine: its prompt, how to sample, when to stop."""

    id: int
    # The rendered prompt, cut into (text, is_message_content) pieces: only text outside
    # message content may contain the template's special tokens.
    pieces: list[tuple[str, bool]]
    sampling: Sampling
    # What the client asked for (None: as many as fit) and the model card's limit.
    max_tokens: int | None
    max_output_tokens: int
    stops: list[str]
    choices: int
    grammar: str | None
    # Requests are taken from the queue round-robin across these keys (one per API key).
    fairness_key: str
    # Steer the grammar to close its JSON near the end of the budget (never for grammars that
    # also allow free text, whose characters the steer would bend).
    close_within_budget: bool = False

    def to_wire(self) -> dict[str, Any]:
        return {"op": "generate", **asdict(self)}

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> GenerateCommand:
        fields = {key: value for key, value in data.items() if key != "op"}
        fields["pieces"] = [(text, bool(content)) for text, content in fields["pieces"]]
        fields["sampling"] = Sampling(**fields["sampling"])
        return cls(**fields)


@dataclass(frozen=True)
class CountCommand:
    """Tokenize a rendered prompt as a generation would and answer its length; a failure is
    answered as a `rejected` event."""

    id: int
    pieces: list[tuple[str, bool]]

    def to_wire(self) -> dict[str, Any]:
        return {"op": "count", **asdict(self)}

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> CountCommand:
        pieces = [(text, bool(content)) for text, content in data["pieces"]]
        return cls(id=int(data["id"]), pieces=pieces)


def cancel_command(request_id: int) -> dict[str, Any]:
    return {"op": "cancel", "id": request_id}


def encode_frame(document: Any) -> bytes:
    body = orjson.dumps(document)
    return HEADER.pack(len(body)) + body


def decode_length(header: bytes) -> int:
    (length,) = HEADER.unpack(header)
    if length > MAX_FRAME_BYTES:
        raise ChannelClosed(f"frame of {length} bytes is larger than allowed")
    return int(length)


def read_frame(sock: socket.socket) -> Any:
    """Blocking read of one frame (the engine's side)."""
    length = decode_length(_read_exactly(sock, HEADER.size))
    return orjson.loads(_read_exactly(sock, length))


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    chunks = []
    remaining = size
    while remaining:
        chunk = sock.recv(min(remaining, 1 << 20))
        if not chunk:
            raise ChannelClosed("the gateway closed the channel")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)
