"""Admission of one request in the engine: its prompt tokenized, its length checked against the
context window, its grammar compiled. Runs on a thread of its own, so a long prompt never holds
up the decode loop or the reading of cancellations.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

from modelyard.engine.constraint import GrammarCompiler, GrammarRejected
from modelyard.engine.model import LoadedModel
from modelyard.engine.scheduler import Admitted
from modelyard.engine.wire import GenerateCommand


@dataclass(frozen=True)
class Rejection:
    """Why a request was not admitted; the gateway turns it into a 400."""

    code: str  # "context_length_exceeded" | "unsupported_schema" | "invalid_request"
    message: str
    detail: dict[str, Any]

    def event(self, request_id: int) -> list[Any]:
        return ["rejected", request_id, self.code, self.message, self.detail]


def admit(model: LoadedModel, grammars: GrammarCompiler, command: GenerateCommand) -> Admitted:
    """The request ready for the scheduler, or raise `RequestRejected`."""
    prompt = model.tokenizer.tokenize(command.pieces, model.add_bos)
    if not prompt:
        raise RequestRejected(Rejection("invalid_request", "The prompt is empty.", {}))
    window = model.context_window
    completion = command.max_tokens if command.max_tokens is not None else 1
    if len(prompt) + completion > window:
        raise RequestRejected(
            Rejection(
                "context_length_exceeded",
                "too long for the context window",
                {"prompt_tokens": len(prompt), "completion_tokens": completion, "window": window},
            )
        )
    budget = (
        command.max_tokens
        if command.max_tokens is not None
        else min(command.max_output_tokens, window - len(prompt))
    )
    new_constraint = None
    if command.grammar is not None:
        try:
            grammars.constraint(command.grammar)  # compile now: a bad schema is a 400
        except GrammarRejected as exc:
            raise RequestRejected(Rejection("unsupported_schema", str(exc), {})) from None
        new_constraint = partial(grammars.constraint, command.grammar)
    return Admitted(command, prompt, budget, new_constraint)


class RequestRejected(Exception):
    def __init__(self, rejection: Rejection) -> None:
        super().__init__(rejection.message)
        self.rejection = rejection
