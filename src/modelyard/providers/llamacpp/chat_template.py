"""Render chat messages into a prompt with the model's own template from its GGUF metadata.

Templates are Jinja2 (the Hugging Face convention) and are evaluated in a sandbox, because a GGUF
file is data from outside. What the messages say is decided in `prompt.py`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NoReturn

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from modelyard.errors import InvalidRequest


def _raise_exception(message: str) -> NoReturn:
    raise InvalidRequest(f"The model's chat template rejected the messages: {message}")


class ChatTemplate:
    def __init__(self, source: str, *, bos_token: str, eos_token: str) -> None:
        environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        environment.globals["raise_exception"] = _raise_exception
        self._template = environment.from_string(source)
        self._bos_token = bos_token
        self._eos_token = eos_token

    def render(self, messages: Sequence[Mapping[str, str]]) -> str:
        try:
            return self._template.render(
                messages=list(messages),
                add_generation_prompt=True,
                bos_token=self._bos_token,
                eos_token=self._eos_token,
            )
        except TemplateError as exc:
            raise InvalidRequest(
                f"The model's chat template failed on these messages: {exc}"
            ) from None
