"""Turn generated token bytes into text deltas, honouring stop sequences.

Tokens can split a UTF-8 character, and a stop sequence can span several tokens, so text is held
back until it can no longer become part of a stop sequence. What is emitted never contains a
stop sequence or a partial character.
"""

from __future__ import annotations

import codecs


class TextAssembler:
    def __init__(self, stops: tuple[str, ...]) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stops = stops
        self._longest_stop = max((len(s) for s in stops), default=0)
        self._held = ""
        self.stopped = False

    def push(self, piece: bytes) -> str:
        """Add one token's bytes; return the text that is now safe to emit."""
        self._held += self._decoder.decode(piece)
        if not self._stops:
            text, self._held = self._held, ""
            return text
        found = [at for stop in self._stops if (at := self._held.find(stop)) != -1]
        if found:
            self.stopped = True
            text, self._held = self._held[: min(found)], ""
            return text
        keep = self._partial_stop_length()
        cut = len(self._held) - keep
        text, self._held = self._held[:cut], self._held[cut:]
        return text

    def flush(self) -> str:
        """The remaining text once generation ends without a stop sequence."""
        text = self._held + self._decoder.decode(b"", final=True)
        self._held = ""
        return text

    def _partial_stop_length(self) -> int:
        """Length of the longest tail of the held text that begins some stop sequence."""
        held = self._held
        for size in range(min(len(held), self._longest_stop - 1), 0, -1):
            tail = held[-size:]
            if any(stop.startswith(tail) for stop in self._stops):
                return size
        return 0
