"""Which build of ggml's CPU backend an engine process runs, chosen for the CPU it runs on.

`scripts/build-engine` builds the CPU backend once per instruction-set level, as modules named
`libggml-cpu-<variant>.so` next to libllama. Each module exports `ggml_backend_score`: 0 when
this CPU lacks an instruction the module was compiled for, otherwise higher the more features it
uses (ggml's own runtime dispatch). The engine loads the best-scoring module that the gateway has
not excluded: a module whose self-test crashed is excluded on the next start, so a fast path that
a CPU or hypervisor mishandles costs one restart, not the model.

A llama.cpp built the usual way (one CPU backend linked in, no modules) is used as it is.
"""

from __future__ import annotations

import ctypes
from collections.abc import Collection, Mapping
from pathlib import Path

BUILT_IN = "built-in"
MODULE_PREFIX = "libggml-cpu-"


class CpuUnsupported(Exception):
    """No CPU backend build runs on this CPU (it lacks AVX2, or every variant is excluded)."""


def variant_scores(lib_dir: Path) -> dict[str, int]:
    """Each CPU backend module in `lib_dir` and its score on this CPU (0: cannot run here)."""
    scores = {}
    for path in sorted(lib_dir.glob(f"{MODULE_PREFIX}*.so")):
        score = ctypes.CDLL(str(path)).ggml_backend_score
        score.restype = ctypes.c_int
        scores[path.name[len(MODULE_PREFIX) : -len(".so")]] = int(score())
    return scores


def choose_variant(scores: Mapping[str, int], excluded: Collection[str] = ()) -> str:
    """The variant to load: the best one this CPU supports and the gateway has not excluded."""
    if not scores:
        return BUILT_IN
    usable = {name: score for name, score in scores.items() if score > 0}
    if not usable:
        raise CpuUnsupported(
            "this CPU lacks the instructions every build of the local engine needs (AVX2, FMA, "
            f"F16C and BMI2: x86-64-v3); builds present: {', '.join(sorted(scores))}"
        )
    allowed = {name: score for name, score in usable.items() if name not in excluded}
    if not allowed:
        raise CpuUnsupported(
            "every build of the local engine that runs on this CPU failed its self-test "
            f"({', '.join(sorted(usable))})"
        )
    return max(allowed, key=lambda name: allowed[name])


def fallbacks(scores: Mapping[str, int], current: str) -> list[str]:
    """Variants this CPU supports that score below `current`, best first."""
    limit = scores.get(current, 0)
    lower = [name for name, score in scores.items() if 0 < score < limit]
    return sorted(lower, key=lambda name: -scores[name])


def load_variant(lib_dir: Path, variant: str) -> None:
    """Register the chosen module with ggml before llama.cpp initialises its backends (which
    would otherwise pick one itself)."""
    if variant == BUILT_IN:
        return
    ggml = ctypes.CDLL(str(lib_dir / "libggml.so"))
    ggml.ggml_backend_load.restype = ctypes.c_void_p
    ggml.ggml_backend_load.argtypes = [ctypes.c_char_p]
    module = lib_dir / f"{MODULE_PREFIX}{variant}.so"
    if not ggml.ggml_backend_load(str(module).encode()):
        raise CpuUnsupported(f"the CPU backend module {module.name} failed to load")
