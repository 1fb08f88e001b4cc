"""The embedded engine under concurrency and disconnects, observed over real HTTP."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from tests.llamacpp.engine_harness import LONG_STORY_PROMPT, UNENDING_STORY
from tests.support.gateway import GatewayProcess

MODEL = "smollm2"
LONG = LONG_STORY_PROMPT
DEPLOYMENT = {"deployment": "smollm2-local"}


def wait_idle(gateway: GatewayProcess, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        busy = gateway.metric("modelyard_local_busy", **DEPLOYMENT)
        waiting = gateway.metric("modelyard_local_queue_waiting", **DEPLOYMENT)
        if busy == 0 and waiting == 0:
            return
        time.sleep(0.05)
    raise TimeoutError("the engine did not become idle")


def stream_long_story(
    gateway: GatewayProcess, max_tokens: int
) -> contextlib.AbstractContextManager[httpx.Response]:
    """A stream that is still generating when the test acts. The schema's minimum length forbids
    the model to stop before `max_tokens`, whatever path greedy decoding takes on this CPU."""
    body = {
        "model": MODEL,
        "messages": LONG,
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "stream": True,
        "response_format": {"type": "json_schema", "json_schema": UNENDING_STORY},
    }
    return httpx.stream(
        "POST",
        f"{gateway.base_url}/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {gateway.admin_key}"},
        timeout=60,
    )


def test_concurrent_streams_each_get_every_token(client: openai.OpenAI) -> None:
    def stream_one(seed: int) -> tuple[int, str | None, int]:
        chunks = list(
            client.chat.completions.create(
                model=MODEL,
                messages=LONG,
                max_tokens=24,
                temperature=0.8,
                seed=seed,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        usage = chunks[-1].usage
        assert usage is not None
        finish = next(
            c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
        )
        text_chunks = sum(1 for c in chunks if c.choices and c.choices[0].delta.content)
        return usage.completion_tokens, finish, text_chunks

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(stream_one, range(4)))
    for completion_tokens, finish, text_chunks in results:
        assert text_chunks > 0
        # Nobody is cut short: each stream either ran to max_tokens or stopped by itself.
        assert (finish, completion_tokens) == ("length", 24) or (
            finish == "stop" and completion_tokens < 24
        )


def test_stream_disconnect_stops_generation(gateway: GatewayProcess) -> None:
    wait_idle(gateway)
    before_tokens = gateway.metric("modelyard_local_completion_tokens_total", **DEPLOYMENT)
    before_cancelled = gateway.metric("modelyard_local_jobs_cancelled_total", **DEPLOYMENT)
    with stream_long_story(gateway, max_tokens=1500) as response:
        lines = response.iter_lines()
        received = [next(lines) for _ in range(6)]
    assert any(line.startswith("data: {") for line in received)
    wait_idle(gateway)
    generated = (
        gateway.metric("modelyard_local_completion_tokens_total", **DEPLOYMENT) - before_tokens
    )
    assert (
        gateway.metric("modelyard_local_jobs_cancelled_total", **DEPLOYMENT) == before_cancelled + 1
    )
    assert generated < 1500
    # The abandoned stream is still billed for exactly what the engine generated.
    assert gateway.metric("modelyard_client_disconnects_total", deployment="smollm2-local") >= 1


def test_non_stream_disconnect_stops_generation(gateway: GatewayProcess) -> None:
    wait_idle(gateway)
    before_cancelled = gateway.metric("modelyard_local_jobs_cancelled_total", **DEPLOYMENT)
    before_tokens = gateway.metric("modelyard_local_completion_tokens_total", **DEPLOYMENT)
    body = json.dumps(
        {
            "model": MODEL,
            "messages": LONG,
            "max_tokens": 1500,
            "response_format": {"type": "json_schema", "json_schema": UNENDING_STORY},
        }
    ).encode()
    request = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {gateway.admin_key}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    with socket.create_connection(("127.0.0.1", gateway.port)) as sock:
        sock.sendall(request)
        deadline = time.monotonic() + 30
        while gateway.metric("modelyard_local_busy", **DEPLOYMENT) == 0:
            assert time.monotonic() < deadline, "generation never started"
            time.sleep(0.02)
    wait_idle(gateway)
    assert (
        gateway.metric("modelyard_local_jobs_cancelled_total", **DEPLOYMENT) == before_cancelled + 1
    )
    assert (
        gateway.metric("modelyard_local_completion_tokens_total", **DEPLOYMENT) - before_tokens
        < 1500
    )


def test_event_loop_answers_while_the_model_generates(gateway: GatewayProcess) -> None:
    wait_idle(gateway)
    with stream_long_story(gateway, max_tokens=400) as response:
        lines = response.iter_lines()
        next(lines)
        health = httpx.get(f"{gateway.base_url}/healthz", timeout=30)
        still_busy = gateway.metric("modelyard_local_busy", **DEPLOYMENT)
        rest = list(lines)
    assert health.status_code == 200
    assert still_busy == 1, "the health check should have been answered mid-generation"
    assert rest[-2:] == ["data: [DONE]", ""] or rest[-1] == "data: [DONE]"


@pytest.fixture(scope="module")
def tiny_queue_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    process = GatewayProcess(
        tmp_path_factory.mktemp("tiny-queue"),
        env={"MODELYARD_ENGINE_QUEUE_DEPTH": "1", "MODELYARD_ENGINE_PARALLEL": "1"},
    ).start()
    yield process
    process.stop()


def test_full_queue_answers_503_with_retry_after(tiny_queue_gateway: GatewayProcess) -> None:
    gateway = tiny_queue_gateway
    short = {"model": MODEL, "messages": LONG, "max_tokens": 8, "temperature": 0}
    headers = {"Authorization": f"Bearer {gateway.admin_key}"}
    url = f"{gateway.base_url}/v1/chat/completions"
    with (
        ThreadPoolExecutor(1) as pool,
        stream_long_story(gateway, max_tokens=1500) as running,
    ):
        # Keep the iterator: dropping it closes the response, and the gateway cancels the job.
        story = running.iter_lines()
        next(story)  # one job generating...
        waiting = pool.submit(httpx.post, url, json=short, headers=headers, timeout=120)
        deadline = time.monotonic() + 30
        while gateway.metric("modelyard_local_queue_waiting", **DEPLOYMENT) < 1:
            assert time.monotonic() < deadline, (
                f"the second request never queued: {waiting.done() and waiting.result().text}"
            )
            time.sleep(0.02)
        # ...and one waiting fill the queue (depth 1): the next ones are refused at once.
        refused = [httpx.post(url, json=short, headers=headers, timeout=30) for _ in range(3)]
        client = openai.OpenAI(
            base_url=f"{gateway.base_url}/v1", api_key=gateway.admin_key, max_retries=0
        )
        with pytest.raises(openai.InternalServerError) as sdk_error:
            client.chat.completions.create(**short)  # type: ignore[arg-type]
    # Leaving the stream cancels the running job; the queued one then runs to the end.
    admitted = waiting.result()
    assert admitted.status_code == 200
    assert admitted.json()["usage"]["completion_tokens"] > 0
    for response in refused:
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "engine_overloaded"
        assert 1 <= int(response.headers["retry-after"]) <= 120
    assert sdk_error.value.status_code == 503
    assert sdk_error.value.code == "engine_overloaded"


def test_a_client_timing_out_on_a_non_stream_request_is_no_server_error(
    gateway: GatewayProcess,
) -> None:
    wait_idle(gateway)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{gateway.base_url}/v1/chat/completions",
            json={
                "model": MODEL,
                "messages": LONG,
                "max_tokens": 400,
                "response_format": {"type": "json_schema", "json_schema": UNENDING_STORY},
            },
            headers={"Authorization": f"Bearer {gateway.admin_key}"},
            timeout=1.0,
        )
    wait_idle(gateway)
    assert "unhandled" not in gateway.log()
