"""The openai_compat provider against a fake upstream that speaks the OpenAI wire format."""

from __future__ import annotations

import time

import httpx
import openai
import orjson
import pytest

from modelyard.testing.fake_upstream import (
    FakeUpstream,
    JsonReply,
    StreamReply,
    completion_body,
    stream_events,
)
from tests.remote.fixtures import UPSTREAM_SECRET
from tests.support.gateway import GatewayProcess
from tests.support.ledger_rows import request_record

HELLO = [{"role": "user", "content": "Hello"}]


def test_completion_is_forwarded_with_the_catalog_model_and_credential(
    remote_client: openai.OpenAI, upstream: FakeUpstream
) -> None:
    upstream.enqueue(JsonReply(completion_body("Bonjour.")))
    completion = remote_client.chat.completions.create(
        model="acme-large",
        messages=HELLO,
        max_tokens=20,
        extra_body={"random_seed": 4, "safe_prompt": False},
    )
    assert completion.choices[0].message.content == "Bonjour."
    assert completion.model == "acme-large"
    assert completion.usage is not None and completion.usage.total_tokens == 16
    sent = upstream.requests[-1]
    assert sent.body["model"] == "large-2026"
    assert sent.body["seed"] == 4
    assert "random_seed" not in sent.body and "safe_prompt" not in sent.body
    assert sent.headers["authorization"] == f"Bearer {UPSTREAM_SECRET}"


