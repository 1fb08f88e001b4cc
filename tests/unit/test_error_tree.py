"""The error tree says what the router will believe: which failures another attempt may fix."""

from __future__ import annotations

import inspect

import modelyard.errors as errors

RETRYABLE = {
    "RateLimited", "UpstreamFailed", "UpstreamStreamBroken", "LocalEngineFailed",
    "UpstreamTimeout", "ServiceUnavailable", "EngineBusy", "EngineUnavailable",
    "UpstreamUnavailable", "NotReady", "BacklogFull",
    "NoHealthyDeployment",
}  # fmt: skip


def test_exactly_the_failures_another_attempt_may_fix_are_retryable() -> None:
    classes = {
        name: cls
        for name, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.ModelyardError)
    }
    assert {name for name, cls in classes.items() if cls.retryable} == RETRYABLE
    # Spelled out for the two an insertion once swapped.
    assert errors.RateLimited.retryable and not errors.InsufficientQuota.retryable


def test_the_tree_in_the_docstring_lists_every_error_with_its_retryability() -> None:
    doc = errors.__doc__ or ""
    for name, cls in inspect.getmembers(errors, inspect.isclass):
        if issubclass(cls, errors.ModelyardError) and cls is not errors.ModelyardError:
            line = next((ln for ln in doc.splitlines() if f" {name} " in ln + " "), None)
            assert line is not None, f"{name} is missing from the tree"
            assert ("[r]" in line) == cls.retryable, line
