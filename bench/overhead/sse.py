"""Reading a stream as a client sees it: when the first token arrived, how many content events
came, and whether the stream's end (`[DONE]`; `response.completed` on the Responses surface,
`message_stop` on the Anthropic one) closed it.

Owns the definition of a token for every measurement: an SSE `data:` event whose
`choices[0].delta.content` is a non-empty string. The role event (empty content), the finish
event and the usage event are not tokens. Until the first token, events are parsed as JSON;
after it, an event counts when it has a `"content"` key that is not `""` or `null` (a byte
search: parsing a hundred events per stream made the generator the bottleneck at c=16). On the
Responses and Anthropic surfaces a token is an `output_text.delta` or `text_delta` event (also
a byte search: the gateway writes compact JSON). Events end at a blank line; `\\r\\n` line ends
are accepted. Does not read HTTP framing: it is fed the decoded body bytes in order.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import orjson

EMPTY = (b'"content":""', b'"content": ""', b'"content":null', b'"content": null')


@dataclass(frozen=True)
class Surface:
    """How one API surface's answers look: the mark of a non-streamed answer, of a streamed
    token, and of the stream's end."""

    path: str
    answer: bytes
    token: bytes
    end: bytes


SURFACES = {
    "chat": Surface("/v1/chat/completions", b'"choices"', b"", b"[DONE]"),
    "responses": Surface(
        "/v1/responses",
        b'"output"',
        b'"type":"response.output_text.delta"',
        b'"type":"response.completed"',
    ),
    "messages": Surface(
        "/v1/messages", b'"content"', b'"type":"text_delta"', b'"type":"message_stop"'
    ),
}


class StreamTally:
    def __init__(self, surface: str = "chat") -> None:
        self._surface = SURFACES[surface] if surface != "chat" else None
        self.first_token_at: float | None = None
        self.tokens = 0
        self.done = False
        self._pending = b""

    def feed(self, data: bytes) -> None:
        buffer = self._pending + data if self._pending else data
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n")
        *events, self._pending = buffer.split(b"\n\n")
        for event in events:
            self._event(event)

    def _event(self, event: bytes) -> None:
        if self._surface is not None:
            if self._surface.token in event:
                self.tokens += 1
                if self.first_token_at is None:
                    self.first_token_at = time.perf_counter()
            elif self._surface.end in event:
                self.done = True
            return
        if self.first_token_at is not None:
            if event.startswith(b"data: [DONE]") or event.startswith(b"data:[DONE]"):
                self.done = True
            elif b'"content"' in event and not any(empty in event for empty in EMPTY):
                self.tokens += 1
            return
        for line in event.split(b"\n"):
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if payload == b"[DONE]":
                self.done = True
                return
            try:
                choices = orjson.loads(payload).get("choices") or ()
            except orjson.JSONDecodeError:
                continue
            delta = choices[0].get("delta") or {} if choices else {}
            if delta.get("content"):
                self.tokens += 1
                if self.first_token_at is None:
                    self.first_token_at = time.perf_counter()
