"""The local engine against what a hostile client tries and what a careless one runs into."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import orjson
import pytest

from tests.llamacpp.engine_harness import LONG_STORY_PROMPT, UNENDING_STORY
from tests.scaleout.ledger_view import wait_for_rows
from tests.support.gateway import GatewayProcess

pytestmark = pytest.mark.model

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
            "required": ["city", "unit"],
        },
    },
}


def test_a_pattern_past_what_the_grammar_can_enforce_is_a_400(client: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "string", "pattern": "^(a{1000}){1000}$"}},
        "required": ["a"],
    }
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model="smollm2",
            messages=[{"role": "user", "content": "Say a."}],
            max_tokens=8,
            response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": schema}},
        )
    assert refused.value.code == "unsupported_schema"


def test_a_forced_call_cut_off_by_max_tokens_comes_back_partial_with_length(
    client: openai.OpenAI,
) -> None:
    completion = client.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "What is the weather in Paris, in celsius?"}],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=18,
        temperature=0,
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "length"
    assert choice.message.tool_calls, "a forced call is never answered with nothing"
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert call.function.arguments.startswith("{")  # type: ignore[union-attr]


def test_message_content_that_imitates_the_template_stays_text(client: openai.OpenAI) -> None:
    def prompt_tokens(content: str) -> int:
        completion = client.chat.completions.create(
            model="smollm2", messages=[{"role": "user", "content": content}], max_tokens=1
        )
        assert completion.usage is not None
        return completion.usage.prompt_tokens

    # As a special token "<|im_start|>" would be one token; as text it is several.
    assert prompt_tokens("<|im_start|>") > prompt_tokens("") + 3


@pytest.fixture(scope="module")
def one_slot_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    process = GatewayProcess(
        tmp_path_factory.mktemp("one-slot"),
        env={"MODELYARD_ENGINE_PARALLEL": "1"},
    ).start()
    yield process
    process.stop()


def project_key(gateway: GatewayProcess, project: str, limits: dict[str, object]) -> str:
    assert gateway.admin("POST", "/admin/projects", {"id": project}).status_code == 201
    created = gateway.admin("POST", f"/admin/projects/{project}/keys", {"name": "k"}).json()
    answer = gateway.admin("PUT", f"/admin/projects/{project}/keys/{created['id']}/limits", limits)
    assert answer.status_code == 200, answer.text
    key: str = created["key"]
    return key


def test_a_client_that_leaves_while_queued_is_recorded_at_once_and_frees_its_limits(
    one_slot_gateway: GatewayProcess,
) -> None:
    gateway = one_slot_gateway
    key = project_key(gateway, "queued", {"max_concurrent": 1, "budgets_usd": {"day": "1"}})
    url = f"{gateway.base_url}/v1/chat/completions"
    short = {"model": "smollm2", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
    long = {
        "model": "smollm2",
        "messages": LONG_STORY_PROMPT,
        "max_tokens": 1500,
        "stream": True,
        "response_format": {"type": "json_schema", "json_schema": UNENDING_STORY},
    }
    admin = {"Authorization": f"Bearer {gateway.admin_key}"}

    def waiting() -> float:
        return gateway.metric("modelyard_local_queue_waiting", deployment="smollm2-local")

    with httpx.stream("POST", url, json=long, headers=admin, timeout=60) as blocker:
        lines = blocker.iter_lines()
        next(lines)  # the only slot is generating for someone else
        body = orjson.dumps(short)
        request = (
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        with socket.create_connection(("127.0.0.1", gateway.port)) as sock:
            sock.sendall(request)
            until(lambda: waiting() == 1, "the request never queued")
        until(lambda: waiting() == 0, "the queued request stayed after its client left")
        # Its lease is free at once, though the slot is still busy: the next request queues
        # (a leaked lease would have answered 429 straight away).
        with ThreadPoolExecutor(1) as pool:
            second = pool.submit(
                httpx.post, url, json=short, headers={"Authorization": f"Bearer {key}"}, timeout=60
            )
            until(lambda: waiting() == 1 or second.done(), "the second request never arrived")
            assert not second.done(), second.result().text
            lines.close()
            blocker.close()
            assert second.result().status_code == 200
    database = f"sqlite:///{gateway.data_dir / 'modelyard.db'}"
    rows = wait_for_rows(database, 2, key_id=key.split("-")[1])
    assert sorted(row["status"] for row in rows) == [200, 499]
    (left,) = [row for row in rows if row["status"] == 499]
    assert left["completion_tokens"] == 0 and left["prompt_tokens"] == 0
    assert left["client_disconnected"]


def until(condition: Callable[[], bool], failure: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, failure
        time.sleep(0.02)


def test_model_info_without_a_deployment_header_names_the_only_chat_model(
    tmp_path: Path,
) -> None:
    gateway = GatewayProcess(tmp_path / "data").start()  # no MODELYARD_DEFAULT_MODEL
    try:
        from azure.ai.inference import ChatCompletionsClient
        from azure.core.credentials import AzureKeyCredential

        client = ChatCompletionsClient(
            endpoint=f"{gateway.base_url}/models",
            credential=AzureKeyCredential(str(gateway.admin_key)),
        )
        info = client.get_model_info()
        assert info.model_name == "smollm2-135m-instruct"
        assert info.model_type == "chat_completion"
        assert "alembic" not in gateway.log()  # start-up says nothing of its migrations
    finally:
        gateway.stop()


def test_a_long_prompt_left_during_its_evaluation_stops_being_evaluated(
    one_slot_gateway: GatewayProcess,
) -> None:
    gateway = one_slot_gateway
    key = project_key(gateway, "long-prompt", {"budgets_usd": {"day": "1"}})
    words = 6000
    body = orjson.dumps(
        {
            "model": "smollm2",
            "messages": [{"role": "user", "content": "word " * words}],
            "max_tokens": 4,
        }
    )
    request = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    busy = "modelyard_local_busy"
    with socket.create_connection(("127.0.0.1", gateway.port)) as sock:
        sock.sendall(request)
        until(lambda: gateway.metric(busy, deployment="smollm2-local") == 1, "never started")
    until(lambda: gateway.metric(busy, deployment="smollm2-local") == 0, "kept evaluating")
    database = f"sqlite:///{gateway.data_dir / 'modelyard.db'}"
    (row,) = wait_for_rows(database, 1, key_id=key.split("-")[1])
    assert (row["status"], row["completion_tokens"]) == (499, 0)
    # Billed for the slices evaluated before it was dropped, not the whole prompt.
    assert 0 <= row["prompt_tokens"] < words
