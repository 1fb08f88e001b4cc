"""Which event loop the benchmark's own processes run: uvloop when installed, else asyncio's.

uvloop comes with `uvicorn[standard]`, which Modelyard depends on and runs on; the fake upstream
and the load generator use it too so that neither is slower than the servers they measure.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def name() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"
