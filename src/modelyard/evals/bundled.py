"""The suites Modelyard ships (package data in `evals/suites/`), addressed by name.

They are small and original (see `suites/LICENSE.md`): a first comparison of models on the
bundled use cases, and examples to copy when writing one's own suite.
"""

from __future__ import annotations

from pathlib import Path

from modelyard.evals.suite import SuiteError

BUNDLED_SUITES: tuple[str, ...] = (
    "extraction",
    "classification",
    "tools",
    "arithmetic",
    "multilingual",
)

SUITES_DIR = Path(__file__).resolve().parent / "suites"


def bundled_suite(name: str) -> Path:
    """The file of the bundled suite `name`; SuiteError when no bundled suite has that name."""
    if name not in BUNDLED_SUITES:
        known = ", ".join(BUNDLED_SUITES)
        raise SuiteError(Path(name), None, None, f"no bundled suite has this name ({known})")
    return SUITES_DIR / f"{name}.yaml"
