"""Reading the numbers written in an answer, in the order they appear.

A number is an optional sign (`-`, `+`, U+2212 minus), digits with separators between them,
and an optional exponent (`1.5e3`). Digits of any script count (full-width, Arabic-Indic, ...).
A number glued to a letter before it is part of a word (`H2O`, `v2`) and is not read. Separators:

- `'`, U+2019, no-break spaces and thin spaces only group thousands (`1'234`). A plain space
  separates numbers: `1 234` is 1 and 234.
- With both `.` and `,`, the one written last is the decimal separator: `1,234.5` and
  `1.234,5` are both 1234.5.
- A single `.` is a decimal point: `1.234` is 1.234. Several (`1.234.567`) group thousands.
- A single `,` is a decimal comma (`42,50` is 42.5, `0,125` is 0.125) unless exactly three
  digits follow it and the part before it does not start with 0: `1,234` and `42,500` group
  thousands (the English reading; write `42,5` or `42,50` for a decimal). Beside a space or
  apostrophe grouping (`1'234,567`) a single `,` is always decimal. Several `,` group thousands.
- Grouped digits must come in threes after the first group (`1,234,567`). A run that fits none
  of these (`1,2,3`, `3.14.15`, `1.5,2`) is a list: each group of digits is a number of its own.

A trailing `.` or `,` ends a sentence, not a number; `%` and currency signs are not read.
"""

from __future__ import annotations

import re

_SPACE_GROUPING = "'\u2019\u00a0\u202f\u2009"
_RUN = re.compile(
    r"(?<![^\W\d_])"  # not glued to a letter before it
    r"(?P<sign>(?<![\w.,])[-+\u2212])?"
    rf"(?P<body>\d(?:[\d.,{_SPACE_GROUPING}]*\d)?)"
    r"(?:[eE](?P<exponent>[-+]?\d+)(?![^\W\d_]))?"
)
_SEPARATOR = re.compile(rf"[.,{_SPACE_GROUPING}]")


def numbers_in(text: str) -> list[float]:
    """Every number written in `text`, in order (see the module docstring for the rules)."""
    numbers: list[float] = []
    for match in _RUN.finditer(text):
        sign = -1.0 if match["sign"] in ("-", "\u2212") else 1.0
        value = _read_body(match["body"])
        if value is None:
            pieces = [float(piece) for piece in _SEPARATOR.split(match["body"]) if piece]
            numbers.extend([sign * pieces[0], *pieces[1:]])
            continue
        if match["exponent"] is not None:
            value *= 10.0 ** int(match["exponent"])
        numbers.append(sign * value)
    return numbers


def _read_body(body: str) -> float | None:
    """The digits-and-separators run as one number, or None when it reads as a list."""
    separators = _SEPARATOR.findall(body)
    if not separators:
        return float(body)
    decimal = _decimal_separator(body, separators)
    integer, fraction = body.rsplit(decimal, 1) if decimal else (body, "")
    groups = _SEPARATOR.split(integer)
    grouping_kinds = set(_SEPARATOR.findall(integer))
    if not fraction.isdigit() and fraction:
        return None
    if len(grouping_kinds) > 1 or (
        len(groups) > 1
        and not (1 <= len(groups[0]) <= 3 and all(len(group) == 3 for group in groups[1:]))
    ):
        return None
    return float("".join(groups) + ("." + fraction if fraction else ""))


def _decimal_separator(body: str, separators: list[str]) -> str | None:
    commas, points = separators.count(","), separators.count(".")
    if commas and points:
        last = "," if body.rfind(",") > body.rfind(".") else "."
        return last if separators.count(last) == 1 else None
    if points == 1:
        return "."
    if commas == 1:
        integer, fraction = body.split(",")
        space_grouped = len(separators) > 1
        if space_grouped or len(fraction) != 3 or integer.startswith("0"):
            return ","
    return None