def test_stream_passes_through_and_asks_upstream_for_usage(
    remote_client: openai.OpenAI, upstream: FakeUpstream
) -> None:
    usage = {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}
    upstream.enqueue(StreamReply(stream_events(["One", " two", " three"], usage=usage)))
    chunks = list(
        remote_client.chat.completions.create(model="acme-large", messages=HELLO, stream=True)
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "One two three"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3
    assert upstream.requests[-1].body["stream_options"] == {"include_usage": True}


def test_upstream_url_cannot_be_chosen_by_the_request(
    remote_client: openai.OpenAI, upstream: FakeUpstream
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        remote_client.chat.completions.create(
            model="acme-large", messages=HELLO, extra_body={"base_url": "http://evil.example/v1"}
        )
    assert caught.value.code == "unsupported_parameter"
    assert upstream.requests == []


def test_429_keeps_retry_after_and_caps_it(
    remote_client: openai.OpenAI, upstream: FakeUpstream
) -> None:
    upstream.enqueue(
        JsonReply({"error": {"message": "slow down"}}, status=429, headers={"Retry-After": "7"})
    )
    with pytest.raises(openai.RateLimitError) as caught:
        remote_client.chat.completions.create(model="acme-large", messages=HELLO)
    assert caught.value.response.headers["retry-after"] == "7"
    upstream.enqueue(JsonReply({}, status=429, headers={"Retry-After": "900"}))
    with pytest.raises(openai.RateLimitError) as capped:
        remote_client.chat.completions.create(model="acme-large", messages=HELLO)
    assert capped.value.response.headers["retry-after"] == "120"


@pytest.mark.parametrize(
    ("status", "expected", "code"),
    [
        (500, 502, "upstream_error"),
        (503, 503, "upstream_unavailable"),
        (401, 502, "upstream_error"),
    ],
)
def test_upstream_failures_map_to_gateway_statuses(
    remote_client: openai.OpenAI, upstream: FakeUpstream, status: int, expected: int, code: str
) -> None:
    upstream.enqueue(
        JsonReply({"error": {"message": f"internal detail {UPSTREAM_SECRET}"}}, status=status)
    )
    with pytest.raises(openai.APIStatusError) as caught:
        remote_client.chat.completions.create(model="acme-large", messages=HELLO)
    assert caught.value.status_code == expected
    assert caught.value.code == code
    assert UPSTREAM_SECRET not in caught.value.response.text
    assert upstream.base_url not in caught.value.response.text


def test_upstream_400_passes_its_reason_on(
    remote_client: openai.OpenAI, upstream: FakeUpstream
) -> None:
    upstream.enqueue(
        JsonReply({"error": {"message": "messages too long for this model"}}, status=400)
    )
    with pytest.raises(openai.BadRequestError) as caught:
        remote_client.chat.completions.create(model="acme-large", messages=HELLO)
    assert caught.value.code == "upstream_rejected_request"
    assert "messages too long" in caught.value.message


def test_silent_upstream_is_a_504(remote_client: openai.OpenAI, upstream: FakeUpstream) -> None:
    upstream.enqueue(JsonReply(completion_body(), delay_s=5))
    with pytest.raises(openai.APIStatusError) as caught:
        remote_client.chat.completions.create(model="acme-large", messages=HELLO)
    assert caught.value.status_code == 504


@pytest.mark.parametrize(
    "reply",
    [
        StreamReply(stream_events(["a", "b", "c", "d"]), reset_after=3),
        StreamReply(stream_events(["a", "b"], done=False)),
        StreamReply([*stream_events(["a"])[:2], b"data: {not json"]),
        StreamReply(stream_events(["a", "b", "c"]), delay_s=1.5),
    ],
    ids=["reset-mid-stream", "no-done", "malformed-sse", "idle-too-long"],
)
def test_a_broken_stream_is_never_reported_as_success(
    remote_gateway: GatewayProcess, upstream: FakeUpstream, reply: StreamReply
) -> None:
    upstream.enqueue(reply)
    client = openai.OpenAI(
        base_url=f"{remote_gateway.base_url}/v1", api_key=remote_gateway.admin_key, max_retries=0
    )
    with pytest.raises((openai.APIError, httpx.HTTPError)):
        for _ in client.chat.completions.create(model="acme-large", messages=HELLO, stream=True):
            pass


def test_upstream_without_usage_still_answers(
    remote_client: openai.OpenAI, upstream: FakeUpstream
) -> None:
    body = completion_body("No usage here.")
    del body["usage"]
    upstream.enqueue(JsonReply(body))
    completion = remote_client.chat.completions.create(model="acme-large", messages=HELLO)
    assert completion.choices[0].message.content == "No usage here."
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 4  # estimated: 14 characters
    assert completion.usage.prompt_tokens > 0


def test_an_answer_without_choices_is_a_502_and_is_still_recorded_once(
    remote_gateway: GatewayProcess, remote_client: openai.OpenAI, upstream: FakeUpstream
) -> None:
    body = completion_body()
    body["choices"] = []
    body["usage"] = {"prompt_tokens": 7, "completion_tokens": 0, "total_tokens": 7}
    upstream.enqueue(JsonReply(body), JsonReply(body))  # the second for a retryable attempt
    with pytest.raises(openai.APIStatusError) as caught:
        remote_client.chat.completions.create(model="acme-large", messages=HELLO)
    assert caught.value.status_code == 502
    row = request_record(remote_gateway, caught.value.response.headers["x-request-id"])
    assert row["status"] == 502
    attempts = (
        row["attempts"] if isinstance(row["attempts"], list) else orjson.loads(row["attempts"])
    )
    # Each attempt is billed the 7 prompt tokens its upstream said it read, once.
    assert row["prompt_tokens"] == 7 * len(attempts)


def test_incremental_tool_call_deltas_arrive_as_one_complete_call(
    remote_client: openai.OpenAI, upstream: FakeUpstream
) -> None:
    def chunk(delta: dict[str, object], finish: str | None = None) -> bytes:
        body = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}  # fmt: skip
        return b"data: " + orjson.dumps(body)

    upstream.enqueue(
        StreamReply(
            [
                chunk(
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": "call_a",
                                "type": "function",
                                "function": {"name": "get_weather", "arguments": '{"ci'},
                            }
                        ],
                    }
                ),
                chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ty": "Paris"}'}}]}),
                chunk({}, "tool_calls"),
                b"data: [DONE]",
            ]
        )
    )
    chunks = list(
        remote_client.chat.completions.create(
            model="acme-large", messages=HELLO, tools=[WEATHER_TOOL], stream=True
        )
    )
    calls = [call for c in chunks if c.choices for call in (c.choices[0].delta.tool_calls or [])]
    assert len(calls) == 1
    assert calls[0].function is not None
    assert (calls[0].id, calls[0].function.name, calls[0].function.arguments) == (
        "call_a",
        "get_weather",
        '{"city": "Paris"}',
    )
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}
STRICT_PERSON = {
    "type": "json_schema",
    "json_schema": {"name": "person", "schema": PERSON, "strict": True},
}


def test_invalid_structured_output_gets_one_repair_attempt(
    remote_client: openai.OpenAI, upstream: FakeUpstream
) -> None:
    upstream.enqueue(
        JsonReply(completion_body('{"name": "Ada", "age": "old"}')),
        JsonReply(completion_body('{"name": "Ada", "age": 36}')),
    )
    completion = remote_client.chat.completions.create(
        model="acme-large",
        messages=HELLO,
        response_format=STRICT_PERSON,  # type: ignore[arg-type]
    )
    assert orjson.loads(completion.choices[0].message.content or "") == {"name": "Ada", "age": 36}
    assert len(upstream.requests) == 2
    assert upstream.requests[0].body["response_format"]["json_schema"]["schema"] == PERSON


def test_output_that_stays_invalid_is_a_502_never_a_200(
    remote_client: openai.OpenAI, upstream: FakeUpstream
) -> None:
    upstream.enqueue(JsonReply(completion_body("not json")), JsonReply(completion_body("{}")))
    with pytest.raises(openai.APIStatusError) as caught:
        remote_client.chat.completions.create(
            model="acme-large",
            messages=HELLO,
            response_format=STRICT_PERSON,  # type: ignore[arg-type]
        )
    assert caught.value.status_code == 502
    assert caught.value.code == "invalid_model_output"
    assert len(upstream.requests) == 2


