"""A fake Amazon Bedrock Runtime on 127.0.0.1: Converse, ConverseStream and CountTokens, with
scripted answers and faults, that checks every request's SigV4 signature as AWS would.

It knows a set of AWS keys (`AwsKey`) and its region. A request signed with an unknown key or
session token is answered 403 `UnrecognizedClientException`, one whose signature does not match
the request (wrong secret, region, service, path encoding, headers or body) 403
`InvalidSignatureException`, as AWS answers; the signature is recomputed with botocore over
the raw request path and body as received. Streams are AWS event-stream frames, encoded here
(prelude, string headers, JSON payload, CRC32s). With an empty queue it answers text, or a call
to the tool the request forces (or to its first tool, unless the conversation ends with tool
results), with input built from the tool's schema. Faults it can play: any status with AWS's
error shape (`error_reply`), in-stream exceptions (`exception_frame`), corrupt frames
(`corrupted`), cut streams (`StreamReply(reset_after=...)`), streams without their end.
"""

from __future__ import annotations

import datetime
import hmac
import struct
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from botocore.auth import SigV4Auth  # type: ignore[import-untyped]
from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]
from botocore.credentials import Credentials  # type: ignore[import-untyped]
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelyard.testing.scripted_server import (
    JsonReply,
    RecordedRequest,
    ScriptedServer,
    StreamReply,
    StreamResponse,
    json_response,
)

__all__ = [
    "EVENT_STREAM",
    "TEST_KEY",
    "AwsKey",
    "FakeBedrock",
    "JsonReply",
    "RecordedRequest",
    "StreamReply",
    "ToolUse",
    "converse_answer",
    "corrupted",
    "encode_frame",
    "error_reply",
    "event_frame",
    "exception_frame",
    "stream_frames",
    "stream_reply",
    "usage_body",
]

EVENT_STREAM = "application/vnd.amazon.eventstream"
SERVICE = "bedrock"
MAX_CLOCK_SKEW = datetime.timedelta(minutes=5)
# AWS pads each stream event's JSON with a `p` field so lengths do not give the text away.
PADDING = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_STRING_HEADER = 7
DEFAULT_TEXT = "Hello from Bedrock."
DEFAULT_PIECES = ("Hello", " from", " Bedrock.")


@dataclass(frozen=True)
class AwsKey:
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None

    def reference(self) -> str:
        """The value a catalog credential reference holds for this key."""
        parts = [self.access_key_id, self.secret_access_key]
        return ":".join([*parts, self.session_token] if self.session_token else parts)


TEST_KEY = AwsKey(
    "AKIAFAKEBEDROCK00001", "fake/secret+key/for-bedrock-tests-0001", "FakeSessionToken//0001"
)


@dataclass(frozen=True)
class ToolUse:
    name: str
    input: Mapping[str, Any]
    id: str = "tooluse_fake0001"


# -- answers ------------------------------------------------------------------------------------


def usage_body(
    input_tokens: int = 12, output_tokens: int = 5, cache_read: int = 0, cache_write: int = 0
) -> dict[str, int]:
    usage = {
        "inputTokens": input_tokens,
        "outputTokens": output_tokens,
        "totalTokens": input_tokens + output_tokens + cache_read + cache_write,
    }
    if cache_read or cache_write:
        usage["cacheReadInputTokens"] = cache_read
        usage["cacheWriteInputTokens"] = cache_write
    return usage


