"""Session fixtures for real PostgreSQL and Redis servers (see tests/support/services.py).

A machine without the binaries skips the tests that need them; under CI (CI=true) that is a
failure instead, so a missing install step is never mistaken for a green run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import NoReturn

import pytest

from tests.support.services import (
    PostgresServer,
    RedisServer,
    ServiceUnavailable,
    postgres_bindir,
    redis_binary,
)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    try:
        bindir = postgres_bindir()
    except ServiceUnavailable as missing:
        _unavailable(missing)
    server = PostgresServer.start(bindir)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    try:
        binary = redis_binary()
    except ServiceUnavailable as missing:
        _unavailable(missing)
    server = RedisServer.start(binary)
    yield server
    server.stop()


def _unavailable(missing: ServiceUnavailable) -> NoReturn:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{missing} (CI must install it: see .ci/run)", pytrace=False)
    pytest.skip(str(missing))
