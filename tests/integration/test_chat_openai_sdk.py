"""Chat completions through the official `openai` SDK against a live gateway and real SmolLM2."""

from __future__ import annotations

import openai
import pytest

from tests.support.smollm2 import direct_prompt_tokens

MODEL = "smollm2"
HELLO = [{"role": "user", "content": "Say hello."}]


def test_completion_has_every_field_sdks_require(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=HELLO, max_tokens=8, temperature=0
    )
    completion = raw.parse()
    assert raw.headers["content-type"] == "application/json"
    assert raw.headers["x-request-id"] == completion.id.removeprefix("chatcmpl-")
    assert completion.object == "chat.completion"
    assert isinstance(completion.created, int)
    assert completion.model == "smollm2-135m-instruct"
    choice = completion.choices[0]
    assert choice.index == 0
    assert choice.message.role == "assistant"
    assert isinstance(choice.message.content, str) and choice.message.content
    assert choice.finish_reason in ("stop", "length")
    assert completion.usage is not None
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )


def test_usage_counts_are_exact(client: openai.OpenAI) -> None:
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Name three colours."},
    ]
    completion = client.chat.completions.create(
        model=MODEL, messages=messages, max_tokens=7, temperature=0, stop=None
    )
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == direct_prompt_tokens(messages)
    if completion.choices[0].finish_reason == "length":
        assert completion.usage.completion_tokens == 7
    else:
        assert completion.usage.completion_tokens < 7


def test_max_tokens_limits_generation_and_reports_length(client: openai.OpenAI) -> None:
    prompt = [{"role": "user", "content": "Write a long story about a dragon and a knight."}]
    completion = client.chat.completions.create(
        model=MODEL, messages=prompt, max_tokens=5, temperature=0
    )
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None and completion.usage.completion_tokens == 5


def test_max_completion_tokens_wins_over_max_tokens(client: openai.OpenAI) -> None:
    prompt = [{"role": "user", "content": "Write a long story about a dragon and a knight."}]
    completion = client.chat.completions.create(
        model=MODEL, messages=prompt, max_tokens=20, max_completion_tokens=3, temperature=0
    )
    assert completion.usage is not None and completion.usage.completion_tokens == 3


def test_same_seed_gives_same_text_and_greedy_is_deterministic(client: openai.OpenAI) -> None:
    prompt = [{"role": "user", "content": "Invent a name for a cat."}]

    def sample(seed: int) -> str | None:
        result = client.chat.completions.create(
            model=MODEL, messages=prompt, max_tokens=16, temperature=1.0, top_p=0.9, seed=seed
        )
        return result.choices[0].message.content

    assert sample(7) == sample(7)
    texts = {sample(seed) for seed in range(1, 6)}
    assert len(texts) > 1, "different seeds should be able to sample different text"


def test_stop_sequence_ends_generation_without_including_it(client: openai.OpenAI) -> None:
    prompt = [{"role": "user", "content": "Count from 1 to 20, separated by commas."}]
    free = client.chat.completions.create(
        model=MODEL, messages=prompt, max_tokens=40, temperature=0
    )
    text = free.choices[0].message.content or ""
    assert "5" in text, f"the model did not count as expected: {text!r}"
    stopped = client.chat.completions.create(
        model=MODEL, messages=prompt, max_tokens=40, temperature=0, stop=["5"]
    )
    assert stopped.choices[0].finish_reason == "stop"
    assert stopped.choices[0].message.content == text[: text.index("5")]


def test_n_returns_independent_choices(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model=MODEL, messages=HELLO, max_tokens=6, n=3, temperature=1.0, seed=11
    )
    assert [choice.index for choice in completion.choices] == [0, 1, 2]
    assert completion.usage is not None
    assert completion.usage.completion_tokens <= 18
    assert completion.usage.prompt_tokens == direct_prompt_tokens(HELLO)


