from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import openai
import pytest

from tests.support.gateway import GatewayProcess

pytest_plugins = ["tests.remote.fixtures", "tests.support.service_fixtures"]


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """One gateway on the bundled catalog, shared by the tests that need no special settings."""
    process = GatewayProcess(
        tmp_path_factory.mktemp("gateway"), env={"MODELYARD_DEFAULT_MODEL": "smollm2"}
    ).start()
    yield process
    process.stop()


@pytest.fixture()
def client(gateway: GatewayProcess) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{gateway.base_url}/v1", api_key=gateway.admin_key, max_retries=0
    )


@pytest.fixture()
async def async_client(
    gateway: GatewayProcess, anyio_backend: str
) -> AsyncIterator[openai.AsyncOpenAI]:
    """Closed on the test's own event loop: left to the garbage collector, its connections
    would be closed later, on a loop that no longer exists, failing some other test."""
    async with openai.AsyncOpenAI(
        base_url=f"{gateway.base_url}/v1", api_key=gateway.admin_key, max_retries=0
    ) as client:
        yield client


@pytest.fixture()
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture()
def anyio_backend() -> str:
    return "asyncio"