def converse_answer(
    text: str | None = DEFAULT_TEXT,
    tool_uses: Sequence[ToolUse] = (),
    stop_reason: str | None = None,
    usage: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """A Converse response body."""
    content: list[dict[str, Any]] = [{"text": text}] if text else []
    content += [
        {"toolUse": {"toolUseId": use.id, "name": use.name, "input": dict(use.input)}}
        for use in tool_uses
    ]
    return {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop_reason or ("tool_use" if tool_uses else "end_turn"),
        "usage": dict(usage) if usage is not None else usage_body(),
        "metrics": {"latencyMs": 321},
    }


def encode_frame(headers: Mapping[str, str], payload: bytes) -> bytes:
    """One AWS event-stream message: prelude (total and headers lengths, CRC32), headers (all
    strings here), payload, CRC32 of everything before it."""
    encoded = b"".join(
        struct.pack("!B", len(name.encode())) + name.encode()
        + struct.pack("!BH", _STRING_HEADER, len(value.encode())) + value.encode()
        for name, value in headers.items()
    )  # fmt: skip
    lengths = struct.pack("!II", 12 + len(encoded) + len(payload) + 4, len(encoded))
    prelude = lengths + struct.pack("!I", zlib.crc32(lengths))
    message = prelude + encoded + payload
    return message + struct.pack("!I", zlib.crc32(message))


def event_frame(event_type: str, body: Mapping[str, Any]) -> bytes:
    padded = {**body, "p": PADDING[: 1 + len(orjson.dumps(body)) % len(PADDING)]}
    headers = {
        ":event-type": event_type,
        ":content-type": "application/json",
        ":message-type": "event",
    }
    return encode_frame(headers, orjson.dumps(padded))


def exception_frame(exception_type: str, message: str) -> bytes:
    """An in-stream exception (`throttlingException`, `modelStreamErrorException`, ...)."""
    headers = {
        ":exception-type": exception_type,
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    return encode_frame(headers, orjson.dumps({"message": message}))


def corrupted(frame: bytes) -> bytes:
    """The frame with one payload byte changed: its message CRC no longer matches."""
    position = len(frame) - 6
    return frame[:position] + bytes([frame[position] ^ 0x20]) + frame[position + 1 :]


def stream_frames(
    pieces: Sequence[str] = DEFAULT_PIECES,
    tool_uses: Sequence[ToolUse] = (),
    stop_reason: str | None = None,
    usage: Mapping[str, int] | None = None,
    stop: bool = True,
    metadata: bool = True,
) -> list[bytes]:
    """A ConverseStream body: text deltas, then each tool use with its input in two fragments,
    `messageStop` and `metadata` (either left out with `stop=False` / `metadata=False`)."""
    frames = [event_frame("messageStart", {"role": "assistant"})]
    index = 0
    if pieces:
        for piece in pieces:
            frames.append(
                event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": piece}})
            )
        frames.append(event_frame("contentBlockStop", {"contentBlockIndex": 0}))
        index = 1
    for use in tool_uses:
        start = {"toolUse": {"toolUseId": use.id, "name": use.name}}
        frames.append(
            event_frame("contentBlockStart", {"contentBlockIndex": index, "start": start})
        )
        arguments = orjson.dumps(dict(use.input)).decode()
        half = len(arguments) // 2
        for fragment in (arguments[:half], arguments[half:]):
            delta = {"toolUse": {"input": fragment}}
            frames.append(
                event_frame("contentBlockDelta", {"contentBlockIndex": index, "delta": delta})
            )
        frames.append(event_frame("contentBlockStop", {"contentBlockIndex": index}))
        index += 1
    if stop:
        reason = stop_reason or ("tool_use" if tool_uses else "end_turn")
        frames.append(event_frame("messageStop", {"stopReason": reason}))
    if metadata:
        body = {
            "usage": dict(usage) if usage is not None else usage_body(12, 3),
            "metrics": {"latencyMs": 123},
        }
        frames.append(event_frame("metadata", body))
    return frames


def stream_reply(
    frames: Sequence[bytes], delay_s: float = 0.0, reset_after: int | None = None
) -> StreamReply:
    return StreamReply(
        frames, delay_s=delay_s, reset_after=reset_after, separator=b"", content_type=EVENT_STREAM
    )


def error_reply(
    status: int, error_type: str, message: str, headers: Mapping[str, str] | None = None
) -> JsonReply:
    """An error as Bedrock Runtime answers it: the type in `x-amzn-ErrorType`, the text in
    the body's `message`."""
    return JsonReply(
        {"message": message},
        status=status,
        headers={
            "x-amzn-ErrorType": f"{error_type}:http://internal.amazon.com/coral/com.amazon.bedrock/",
            "x-amzn-RequestId": "00000000-0000-4000-8000-000000000000",
            **(headers or {}),
        },
    )


# -- default answers ----------------------------------------------------------------------------


def canned_input(schema: Any) -> Any:
    """A small value that satisfies simple schemas: required properties, first enum values."""
    if not isinstance(schema, dict):
        return {}
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties") or {}
        return {name: canned_input(properties.get(name)) for name in schema.get("required", [])}
    return {"string": "Paris", "integer": 1, "number": 1.5, "boolean": True, "array": []}.get(
        str(kind)
    )


def default_tool_use(body: Any) -> ToolUse | None:
    """The call a request forces, or a call to its first tool unless tool results came last."""
    config = body.get("toolConfig") if isinstance(body, dict) else None
    if not isinstance(config, dict) or not config.get("tools"):
        return None
    specs = [tool["toolSpec"] for tool in config["tools"] if "toolSpec" in tool]
    choice = config.get("toolChoice") or {"auto": {}}
    if "tool" in choice:
        spec = next(s for s in specs if s["name"] == choice["tool"]["name"])
    else:
        last = body["messages"][-1]["content"] if body.get("messages") else []
        if "auto" in choice and any("toolResult" in block for block in last):
            return None
        spec = specs[0]
    return ToolUse(spec["name"], canned_input(spec["inputSchema"]["json"]))


# -- the server ---------------------------------------------------------------------------------


class FakeBedrock(ScriptedServer):
    def __init__(self, keys: Sequence[AwsKey] = (TEST_KEY,), region: str = "eu-central-1") -> None:
        super().__init__()
        self.keys = {key.access_key_id: key for key in keys}
        self.region = region
        # The request paths exactly as sent (percent-encoding kept), in arrival order.
        self.raw_paths: list[str] = []
        self.signature_failures: list[str] = []

    @property
    def base_url(self) -> str:
        return self.root_url

    def reset(self) -> None:
        super().reset()
        self.raw_paths.clear()
        self.signature_failures.clear()

    def routes(self) -> list[Route]:
        return [
            Route("/model/{model_id:path}/converse", self._converse, methods=["POST"]),
            Route("/model/{model_id:path}/converse-stream", self._converse, methods=["POST"]),
            Route("/model/{model_id:path}/count-tokens", self._count_tokens, methods=["POST"]),
        ]

    async def _admit(self, request: Request) -> tuple[Any, JsonReply | StreamReply | None]:
        """Record the request; (body, scripted reply), or an AWS refusal as the reply."""
        raw = await request.body()
        raw_path = request.scope.get("raw_path", request.url.path.encode()).decode("latin-1")
        self.raw_paths.append(raw_path)
        body, reply = await self.record(request)
        refusal = verify_signature(
            f"{self.root_url}{raw_path}", dict(request.headers), raw, self.keys, self.region
        )
        if refusal is not None:
            self.signature_failures.append(refusal.status_text())
            if reply is not None:
                self.replies.appendleft(reply)  # kept for the next, well-signed request
            return body, refusal.reply()
        return body, reply

    async def _converse(self, request: Request) -> Response | StreamResponse:
        body, reply = await self._admit(request)
        streamed = request.url.path.endswith("/converse-stream")
        if reply is None:
            use = default_tool_use(body)
            tool_uses = [use] if use is not None else []
            if streamed:
                reply = stream_reply(stream_frames(() if use else DEFAULT_PIECES, tool_uses))
            else:
                reply = JsonReply(converse_answer(None if use else DEFAULT_TEXT, tool_uses))
        if isinstance(reply, StreamReply):
            return StreamResponse(reply)
        return await json_response(reply)

    async def _count_tokens(self, request: Request) -> Response:
        body, reply = await self._admit(request)
        if reply is None:
            converse = body["input"]["converse"]
            reply = JsonReply({"inputTokens": len(orjson.dumps(converse)) // 4})
        assert isinstance(reply, JsonReply)
        return await json_response(reply)


# -- SigV4, as AWS checks it --------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    error_type: str
    message: str

    def status_text(self) -> str:
        return f"{self.error_type}: {self.message}"

    def reply(self) -> JsonReply:
        return error_reply(403, self.error_type, self.message)


def verify_signature(
    url: str, headers: Mapping[str, str], body: bytes, keys: Mapping[str, AwsKey], region: str
) -> Refusal | None:
    """None when `Authorization` is a valid SigV4 signature of this request by a known key for
    `region` and Bedrock; otherwise the refusal AWS would answer."""
    authorization = headers.get("authorization", "")
    if not authorization:
        return Refusal("MissingAuthenticationTokenException", "Missing Authentication Token")
    algorithm, _, rest = authorization.partition(" ")
    fields = dict(part.strip().partition("=")[::2] for part in rest.split(",") if "=" in part)
    scope = fields.get("Credential", "").split("/")
    if algorithm != "AWS4-HMAC-SHA256" or len(scope) != 5 or "Signature" not in fields:
        return Refusal("IncompleteSignatureException", "Authorization header is malformed.")
    key = keys.get(scope[0])
    if key is None or headers.get("x-amz-security-token") != key.session_token:
        return Refusal(
            "UnrecognizedClientException", "The security token included in the request is invalid."
        )
    signed = fields.get("SignedHeaders", "").split(";")
    if "host" not in signed or "x-amz-date" not in signed:
        return Refusal("IncompleteSignatureException", "host and x-amz-date must be signed.")
    stamp = headers.get("x-amz-date", "")
    try:
        moment = datetime.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)
    except ValueError:
        return Refusal("IncompleteSignatureException", "X-Amz-Date is malformed.")
    if abs(datetime.datetime.now(datetime.UTC) - moment) > MAX_CLOCK_SKEW:
        return Refusal("InvalidSignatureException", "Signature expired.")
    request = AWSRequest(
        method="POST",
        url=url,
        data=body,
        headers={name: headers.get(name, "") for name in signed},
    )
    request.context["timestamp"] = stamp
    signer = SigV4Auth(
        Credentials(key.access_key_id, key.secret_access_key, key.session_token), SERVICE, region
    )
    string_to_sign = signer.string_to_sign(request, signer.canonical_request(request))
    expected = signer.signature(string_to_sign, request)
    if scope[1:] != [stamp[:8], region, SERVICE, "aws4_request"] or not hmac.compare_digest(
        expected, fields["Signature"]
    ):
        return Refusal(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method. Consult the service "
            "documentation for details.",
        )
    return None