def test_all_roles_and_text_parts_are_accepted(client: openai.OpenAI) -> None:
    messages = [
        {"role": "developer", "content": "Answer in one word."},
        {"role": "user", "content": [{"type": "text", "text": "What is 2+2?"}]},
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "add", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "4"},
        {"role": "user", "content": "And the answer?", "name": "alice"},
    ]
    completion = client.chat.completions.create(
        model=MODEL, messages=messages, max_tokens=4, temperature=0, user="u-123"
    )
    assert completion.choices[0].message.content is not None


def test_penalties_are_accepted_and_change_sampling(client: openai.OpenAI) -> None:
    prompt = [{"role": "user", "content": "Count from 1 to 20, separated by commas."}]
    plain = client.chat.completions.create(
        model=MODEL, messages=prompt, max_tokens=40, temperature=0
    )
    penalised = client.chat.completions.create(
        model=MODEL,
        messages=prompt,
        max_tokens=40,
        temperature=0,
        presence_penalty=2.0,
        frequency_penalty=2.0,
    )
    assert plain.choices[0].message.content != penalised.choices[0].message.content


def test_stream_matches_non_stream_and_ends_with_usage(client: openai.OpenAI) -> None:
    prompt = [{"role": "user", "content": "List four fruits."}]
    whole = client.chat.completions.create(
        model=MODEL, messages=prompt, max_tokens=24, temperature=0
    )
    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=prompt,
            max_tokens=24,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    content_chunks = [c for c in chunks if c.choices]
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert content_chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in content_chunks)
    assert text == whole.choices[0].message.content
    assert content_chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == []
    assert usage_chunk.usage is not None
    assert whole.usage is not None
    assert usage_chunk.usage.completion_tokens == whole.usage.completion_tokens
    assert usage_chunk.usage.prompt_tokens == whole.usage.prompt_tokens


def test_stream_without_include_usage_sends_no_empty_choices_chunk(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model=MODEL, messages=HELLO, max_tokens=6, temperature=0, stream=True
        )
    )
    assert all(chunk.choices for chunk in chunks)
    # Usage rides on the last chunk, for SDKs that never ask for it (Mistral, Azure).
    assert chunks[-1].usage is not None
    assert chunks[-1].choices[0].finish_reason is not None


def test_stream_helper_accumulates_the_message(client: openai.OpenAI) -> None:
    # The helper raises on finish_reason "length", so leave room for the model to stop.
    with client.chat.completions.stream(
        model=MODEL, messages=HELLO, max_tokens=200, temperature=0
    ) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    assert final.choices[0].message.content


def test_stream_with_several_choices_labels_each(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model=MODEL, messages=HELLO, max_tokens=4, temperature=0.7, n=2, stream=True, seed=3
        )
    )
    finished = {c.choices[0].index for c in chunks if c.choices and c.choices[0].finish_reason}
    assert finished == {0, 1}


@pytest.mark.anyio
async def test_async_client_completes_and_streams(async_client: openai.AsyncOpenAI) -> None:
    completion = await async_client.chat.completions.create(
        model=MODEL, messages=HELLO, max_tokens=6, temperature=0
    )
    assert completion.choices[0].message.content
    stream = await async_client.chat.completions.create(
        model=MODEL, messages=HELLO, max_tokens=6, temperature=0, stream=True
    )
    text = "".join([chunk.choices[0].delta.content or "" async for chunk in stream])
    assert text == completion.choices[0].message.content


def test_bare_path_without_v1_also_serves_chat(gateway_url_client: openai.OpenAI) -> None:
    completion = gateway_url_client.chat.completions.create(
        model=MODEL, messages=HELLO, max_tokens=3, temperature=0
    )
    assert completion.choices[0].message.content is not None


@pytest.fixture()
def gateway_url_client(gateway) -> openai.OpenAI:  # type: ignore[no-untyped-def]
    return openai.OpenAI(base_url=gateway.base_url, api_key=gateway.admin_key, max_retries=0)
