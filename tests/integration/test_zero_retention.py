"""Zero retention, checked the hard way: unique canaries (prompts, completions' inputs, keys,
tokens) are planted through every surface, then searched for in every log line, error body,
database file (WAL included) and temporary file. A project that opted in to content logging is
the positive control: its canary must be found, which proves the search can find one."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import openai
import pytest
import sqlalchemy as sa

from modelyard.testing.fake_upstream import FakeUpstream, JsonReply, StreamReply, stream_events
from tests.support.gateway import GatewayProcess

MODEL = "smollm2"


def canary(kind: str) -> str:
    return f"CANARY{kind}{secrets.token_hex(8)}"


class Planted:
    def __init__(self) -> None:
        self.secret: list[str] = []
        self.kept: list[str] = []
        # Error bodies only: a success may rightly carry a new key, or a model's echo of a prompt.
        self.bodies: list[bytes] = []

    def new(self, kind: str, kept: bool = False) -> str:
        value = canary(kind)
        (self.kept if kept else self.secret).append(value)
        return value


@pytest.fixture(scope="module")
def retention_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    root = tmp_path_factory.mktemp("retention")
    (root / "tmp").mkdir()
    gateway = GatewayProcess(
        root / "data",
        admin_key=canary("ADMINKEY"),
        env={"MODELYARD_LOG_LEVEL": "debug", "TMPDIR": str(root / "tmp")},
    ).start()
    yield gateway
    gateway.stop()


def files_under(*roots: Path) -> list[Path]:
    return [p for root in roots if root.exists() for p in root.rglob("*") if p.is_file()]


def hits(needles: list[str], gateway: GatewayProcess, bodies: list[bytes]) -> list[str]:
    found = []
    haystacks = [(str(p), p.read_bytes()) for p in files_under(gateway.data_dir, _tmp(gateway))]
    haystacks += [(f"response body {i}", body) for i, body in enumerate(bodies)]
    for needle in needles:
        for name, data in haystacks:
            if needle.encode() in data:
                found.append(f"{needle} in {name}")
    return found


def _tmp(gateway: GatewayProcess) -> Path:
    return gateway.data_dir.parent / "tmp"


def test_no_prompt_completion_or_key_is_kept_anywhere(retention_gateway: GatewayProcess) -> None:
    gateway = retention_gateway
    planted = Planted()
    assert gateway.admin_key is not None
    planted.secret.append(gateway.admin_key)
    admin = {"Authorization": f"Bearer {gateway.admin_key}"}
    url = gateway.base_url

    def post(
        path: str, body: object = None, headers: dict[str, str] | None = None, **kw: object
    ) -> httpx.Response:
        response = httpx.post(url + path, json=body, headers=headers or admin, timeout=120, **kw)  # type: ignore[arg-type]
        if response.status_code >= 400:
            planted.bodies.append(response.content)
        return response

    # Keys: one minted through the API (with an Idempotency-Key, so a reply is stored sealed),
    # one revoked, one used with a forged secret.
    minted = post(
        "/admin/projects/default/keys",
        {"name": "ops"},
        {**admin, "Idempotency-Key": canary("IDEM")},
    )
    assert minted.status_code == 201, minted.text
    key = minted.json()["key"]
    planted.secret.append(key)
    replay = post(
        "/admin/projects/default/keys",
        {"name": "ops"},
        {**admin, "Idempotency-Key": planted.new("IDEM2")},
    )
    planted.secret.append(replay.json()["key"])
    revoked = post("/admin/projects/default/keys", {"name": "old"}).json()
    planted.secret.append(revoked["key"])
    post(f"/admin/projects/default/keys/{revoked['id']}/revoke")
    user = {"Authorization": f"Bearer {key}"}

    client = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
    answer = client.chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "system", "content": planted.new("SYSTEM")},
            {"role": "user", "content": planted.new("PROMPT")},
        ],
        max_tokens=8,
    )
    assert answer.choices[0].message.content is not None
    for _ in client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": planted.new("STREAM")}],
        max_tokens=8,
        stream=True,
    ):
        pass
    schema = {"type": "object", "properties": {planted.new("FIELD"): {"type": "string"}}}
    client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": planted.new("JSONPROMPT")}],
        max_tokens=16,
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
    )
    tool = {
        "type": "function",
        "function": {
            "name": "lookup",
            "parameters": {
                "type": "object",
                "properties": {"q": {"type": "string", "description": planted.new("TOOLDESC")}},
            },
        },
    }
    client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": planted.new("TOOLPROMPT")}],
        tools=[tool],
        tool_choice="required",
        max_tokens=32,  # type: ignore[list-item]
    )
    post("/v1/embeddings", {"model": "minilm", "input": [planted.new("EMBED")]}, user)

    # Bad requests carrying content: wrong types, too long, unsupported values, broken JSON.
    post(
        "/v1/chat/completions",
        {
            "model": MODEL,
            "messages": [{"role": planted.new("ROLE"), "content": planted.new("BADROLE")}],
        },
        user,
    )
    post(
        "/v1/chat/completions",
        {"model": MODEL, "messages": [{"role": "user", "content": planted.new("LONG") * 3000}]},
        user,
    )
    post(
        "/v1/chat/completions",
        {
            "model": "no-such-model",
            "messages": [{"role": "user", "content": planted.new("NOMODEL")}],
        },
        user,
    )
    post(
        "/v1/chat/completions",
        {
            "model": MODEL,
            "temperature": planted.new("TEMP"),
            "messages": [{"role": "user", "content": "x"}],
        },
        user,
    )
    broken = (
        b'{"model": "smollm2", "messages": [{"role": "user", "content": "'
        + planted.new("BROKEN").encode()
    )
    planted.bodies.append(
        httpx.post(f"{url}/v1/chat/completions", content=broken, headers=user).content
    )
    post(
        "/v1/chat/completions",
        {
            "model": MODEL,
            "messages": [{"role": "user", "content": planted.new("SCHEMA")}],
            # Bounded: under a loaded CI machine an unbounded answer outlived the timeout.
            "max_tokens": 16,
            "response_format": {
                "type": "json_schema",
                "json_schema": {
                    "name": "x",
                    "schema": {"type": "object", "patternProperties": {planted.new("PATTERN"): {}}},
                },
            },
        },
        user,
    )

    # Error paths found by the adversarial review: non-JSON numbers beside an invalid field,
    # schemas that refer to themselves or that the grammar cannot enforce, tool names and
    # arguments, and a client that leaves mid-stream.
    nan_body = (
        b'{"model": "smollm2", "temperature": NaN, "bogus": "'
        + planted.new("NANFIELD").encode()
        + b'", "messages": [{"role": "user", "content": "'
        + planted.new("NANPROMPT").encode()
        + b'"}]}'
    )
    planted.bodies.append(
        httpx.post(
            f"{url}/v1/chat/completions",
            content=nan_body,
            headers={**user, "content-type": "application/json"},
        ).content
    )
    looping = {
        "anyOf": [{"$ref": "#"}, {"type": "object", "properties": {planted.new("LOOP"): {}}}]
    }
    # Required, so that the grammar reaches the pattern when it is checked, and the answer is
    # the 400 whose message could quote it (left optional, the model may or may not enter it,
    # and a sampled run that does fills max_tokens with its letters).
    costly_name = planted.new("COSTLY")
    costly = {
        "type": "object",
        "properties": {costly_name: {"type": "string", "pattern": "^(a{1000}){1000}$"}},
        "required": [costly_name],
    }
    for bad_schema in (looping, costly):
        refused = post(
            "/v1/chat/completions",
            {
                "model": MODEL,
                "messages": [{"role": "user", "content": planted.new("BADSCHEMA")}],
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "x", "schema": bad_schema},
                },
                "max_tokens": 32,
            },
            user,
        )
        assert refused.status_code == 400, refused.text
    post(
        "/v1/chat/completions",
        {
            "model": MODEL,
            "messages": [
                {"role": "user", "content": "Call it."},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {
                                "name": planted.new("TOOLNAME"),
                                "arguments": '{"q": "' + planted.new("TOOLARGS") + '"}',
                            },
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": planted.new("TOOLRESULT")},
            ],
            "max_tokens": 4,
            "tools": [{"type": "function", "function": {"name": planted.new("DECLARED")}}],
        },
        user,
    )
    with httpx.stream(
        "POST",
        f"{url}/v1/chat/completions",
        json={
            "model": MODEL,
            "messages": [{"role": "user", "content": planted.new("LEFTSTREAM")}],
            "max_tokens": 200,
            "stream": True,
        },
        headers=user,
    ) as leaving:
        next(leaving.iter_lines())

    # The Responses and Anthropic Messages surfaces: answers, streams (a default project keeps
    # no content, so nothing may be stored), a continuation it cannot have, and bad requests.
    client.responses.create(
        model=MODEL, instructions=planted.new("RINSTR"), input=planted.new("RPROMPT"),
        max_output_tokens=8,
    )  # fmt: skip
    for _ in client.responses.create(
        model=MODEL, input=planted.new("RSTREAM"), max_output_tokens=8, stream=True
    ):
        pass
    post(
        "/v1/responses",
        {"model": MODEL, "input": planted.new("RPREV"), "previous_response_id": "resp_x"},
        user,
    )
    post(
        "/v1/responses",
        {"model": MODEL, "input": "x", "reasoning": {"effort": planted.new("RFIELD")}},
        user,
    )
    anthropic_user = {"x-api-key": key, "anthropic-version": "2023-06-01"}
    post(
        "/v1/messages",
        {
            "model": MODEL, "max_tokens": 8, "system": planted.new("ASYSTEM"),
            "messages": [{"role": "user", "content": planted.new("APROMPT")}],
        },
        anthropic_user,
    )  # fmt: skip
    with httpx.stream(
        "POST",
        f"{url}/v1/messages",
        json={
            "model": MODEL, "max_tokens": 8, "stream": True,
            "messages": [{"role": "user", "content": planted.new("ASTREAM")}],
        },
        headers=anthropic_user,
    ) as streamed:  # fmt: skip
        assert streamed.status_code == 200
        streamed.read()
    post(
        "/v1/messages",
        {"model": MODEL, "messages": [{"role": "user", "content": planted.new("ANOMAX")}]},
        anthropic_user,
    )
    post(
        "/v1/messages/count_tokens",
        {"model": MODEL, "messages": [{"role": "user", "content": planted.new("ACOUNT")}]},
        anthropic_user,
    )
    forged = key[:-8] + secrets.token_urlsafe(6)[:8]
    planted.secret.append(forged)
    post(
        "/v1/messages",
        {"model": MODEL, "max_tokens": 4, "messages": [{"role": "user", "content": "x"}]},
        {"x-api-key": forged},
    )

    # Credentials that fail: unknown admin-shaped key, forged project key, revoked key, a JWT.
    for credential in (
        "myd-admin-" + planted.new("ADMINGUESS"),
        key[:-8] + secrets.token_urlsafe(6)[:8],
        revoked["key"],
        "eyJhbGciOiJSUzI1NiJ9." + planted.new("JWTBODY") + ".sig",
    ):
        planted.secret.append(credential)
        post(
            "/v1/chat/completions",
            {"model": MODEL, "messages": []},
            {"Authorization": f"Bearer {credential}"},
        )

    # The positive control: a project that opted in keeps its content.
    post("/admin/projects", {"id": "kept", "content_retention_days": 1})
    kept_key = post("/admin/projects/kept/keys", {"name": "k"}).json()["key"]
    planted.secret.append(kept_key)
    kept_prompt = planted.new("KEPTPROMPT", kept=True)
    kept = openai.OpenAI(base_url=f"{url}/v1", api_key=kept_key, max_retries=0)
    kept.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": kept_prompt}], max_tokens=4
    )
    # ... and its stored responses, which the next turn may continue from.
    kept.responses.create(
        model=MODEL, input=planted.new("KEPTRESPONSE", kept=True), max_output_tokens=4
    )

    wait_for(lambda: not missing(planted.kept, gateway), "the opted-in content was never written")
    log_before_stop = gateway.log()
    # While running: the WAL still holds recent pages.
    assert hits(planted.secret, gateway, planted.bodies) == []
    gateway.stop()
    assert hits(planted.secret, gateway, planted.bodies) == []
    assert all(secret not in log_before_stop for secret in planted.secret)
    assert missing(planted.kept, gateway) == []


def missing(needles: list[str], gateway: GatewayProcess) -> list[str]:
    data = b"".join(
        p.read_bytes() for p in files_under(gateway.data_dir) if "modelyard.db" in p.name
    )
    return [n for n in needles if n.encode() not in data]


def wait_for(condition: object, message: str, timeout: float = 15.0) -> None:
    import time

    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, message
        time.sleep(0.1)


def test_expired_content_is_deleted_and_gone_from_the_database_file(tmp_path: Path) -> None:
    gateway = GatewayProcess(tmp_path / "data").start()
    headers = {"Authorization": f"Bearer {gateway.admin_key}"}
    prompt = canary("EXPIRES")
    try:
        created = httpx.post(
            f"{gateway.base_url}/admin/projects",
            json={"id": "short", "content_retention_days": 1},
            headers=headers,
        )
        assert created.status_code == 201
        key = httpx.post(
            f"{gateway.base_url}/admin/projects/short/keys", json={"name": "k"}, headers=headers
        ).json()["key"]
        client = openai.OpenAI(base_url=f"{gateway.base_url}/v1", api_key=key, max_retries=0)
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": prompt}], max_tokens=4
        )
        wait_for(lambda: not missing([prompt], gateway), "content was never written")
    finally:
        gateway.stop()
    engine = sa.create_engine(f"sqlite:///{gateway.data_dir / 'modelyard.db'}")
    with engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE content_log SET expires_at = :t"),
            {"t": datetime.now(UTC) - timedelta(seconds=1)},
        )
    engine.dispose()
    gateway.start()  # purges expired content at start
    try:
        wait_for(
            lambda: missing([prompt], gateway) == [prompt],
            "expired content is still in the database files",
        )
        audit = httpx.get(f"{gateway.base_url}/admin/audit?project=short", headers=headers).json()[
            "data"
        ]
        assert any("content logging ON, kept 1 days" in event["reason"] for event in audit)
    finally:
        gateway.stop()
    assert os.path.exists(gateway.data_dir / "modelyard.db")


def test_upstream_failures_leave_no_prompt_in_logs_or_files(
    remote_gateway: GatewayProcess, upstream: FakeUpstream
) -> None:
    planted = Planted()
    echoed = planted.new("UPSTREAMECHO")
    upstream.enqueue(
        JsonReply({"error": {"message": f"bad input {echoed}"}}, status=500),
        JsonReply({"error": {"message": f"rejected {echoed}"}}, status=400),
        StreamReply([b'data: {"choices": [{"delta": {"content": "' + echoed.encode()]),
        StreamReply(stream_events(["a", echoed, "c"]), reset_after=2),
    )
    for stream in (False, False, True, True):
        body = {
            "model": "acme-large",
            "messages": [{"role": "user", "content": planted.new("REMOTEPROMPT")}],
            "stream": stream,
        }
        with (
            httpx.stream(
                "POST",
                f"{remote_gateway.base_url}/v1/chat/completions",
                json=body,
                headers={"Authorization": f"Bearer {remote_gateway.admin_key}"},
                timeout=30,
            ) as response,
            contextlib.suppress(httpx.HTTPError),
        ):
            response.read()
    log = remote_gateway.log()
    stored = b"".join(p.read_bytes() for p in files_under(remote_gateway.data_dir))
    for secret in planted.secret:
        assert secret not in log
        assert secret.encode() not in stored
