"""Where a JSON answer being generated stands, for steering it to an end in time.

The engine follows the generated text of a JSON-only answer: whether it is inside a string, how
deeply its objects and arrays are nested, and whether the string being written has started to
loop (the same few tokens over and over, as small models do with a street name or an email).
From that the scheduler decides when to steer the grammar towards closing the answer (see
`constraint.py`): early enough to close every open bracket within the tokens left, and at once
inside a string that loops, where the token that would go on with the loop is also forbidden
(repetition-aware sampling: a date-time that runs on "0000…" must take its time zone instead).
"""

from __future__ import annotations

# A loop: the same run of 2 to 8 tokens, this many times in a row at the end of a string (a single
# token: more times, "!!!" is no loop).
LOOP_REPEATS = 4
SINGLE_TOKEN_REPEATS = 8
LOOP_LONGEST_RUN = 8


class JsonShape:
    def __init__(self) -> None:
        self.depth = 0
        self.in_string = False
        self._escaped = False
        self._string_tokens: list[int] = []

    def push(self, token: int, text: str) -> None:
        """Follow one generated token and its text."""
        was_in_string = self.in_string
        for char in text:
            if self.in_string:
                if self._escaped:
                    self._escaped = False
                elif char == "\\":
                    self._escaped = True
                elif char == '"':
                    self.in_string = False
            elif char == '"':
                self.in_string = True
            elif char in "{[":
                self.depth += 1
            elif char in "}]":
                self.depth = max(0, self.depth - 1)
        if self.in_string and was_in_string:
            self._string_tokens.append(token)
        else:
            self._string_tokens.clear()

    def loop_continuation(self) -> int | None:
        """The token that would go on with a loop the string being written has fallen into
        (a run of tokens repeated `LOOP_REPEATS` times in a row at its end), or None."""
        tokens = self._string_tokens
        for run in range(1, LOOP_LONGEST_RUN + 1):
            repeats = SINGLE_TOKEN_REPEATS if run == 1 else LOOP_REPEATS
            if len(tokens) < run * repeats:
                continue
            last = tokens[-run:]
            if all(
                tokens[len(tokens) - run * (k + 1) : len(tokens) - run * k] == last
                for k in range(1, repeats)
            ):
                return last[0]
        return None

    def reserve(self, budget: int) -> int:
        """Tokens to keep for closing: a share of the budget, and at least two per open
        bracket (a bracket and a comma or quote before it)."""
        return max(8, min(64, budget // 8), 2 * self.depth + 8)
