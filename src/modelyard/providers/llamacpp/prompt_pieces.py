"""A local model's prompt, rendered with its chat template and cut into the template's own text and
the messages' content, so that only the template's markers become special tokens.

The template is rendered twice: with the real messages, and with each content replaced by a
sentinel. The sentinel rendering shows what text the template writes around each content; when
the real rendering is exactly that text with each content (or the content stripped, for templates
that trim) in between, the pieces are known. Templates that change content in other ways, or
branch on it, fall back to one piece of template text, which is safe only when no content holds
a special token's text; otherwise the request is refused rather than let a message forge a turn.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from modelyard.errors import ContextLengthExceeded, InvalidRequest
from modelyard.providers.llamacpp.chat_template import ChatTemplate
from modelyard.providers.llamacpp.prompt import PlainMessage

Piece = tuple[str, bool]
SENTINEL = "\ue000{}\ue001"
SENTINEL_PATTERN = re.compile("\ue000([0-9]+)\ue001")


class PromptBuilder:
    """One loaded model's template, special tokens and context window."""

    def __init__(
        self,
        template: ChatTemplate,
        special_texts: Sequence[str],
        max_token_bytes: int,
        context_window: int,
    ) -> None:
        self._template = template
        ordered = sorted((t for t in special_texts if t), key=len, reverse=True)
        self._specials = re.compile("|".join(map(re.escape, ordered))) if ordered else None
        self._max_token_bytes = max(1, max_token_bytes)
        self._window = context_window

    def pieces(self, messages: Sequence[PlainMessage]) -> list[Piece]:
        rendered = self._template.render(messages)
        skeleton = self._template.render(
            [{**message, "content": SENTINEL.format(i)} for i, message in enumerate(messages)]
        )
        pieces = _match(rendered, skeleton, messages)
        if pieces is None:
            for index, message in enumerate(messages):
                if self._specials is not None and self._specials.search(message["content"]):
                    raise InvalidRequest(
                        f"messages[{index}].content contains the text of one of the model's "
                        "special tokens, and this model's chat template does not let the gateway "
                        "keep it apart from the template's own markers.",
                        param=f"messages[{index}].content",
                    )
            pieces = [(rendered, False)]
        self._check_bound(pieces)
        return pieces

    def _check_bound(self, pieces: list[Piece]) -> None:
        """Refuse, before any tokenizing, a prompt that cannot fit however it tokenizes: every
        special token of the template is one token, and every other token stands for at most
        `max_token_bytes` bytes."""
        specials = special_bytes = 0
        for text, is_content in pieces:
            if not is_content and self._specials is not None:
                for match in self._specials.finditer(text):
                    specials += 1
                    special_bytes += len(match.group().encode("utf-8"))
        size = sum(len(text.encode("utf-8")) for text, _ in pieces) - special_bytes
        at_least = specials + size // self._max_token_bytes
        if at_least > self._window:
            raise ContextLengthExceeded(
                f"This model's maximum context length is {self._window} tokens. However, your "
                f"messages come to at least {at_least} tokens. Please reduce the length of the "
                "messages.",
                param="messages",
            )


def _match(rendered: str, skeleton: str, messages: Sequence[PlainMessage]) -> list[Piece] | None:
    """The pieces, if `rendered` is `skeleton` with each sentinel replaced by its content."""
    parts = SENTINEL_PATTERN.split(skeleton)
    # split() with one group alternates text and sentinel numbers: t0, n0, t1, n1, ..., tk.
    texts, numbers = parts[0::2], parts[1::2]
    if [int(n) for n in numbers] != list(range(len(numbers))):
        return None
    pieces: list[Piece] = []
    cursor = 0
    for text, number in zip(texts, numbers, strict=False):
        if not rendered.startswith(text, cursor):
            return None
        pieces.append((text, False))
        cursor += len(text)
        content = messages[int(number)]["content"]
        for variant in (content, content.strip()):
            if rendered.startswith(variant, cursor):
                pieces.append((variant, True))
                cursor += len(variant)
                break
        else:
            return None
    if rendered[cursor:] != texts[-1]:
        return None
    pieces.append((texts[-1], False))
    return pieces