def test_a_call_to_an_undeclared_tool_is_never_returned(
    remote_client: openai.OpenAI, upstream: FakeUpstream
) -> None:
    bad = completion_body(None)
    bad["choices"][0]["message"]["tool_calls"] = [
        {
            "id": "c1",
            "type": "function",
            "function": {"name": "delete_everything", "arguments": "{}"},
        }
    ]
    bad["choices"][0]["finish_reason"] = "tool_calls"
    upstream.enqueue(JsonReply(bad), JsonReply(bad))
    with pytest.raises(openai.APIStatusError) as caught:
        remote_client.chat.completions.create(
            model="acme-large", messages=HELLO, tools=[WEATHER_TOOL]
        )  # type: ignore[list-item]
    assert caught.value.code == "invalid_model_output"


BAD_WEATHER_CALL = {
    "index": 0,
    "id": "x",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"town": 1}'},
}


def test_streamed_invalid_tool_arguments_end_in_an_error(
    remote_client: openai.OpenAI, upstream: FakeUpstream
) -> None:
    upstream.enqueue(
        StreamReply(
            [
                b"data: "
                + orjson.dumps(
                    {
                        "id": "c",
                        "object": "chat.completion.chunk",
                        "created": 1,
                        "model": "m",
                        "choices": [
                            {
                                "index": 0,
                                "delta": {"tool_calls": [BAD_WEATHER_CALL]},
                                "finish_reason": "tool_calls",
                            }
                        ],
                    }
                ),
                b"data: [DONE]",
            ]
        )
    )
    with pytest.raises(openai.APIError) as caught:
        for _ in remote_client.chat.completions.create(
            model="acme-large",
            messages=HELLO,
            tools=[WEATHER_TOOL],
            stream=True,  # type: ignore[list-item]
        ):
            pass
    assert "get_weather" in str(caught.value)


def test_a_capability_the_model_lacks_is_refused_before_the_upstream(
    remote_client: openai.OpenAI, upstream: FakeUpstream
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        remote_client.chat.completions.create(
            model="acme-small", messages=HELLO, tools=[WEATHER_TOOL]
        )  # type: ignore[list-item]
    assert caught.value.code == "capability_unavailable"
    assert "tools" in caught.value.message
    with pytest.raises(openai.BadRequestError) as schema:
        remote_client.chat.completions.create(
            model="acme-small",
            messages=HELLO,
            response_format=STRICT_PERSON,  # type: ignore[arg-type]
        )
    assert "json_schema" in schema.value.message
    assert upstream.requests == []


def test_usage_is_counted_when_the_client_leaves_mid_stream(
    remote_gateway: GatewayProcess, upstream: FakeUpstream
) -> None:
    labels = {"deployment": "acme-large-eu"}

    def metric(name: str, **more: str) -> float:
        try:
            return remote_gateway.metric(name, **labels, **more)
        except KeyError:
            return 0.0

    before_requests = metric("modelyard_requests_total")
    before_tokens = metric("modelyard_tokens_total", gen_ai_token_type="output")
    before_left = metric("modelyard_client_disconnects_total")
    upstream.enqueue(StreamReply(stream_events([f"w{i} " for i in range(60)]), delay_s=0.05))
    with httpx.stream(
        "POST",
        f"{remote_gateway.base_url}/v1/chat/completions",
        json={"model": "acme-large", "messages": HELLO, "stream": True},
        headers={"Authorization": f"Bearer {remote_gateway.admin_key}"},
        timeout=30,
    ) as response:
        lines = response.iter_lines()
        received = [line for line in (next(lines) for _ in range(8)) if line.startswith("data: {")]
    deadline = time.monotonic() + 10
    while metric("modelyard_requests_total") == before_requests:
        assert time.monotonic() < deadline, "the abandoned request was never counted"
        time.sleep(0.05)
    counted = metric("modelyard_tokens_total", gen_ai_token_type="output") - before_tokens
    assert len(received) - 1 <= counted < 60  # what had arrived, not the whole answer
    assert metric("modelyard_client_disconnects_total") == before_left + 1


def test_azure_sdk_sees_a_cut_upstream_stream_as_a_failure(
    remote_gateway: GatewayProcess, upstream: FakeUpstream
) -> None:
    from azure.ai.inference import ChatCompletionsClient
    from azure.ai.inference.models import UserMessage
    from azure.core.credentials import AzureKeyCredential
    from azure.core.exceptions import AzureError

    upstream.enqueue(StreamReply(stream_events(["a", "b", "c", "d"]), reset_after=3))
    client = ChatCompletionsClient(
        endpoint=f"{remote_gateway.base_url}/models",
        credential=AzureKeyCredential(remote_gateway.admin_key or ""),
        retry_total=0,
    )
    # Not the silent success the Azure SDK reports for an in-band error event.
    with pytest.raises((AzureError, httpx.HTTPError, ValueError)):
        for _ in client.complete(messages=[UserMessage("hi")], model="acme-large", stream=True):
            pass
