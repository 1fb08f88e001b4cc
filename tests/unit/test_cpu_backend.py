"""Choosing the CPU backend build an engine process loads."""

from __future__ import annotations

import pytest

from modelyard.engine.cpu_backend import BUILT_IN, CpuUnsupported, choose_variant, fallbacks

# Scores as ggml computes them on an AVX-512 machine: every build runs, the widest scores most.
AVX512_MACHINE = {"haswell": 63, "skylakex": 191, "zen4": 1983}
# An AVX2 machine: the AVX-512 builds score 0 (they would fault on the first instruction).
AVX2_MACHINE = {"haswell": 63, "skylakex": 0, "zen4": 0}


def test_the_best_build_this_cpu_supports_is_chosen() -> None:
    assert choose_variant(AVX512_MACHINE) == "zen4"
    assert choose_variant(AVX2_MACHINE) == "haswell"


def test_a_build_excluded_after_a_crash_gives_way_to_the_next_best() -> None:
    assert choose_variant(AVX512_MACHINE, excluded=["zen4"]) == "skylakex"
    assert fallbacks(AVX512_MACHINE, "zen4") == ["skylakex", "haswell"]
    assert fallbacks(AVX2_MACHINE, "haswell") == []


def test_a_cpu_without_avx2_is_refused_with_a_message_that_says_so() -> None:
    with pytest.raises(CpuUnsupported, match="AVX2") as refused:
        choose_variant({"haswell": 0, "skylakex": 0, "zen4": 0})
    assert "haswell, skylakex, zen4" in str(refused.value)


def test_when_every_usable_build_crashed_the_reason_names_them() -> None:
    with pytest.raises(CpuUnsupported, match="failed its self-test"):
        choose_variant(AVX2_MACHINE, excluded=["haswell"])


def test_a_llama_cpp_without_backend_modules_uses_its_built_in_backend() -> None:
    assert choose_variant({}) == BUILT_IN
