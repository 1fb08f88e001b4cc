"""Bad input gets the OpenAI error shape, the right status and SDK exception, and leaks nothing."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.support.gateway import GatewayProcess

MODEL = "smollm2"
CANARY = "canary-prompt-7f3a9c"


def post(gateway: GatewayProcess, body: bytes, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{gateway.base_url}/v1/chat/completions",
        content=body,
        headers={"Authorization": f"Bearer {gateway.admin_key}", **headers},
        timeout=30,
    )


def assert_error_shape(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"]
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code
    assert "Traceback" not in response.text and CANARY not in response.text
    return error  # type: ignore[no-any-return]


def test_missing_key_is_401(gateway: GatewayProcess) -> None:
    # The openai SDK refuses to send without a key, so this one goes over plain HTTP.
    error = assert_error_shape(httpx.get(f"{gateway.base_url}/v1/models"), 401, "invalid_api_key")
    assert "Authorization" in str(error["message"])
    malformed = httpx.get(f"{gateway.base_url}/v1/models", headers={"Authorization": "Basic abc"})
    assert_error_shape(malformed, 401, "invalid_api_key")


def test_wrong_key_is_refused_without_echoing_it(gateway: GatewayProcess) -> None:
    wrong = "sk-wrong-secret-value-4242"
    client = openai.OpenAI(base_url=f"{gateway.base_url}/v1", api_key=wrong, max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": CANARY}])
    assert "wrong-secret" not in str(caught.value)
    assert caught.value.request_id


def test_api_key_header_is_accepted_and_a_conflicting_pair_is_not(gateway: GatewayProcess) -> None:
    url = f"{gateway.base_url}/v1/models"
    assert httpx.get(url, headers={"api-key": gateway.admin_key or ""}).status_code == 200
    both = {"api-key": gateway.admin_key or "", "Authorization": f"Bearer {gateway.admin_key}"}
    assert httpx.get(url, headers=both).status_code == 200
    conflict = {"api-key": "other", "Authorization": f"Bearer {gateway.admin_key}"}
    assert_error_shape(httpx.get(url, headers=conflict), 401, "invalid_api_key")


def test_unknown_model_is_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.code == "model_not_found"
    assert "gpt-9" in caught.value.message


@pytest.mark.parametrize(
    ("messages", "param"),
    [
        ([{"role": "wizard", "content": CANARY}], "messages[0].role"),
        ([{"role": "user", "content": 42}], "messages[0].content"),
        ([{"role": "user"}], "messages[0].content"),
        ([{"role": "user", "content": [{"type": "text"}]}], "messages[0].content[0].text"),
        ([{"role": "tool", "content": CANARY}], "messages[0].tool_call_id"),
        ([], "messages"),
    ],
)
def test_bad_messages_name_the_parameter(
    client: openai.OpenAI, messages: list[dict[str, object]], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=MODEL, messages=messages)  # type: ignore[arg-type]
    assert caught.value.param == param
    assert param in caught.value.message
    assert CANARY not in caught.value.message


@pytest.mark.parametrize(
    ("extra", "param", "code"),
    [
        ({"temperature": "hot"}, "temperature", "invalid_parameter"),
        ({"temperature": 3}, "temperature", "invalid_parameter"),
        ({"max_tokens": 0}, "max_tokens", "invalid_parameter"),
        ({"n": 50}, "n", "invalid_parameter"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop", "invalid_parameter"),
        ({"stream": "yes"}, "stream", "invalid_parameter"),
        (
            {"tools": [{"type": "function", "function": {"name": "no spaces allowed"}}]},
            "tools[0].function.name",
            "invalid_parameter",
        ),
        ({"response_format": {"type": "xml"}}, "response_format.type", "invalid_parameter"),
        ({"tool_choice": "required"}, "tool_choice", "invalid_parameter"),
        ({"logit_bias": {"1": 5}}, "logit_bias", "unsupported_parameter"),
        ({"logprobs": True}, "logprobs", "invalid_parameter"),
        ({"frobnicate": 1}, "frobnicate", "unsupported_parameter"),
        ({"max_tokens": 100_000}, "max_tokens", "invalid_parameter"),
        ({"stream_options": {"include_usage": True}}, "stream_options", "invalid_parameter"),
    ],
)
def test_bad_parameters_are_refused_by_name(
    client: openai.OpenAI, extra: dict[str, object], param: str, code: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], extra_body=extra
        )
    assert caught.value.param == param
    assert caught.value.code == code
    assert param in caught.value.message


def test_image_input_is_refused_for_a_text_model(client: openai.OpenAI) -> None:
    content = [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": content}])  # type: ignore[list-item,misc]
    assert caught.value.param == "messages[0].content[0]"


def test_context_length_exceeded_names_both_numbers(client: openai.OpenAI) -> None:
    long_prompt = "word " * 9000
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": long_prompt}], max_tokens=10
        )
    assert caught.value.code == "context_length_exceeded"
    assert "8192" in caught.value.message
    assert (
        "in the messages" in caught.value.message and "10 in the completion" in caught.value.message
    )


def test_prompt_plus_max_tokens_over_window_is_refused(client: openai.OpenAI) -> None:
    prompt = "word " * 7000
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": prompt}], max_tokens=2000
        )
    assert caught.value.code == "context_length_exceeded"
    assert "2000 in the completion" in caught.value.message


def test_malformed_json_and_non_object_bodies(gateway: GatewayProcess) -> None:
    error = assert_error_shape(
        post(gateway, b'{"model": "smollm2", "messages": ['), 400, "invalid_json"
    )
    assert "JSON" in str(error["message"])
    assert_error_shape(post(gateway, b"[1, 2]"), 400, "invalid_json")
    assert_error_shape(post(gateway, b""), 400, "invalid_json")


def test_an_integer_beyond_64_bits_is_invalid_json_on_every_surface(
    gateway: GatewayProcess,
) -> None:
    """Found by fuzzing: such an integer in a schema's enum reached an encoder that cannot
    write it, a 500."""
    schema = b'{"type": "string", "enum": [123456789012345678901234567890]}'
    chat = (
        b'{"model": "smollm2", "messages": [{"role": "user", "content": "hi"}], '
        b'"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": '
        + schema
        + b"}}}"
    )
    error = assert_error_shape(post(gateway, chat), 400, "invalid_json")
    assert "64 bits" in str(error["message"])
    responses = (
        b'{"model": "smollm2", "input": "hi", "text": {"format": {"type": "json_schema", '
        b'"name": "x", "schema": ' + schema + b"}}}"
    )
    answer = httpx.post(
        f"{gateway.base_url}/v1/responses",
        content=responses,
        headers={"Authorization": f"Bearer {gateway.admin_key}"},
    )
    assert_error_shape(answer, 400, "invalid_json")
    messages = (
        b'{"model": "smollm2", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}],'
        b' "tools": [{"name": "t", "input_schema": {"type": "object", "properties": {"a": '
        + schema
        + b"}}}]}"
    )
    answer = httpx.post(
        f"{gateway.base_url}/v1/messages",
        content=messages,
        headers={"x-api-key": gateway.admin_key or "", "anthropic-version": "2023-06-01"},
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["type"] == "invalid_request_error"
    # A long run of digits inside a string is just text.
    fine = chat.replace(b"[123456789012345678901234567890]", b'["123456789012345678901234567890"]')
    assert post(gateway, fine).status_code == 200


def test_missing_model_names_model(gateway: GatewayProcess) -> None:
    error = assert_error_shape(post(gateway, b'{"messages": []}'), 400, "invalid_parameter")
    assert error["param"] in ("model", "messages")


def test_body_over_limit_is_413_from_content_length(gateway: GatewayProcess) -> None:
    body = (
        b'{"model": "smollm2", "messages": [{"role": "user", "content": "'
        + b"x" * (5 * 1024 * 1024)
        + b'"}]}'
    )
    assert_error_shape(post(gateway, body), 413, "request_too_large")


def test_chunked_body_over_limit_is_refused_while_streaming(gateway: GatewayProcess) -> None:
    sent = 0

    def chunks():  # type: ignore[no-untyped-def]
        nonlocal sent
        yield b'{"model": "smollm2", "messages": [{"role": "user", "content": "'
        for _ in range(64):
            sent += 1
            yield b"x" * (256 * 1024)

    try:
        response = httpx.post(
            f"{gateway.base_url}/v1/chat/completions",
            content=chunks(),
            headers={"Authorization": f"Bearer {gateway.admin_key}"},
            timeout=30,
        )
    except httpx.TransportError:
        pytest.fail("the gateway should answer 413 rather than drop the connection")
    assert_error_shape(response, 413, "request_too_large")


def test_unknown_route_and_method_use_the_error_shape(gateway: GatewayProcess) -> None:
    headers = {"Authorization": f"Bearer {gateway.admin_key}"}
    assert_error_shape(
        httpx.get(f"{gateway.base_url}/v1/nothing", headers=headers), 404, "not_found"
    )
    assert_error_shape(
        httpx.get(f"{gateway.base_url}/v1/chat/completions", headers=headers),
        405,
        "method_not_allowed",
    )


def test_health_and_readiness(gateway: GatewayProcess) -> None:
    assert httpx.get(f"{gateway.base_url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{gateway.base_url}/readyz")
    assert ready.status_code == 200 and ready.headers["x-request-id"]


def test_error_responses_never_carry_retry_after_except_429_and_503(
    gateway: GatewayProcess,
) -> None:
    for response in (
        post(gateway, b"{"),
        httpx.get(f"{gateway.base_url}/v1/models"),
        httpx.get(f"{gateway.base_url}/nope"),
    ):
        assert "retry-after" not in response.headers


def test_gateway_listens_on_loopback_only(gateway: GatewayProcess) -> None:
    listening = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as handle:
            for line in handle.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                address, port = local.split(":")
                if state == "0A" and int(port, 16) == gateway.port:
                    listening.add(address)
    assert listening == {"0100007F"}, f"listening on {listening}, expected 127.0.0.1 only"
