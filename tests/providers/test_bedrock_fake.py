"""The fake Bedrock speaks what the official AWS SDK speaks: botocore's own `bedrock-runtime`
client, signing with its own SigV4, is accepted, parses the fake's answers, event streams and
errors, and is refused with AWS's errors when it signs with a wrong secret or region. So the
gateway's tests against the fake hold against the real service's wire format."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import botocore.session
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, EventStreamError

from modelyard.providers.bedrock.provider import model_url
from modelyard.testing.fake_bedrock import (
    TEST_KEY,
    FakeBedrock,
    JsonReply,
    ToolUse,
    converse_answer,
    error_reply,
    exception_frame,
    stream_frames,
    stream_reply,
    usage_body,
)

MODEL_ID = "anthropic.claude-3-5-sonnet-20240620-v1:0"
HELLO = [{"role": "user", "content": [{"text": "Hello"}]}]


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeBedrock]:
    with FakeBedrock(region="eu-central-1").running() as server:
        yield server


def sdk_client(
    fake: FakeBedrock, secret: str = TEST_KEY.secret_access_key, region: str = "eu-central-1"
) -> Any:
    return botocore.session.get_session().create_client(
        "bedrock-runtime",
        region_name=region,
        endpoint_url=fake.root_url,
        aws_access_key_id=TEST_KEY.access_key_id,
        aws_secret_access_key=secret,
        aws_session_token=TEST_KEY.session_token,
        config=Config(retries={"max_attempts": 1}),
    )


def test_the_sdk_is_accepted_on_the_path_the_gateway_uses_and_parses_an_answer(
    fake: FakeBedrock,
) -> None:
    fake.enqueue(JsonReply(converse_answer("Bonjour.", usage=usage_body(7, 2, cache_read=5))))
    answer = sdk_client(fake).converse(modelId=MODEL_ID, messages=HELLO)
    assert answer["output"]["message"]["content"] == [{"text": "Bonjour."}]
    assert answer["stopReason"] == "end_turn"
    assert answer["usage"]["cacheReadInputTokens"] == 5
    assert fake.signature_failures == []
    assert fake.raw_paths[-1] == model_url("", MODEL_ID, "converse")


def test_the_sdk_reads_the_fakes_event_stream_and_its_exceptions(fake: FakeBedrock) -> None:
    fake.enqueue(stream_reply(stream_frames(["Hel", "lo"], [ToolUse("f", {"a": 1})])))
    events = list(sdk_client(fake).converse_stream(modelId=MODEL_ID, messages=HELLO)["stream"])
    kinds = [next(iter(event)) for event in events]
    assert kinds == [
        "messageStart",
        "contentBlockDelta",
        "contentBlockDelta",
        "contentBlockStop",
        "contentBlockStart",
        "contentBlockDelta",
        "contentBlockDelta",
        "contentBlockStop",
        "messageStop",
        "metadata",
    ]
    assert events[4]["contentBlockStart"]["start"]["toolUse"]["name"] == "f"
    assert events[-2]["messageStop"]["stopReason"] == "tool_use"
    assert fake.raw_paths[-1] == model_url("", MODEL_ID, "converse-stream")

    frames = stream_frames(["Hel"])[:2]
    fake.enqueue(stream_reply([*frames, exception_frame("throttlingException", "slow down")]))
    stream = sdk_client(fake).converse_stream(modelId=MODEL_ID, messages=HELLO)["stream"]
    with pytest.raises(EventStreamError) as caught:
        list(stream)
    assert caught.value.response["Error"]["Code"] == "throttlingException"


def test_the_sdk_reads_the_fakes_errors_and_its_count(fake: FakeBedrock) -> None:
    fake.enqueue(error_reply(400, "ValidationException", "Input is too long for requested model."))
    with pytest.raises(ClientError) as caught:
        sdk_client(fake).converse(modelId=MODEL_ID, messages=HELLO)
    error = caught.value.response["Error"]
    assert (error["Code"], error["Message"]) == (
        "ValidationException",
        "Input is too long for requested model.",
    )
    counted = sdk_client(fake).count_tokens(
        modelId=MODEL_ID, input={"converse": {"messages": HELLO}}
    )
    assert counted["inputTokens"] > 0


@pytest.mark.parametrize(
    ("secret", "region", "code"),
    [
        ("wrong/secret", "eu-central-1", "InvalidSignatureException"),
        (TEST_KEY.secret_access_key, "us-east-1", "InvalidSignatureException"),
    ],
    ids=["wrong-secret", "wrong-region"],
)
def test_a_bad_signature_from_the_sdk_is_refused_as_aws_refuses_it(
    fake: FakeBedrock, secret: str, region: str, code: str
) -> None:
    client = sdk_client(fake, secret, region)
    with pytest.raises(ClientError) as caught:
        client.converse(modelId=MODEL_ID, messages=HELLO)
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert caught.value.response["Error"]["Code"] == code
