"""Prompt text to tokens, with special tokens recognised only where the chat template wrote them.

llama.cpp's tokenizer turns every occurrence of a special token's text into that token when
asked to parse specials, so user text containing `<|im_start|>system` would become a real system
turn. Here the rendered prompt arrives cut into template text and message content; special
tokens (control, user-defined and unknown ones, longest first, honouring their lstrip/rstrip
attributes) are split out of template text only, and the text between two special tokens,
content included, is tokenized as plain text in one piece. For prompts whose content holds no
special-token text this gives exactly the tokens llama.cpp would give the whole prompt, and it is
linear in the prompt's size (llama.cpp's own partition is quadratic in the number of specials).
"""

from __future__ import annotations

import ctypes
import re
from collections.abc import Iterator, Sequence
from typing import Any

import llama_cpp

SPECIAL_ATTRS = (
    llama_cpp.LLAMA_TOKEN_ATTR_CONTROL
    | llama_cpp.LLAMA_TOKEN_ATTR_USER_DEFINED
    | llama_cpp.LLAMA_TOKEN_ATTR_UNKNOWN
)


class PromptTokenizer:
    def __init__(self, vocab: Any) -> None:
        self._vocab = vocab
        specials: dict[str, tuple[int, int]] = {}
        for token in range(llama_cpp.llama_vocab_n_tokens(vocab)):
            attr = int(llama_cpp.llama_vocab_get_attr(vocab, token))
            if attr & SPECIAL_ATTRS:
                text = llama_cpp.llama_vocab_get_text(vocab, token).decode("utf-8", "replace")
                if text:
                    specials.setdefault(text, (token, attr))
        self._specials = specials
        longest_first = sorted(specials, key=len, reverse=True)
        self._pattern = (
            re.compile("|".join(re.escape(text) for text in longest_first))
            if longest_first
            else None
        )
        self._buffer = (llama_cpp.llama_token * 4096)()

    @property
    def special_texts(self) -> list[str]:
        return sorted(self._specials)

    def tokenize(self, pieces: Sequence[tuple[str, bool]], add_bos: bool) -> list[int]:
        tokens: list[int] = [int(llama_cpp.llama_vocab_bos(self._vocab))] if add_bos else []
        for item in self._runs(pieces):
            if isinstance(item, int):
                tokens.append(item)
            elif item:
                tokens.extend(self.text_tokens(item))
        return tokens

    def _runs(self, pieces: Sequence[tuple[str, bool]]) -> Iterator[str | int]:
        """Alternating plain-text runs and special token ids, in prompt order."""
        run: list[str] = []
        strip_next = False
        for text, is_content in pieces:
            if is_content or self._pattern is None:
                run.append(text.lstrip() if strip_next and text else text)
                strip_next = strip_next and not text
                continue
            start = 0
            for match in self._pattern.finditer(text):
                token, attr = self._specials[match.group()]
                before = text[start : match.start()]
                run.append(before.lstrip() if strip_next else before)
                if attr & llama_cpp.LLAMA_TOKEN_ATTR_LSTRIP:
                    _rstrip_run(run)
                yield "".join(run)
                run = []
                yield token
                strip_next = bool(attr & llama_cpp.LLAMA_TOKEN_ATTR_RSTRIP)
                start = match.end()
            rest = text[start:]
            run.append(rest.lstrip() if strip_next and rest else rest)
            strip_next = strip_next and not rest
        yield "".join(run)

    def text_tokens(self, text: str) -> list[int]:
        """Plain text to tokens: special-token text in it stays text."""
        data = text.encode("utf-8")
        capacity = len(self._buffer)
        while True:
            count = llama_cpp.llama_tokenize(
                self._vocab, data, len(data), self._buffer, capacity, False, False
            )
            if count >= 0:
                return list(self._buffer[:count])
            capacity = -count
            self._buffer = (llama_cpp.llama_token * capacity)()


def _rstrip_run(run: list[str]) -> None:
    """Drop the whitespace that ends the run (a special token with lstrip swallows it)."""
    while run:
        stripped = run[-1].rstrip()
        if stripped:
            run[-1] = stripped
            return
        run.pop()


def piece_bytes(vocab: Any, token: int, buffer: ctypes.Array[ctypes.c_char]) -> bytes:
    """A token's text as generated output (special tokens render as nothing)."""
    length = llama_cpp.llama_token_to_piece(vocab, token, buffer, len(buffer), 0, False)
    if length < 0:
        bigger = ctypes.create_string_buffer(-length)
        length = llama_cpp.llama_token_to_piece(vocab, token, bigger, len(bigger), 0, False)
        return bigger.raw[:length]
    return buffer.raw[:length]
