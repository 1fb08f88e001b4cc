"""Session fixtures for real PostgreSQL and Redis servers (see tests/support/services.py), and
the Prometheus binaries (tests/support/prometheus.py).

A machine without the binaries skips the tests that need them; under CI (CI=true) that is a
failure instead, so a missing install step is never mistaken for a green run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from tests.support import prometheus
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


@pytest.fixture(scope="session")
def prometheus_binary() -> Path:
    """The Prometheus server binary; each test module starts its own server with its targets."""
    try:
        return prometheus.prometheus_binary()
    except ServiceUnavailable as missing:
        _unavailable(missing)


@pytest.fixture(scope="session")
def promtool_binary() -> Path:
    try:
        return prometheus.promtool_binary()
    except ServiceUnavailable as missing:
        _unavailable(missing)


def _unavailable(missing: ServiceUnavailable) -> NoReturn:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{missing} (CI must install it: see .ci/run)", pytrace=False)
    pytest.skip(str(missing))
