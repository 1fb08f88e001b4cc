"""What a hostile or careless client sends gets a clear 4xx, before any generation is paid for,
and leaves the connection and the gateway as they were."""

from __future__ import annotations

import httpx
import pytest

from modelyard.testing.fake_upstream import FakeUpstream
from tests.support.gateway import GatewayProcess

SELF_REFERENCES = [
    {"anyOf": [{"$ref": "#"}, {"type": "boolean"}]},
    {"$ref": "#"},
    {"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"},
]


def post(gateway: GatewayProcess, client: httpx.Client, path: str, body: bytes) -> httpx.Response:
    return client.post(
        gateway.base_url + path,
        content=body,
        headers={
            "authorization": f"Bearer {gateway.admin_key}",
            "content-type": "application/json",
        },
    )


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity", b"1e400"])
@pytest.mark.parametrize(
    ("path", "template"),
    [
        ("/v1/chat/completions",
         b'{"model": "acme-large", "messages": [{"role": "user", "content": "hi"}],'
         b' "temperature": %s, "bogus": 1}'),
        ("/v1/embeddings", b'{"model": "acme-embed", "input": "hi", "dimensions": %s}'),
        ("/models/chat/completions?api-version=2024-10-21",
         b'{"model": "acme-large", "messages": [{"role": "user", "content": "hi"}],'
         b' "top_p": %s}'),
    ],
)  # fmt: skip
def test_numbers_json_does_not_have_are_invalid_json_and_the_connection_serves_on(
    remote_gateway: GatewayProcess,
    upstream: FakeUpstream,
    path: str,
    template: bytes,
    number: bytes,
) -> None:
    with httpx.Client(timeout=30) as client:
        refused = post(remote_gateway, client, path, template % number)
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["code"] == "invalid_json"
        # Same keep-alive connection: it was not reset.
        good = b'{"model": "acme-small", "messages": [{"role": "user", "content": "hi"}]}'
        again = post(remote_gateway, client, "/v1/chat/completions", good)
        assert again.status_code == 200
    assert [r.path for r in upstream.requests] == ["/v1/chat/completions"]  # the good one only


@pytest.mark.parametrize("schema", SELF_REFERENCES)
def test_schemas_that_refer_to_themselves_are_refused_before_generation(
    remote_gateway: GatewayProcess, upstream: FakeUpstream, schema: dict[str, object]
) -> None:
    bodies = [
        {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": schema},
            }
        },
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": schema}}]},
    ]
    for extra in bodies:
        answer = remote_gateway.admin(
            "POST",
            "/v1/chat/completions",
            {"model": "acme-large", "messages": [{"role": "user", "content": "hi"}], **extra},
        )
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["code"] == "unsupported_schema"
        assert "refers back to itself" in answer.json()["error"]["message"]
    assert upstream.requests == []


def test_dropped_parameter_names_reach_the_header_encoded_whatever_they_are(
    remote_gateway: GatewayProcess, upstream: FakeUpstream
) -> None:
    body = (
        b'{"model": "acme-large", "messages": [{"role": "user", "content": "hi"}], '
        b'"cl\xc3\xa9_\xe2\x82\xac": 1, "a\\r\\nx-injected: 1": 2, "plain": 3}'
    )
    answer = httpx.post(
        f"{remote_gateway.base_url}/models/chat/completions",
        params={"api-version": "2024-10-21"},
        content=body,
        headers={
            "api-key": str(remote_gateway.admin_key),
            "content-type": "application/json",
            "extra-parameters": "drop",
        },
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    assert "x-injected" not in answer.headers
    dropped = answer.headers["x-modelyard-dropped-parameters"]
    assert dropped.isascii()
    assert dropped.split(",") == ["a%0D%0Ax-injected%3A%201", "cl%C3%A9_%E2%82%AC", "plain"]


@pytest.mark.parametrize(
    "query",
    ["limit=%C2%B2", "limit=0", "after_seq=" + "9" * 30, "after_seq=-1", "limit=1e3"],
)
def test_audit_query_numbers_out_of_range_are_a_400(
    remote_gateway: GatewayProcess, query: str
) -> None:
    answer = remote_gateway.admin("GET", f"/admin/audit?{query}")
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["code"] == "invalid_parameter"


@pytest.mark.parametrize("subject", ["bad%01subject", "a" * 10_000, "two%20words"])
def test_member_subjects_in_paths_are_validated(
    remote_gateway: GatewayProcess, subject: str
) -> None:
    answer = remote_gateway.admin(
        "PUT", f"/admin/projects/default/members/{subject}", {"role": "viewer"}
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["param"] == "subject"


def test_twenty_thousand_empty_messages_are_refused_without_tokenizing_them(
    gateway: GatewayProcess,
) -> None:
    messages = [{"role": "user", "content": ""}] * 20_000
    answer = gateway.admin(
        "POST", "/v1/chat/completions", {"model": "smollm2", "messages": messages, "max_tokens": 1}
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["code"] == "context_length_exceeded"
    assert "at least" in answer.json()["error"]["message"]
