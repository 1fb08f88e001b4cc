"""What the console's forms share: reading typed fields from a posted form (errors name the
field), and the `Outcome` a form's section shows (a notice, the API's refusal with its status,
or a key shown this once)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import FormData

from modelyard.api.console import internal
from modelyard.errors import InvalidParameter

_LIST_SEPARATOR = re.compile(r"[\s,]+")


@dataclass(frozen=True)
class Outcome:
    """What a form did, shown in its section: a notice, or a refusal with its status; a key
    minted by it, shown this once."""

    status: int = 200
    notice: str | None = None
    error: str | None = None
    new_key: dict[str, str] | None = None

    @classmethod
    def of(cls, answer: internal.Answer, notice: str) -> Outcome:
        if answer.ok:
            return cls(notice=notice)
        return cls.refused(answer)

    @classmethod
    def refused(cls, answer: internal.Answer) -> Outcome:
        return cls(status=answer.status, error=answer.error_message)

    @classmethod
    def invalid(cls, wrong: InvalidParameter) -> Outcome:
        return cls(status=wrong.status, error=wrong.message)

    def view(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "notice": self.notice,
            "error": self.error,
            "new_key": self.new_key,
        }


def form_text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def form_list(form: FormData, name: str) -> list[str] | None:
    """A list typed one per line or comma-separated; None (no restriction) when empty."""
    items = [item for item in _LIST_SEPARATOR.split(form_text(form, name)) if item]
    return items or None


def form_whole_number(form: FormData, name: str, label: str) -> int | None:
    text = form_text(form, name)
    if not text:
        return None
    if not (text.isascii() and text.isdigit()) or int(text) >= 2**63:
        raise InvalidParameter(f"{label} must be a whole number.", param=name)
    return int(text)
