"""A gateway in front of several upstreams on loopback, for the routing tests.

Three models (all `openai_compat`):
- `alpha`: tools and JSON schema, languages en fr es de it, a 32,000-token window;
- `beta`: chat and streaming only, English, a 2,048-token window, cheap;
- `gamma`: tools and JSON schema, en and fr, a 128,000-token window, dear.

Each deployment names its own upstream (a `FakeUpstream`, a fault server, a byte-counting proxy),
its region and its price; routes are written in the catalog or created through the admin API.
Circuit breakers open after 3 failures and probe after 1 s, so tests can watch them cycle.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml
from starlette.requests import Request

from modelyard.testing.fake_upstream import (
    FakeUpstream,
    JsonReply,
    StreamReply,
    completion_body,
    stream_events,
)
from tests.support.gateway import GatewayProcess

UPSTREAM_KEY = "sk-routing-upstream"
BREAKER_ENV = {
    "MODELYARD_BREAKER_FAILURES": "3",
    "MODELYARD_BREAKER_COOLDOWN_S": "1",
}

MODELS: list[dict[str, Any]] = [
    {
        "id": "alpha",
        "publisher": "Acme",
        "license": "proprietary",
        "context_window": 32000,
        "max_output_tokens": 4000,
        "languages": ["en", "fr", "es", "de", "it"],
        "capabilities": ["chat", "streaming", "tools", "json_schema", "json_output"],
    },
    {
        "id": "beta",
        "publisher": "Acme",
        "license": "proprietary",
        "context_window": 2048,
        "max_output_tokens": 512,
        "languages": ["en"],
        "capabilities": ["chat", "streaming"],
    },
    {
        "id": "gamma",
        "publisher": "Acme",
        "license": "proprietary",
        "context_window": 128000,
        "max_output_tokens": 8000,
        "languages": ["en", "fr"],
        "capabilities": ["chat", "streaming", "tools", "json_schema", "json_output"],
    },
]


@dataclass(frozen=True)
class Deployment:
    id: str
    model: str
    base_url: str
    region: str = "eu-west"
    # US dollars per 1M input and output tokens, as decimal strings.
    price: tuple[str, str] = ("1", "2")
    read_timeout_s: float = 5.0
    idle_timeout_s: float = 2.0
    limits: dict[str, int] = field(default_factory=dict)

    def entry(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "id": self.id,
            "model": self.model,
            "provider": "openai_compat",
            "region": self.region,
            "price": {"input_per_1m": self.price[0], "output_per_1m": self.price[1]},
            "data_policy": {"retention_days": 0, "summary": "test upstream"},
            "upstream": {
                "base_url": self.base_url,
                "model": f"{self.model}-upstream",
                "credential": "env:ROUTING_KEY",
                "connect_timeout_s": 1.0,
                "read_timeout_s": self.read_timeout_s,
                "idle_timeout_s": self.idle_timeout_s,
            },
        }
        if self.limits:
            entry["limits"] = dict(self.limits)
        return entry


def write_catalog(
    path: Path, deployments: Sequence[Deployment], routes: Sequence[dict[str, Any]] = ()
) -> Path:
    document = {
        "models": MODELS,
        "deployments": [d.entry() for d in deployments],
        "routes": list(routes),
    }
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


@contextlib.contextmanager
def routing_gateway(
    directory: Path,
    deployments: Sequence[Deployment],
    routes: Sequence[dict[str, Any]] = (),
    env: dict[str, str] | None = None,
    args: tuple[str, ...] = (),
) -> Iterator[GatewayProcess]:
    catalog = write_catalog(directory / "catalog.yaml", deployments, routes)
    gateway = GatewayProcess(
        directory / "data",
        env={"ROUTING_KEY": UPSTREAM_KEY, **BREAKER_ENV, **(env or {})},
        args=("--catalog", str(catalog), *args),
    ).start()
    try:
        yield gateway
    finally:
        gateway.stop()


@contextlib.contextmanager
def fake_upstreams(count: int) -> Iterator[list[FakeUpstream]]:
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(FakeUpstream().running()) for _ in range(count)]


def chat(model: str, content: str = "Say hello.", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": content}], **extra}


# -- scripted upstreams ---------------------------------------------------------------------------

# Every scripted upstream draws its arrival numbers here, so the order of attempts across
# upstreams can be read back.
_ARRIVALS = itertools.count()

WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
WEATHER_ARGUMENTS = '{"city": "Paris"}'

Reply = JsonReply | StreamReply


@dataclass(frozen=True)
class Served:
    """One request a scripted upstream received, and the reply it gave."""

    arrival: int
    upstream: str
    body: Any
    reply: Reply


class ScriptedUpstream(FakeUpstream):
    """A `FakeUpstream` whose reply to each chat request is `script(index, body)`, `index`
    counting this upstream's requests from 0, and which keeps every request with its reply in
    `served`, in the order they arrived. Replies queued with `enqueue` go first."""

    def __init__(self, name: str, script: Callable[[int, Any], Reply]) -> None:
        super().__init__()
        self.name = name
        self.served: list[Served] = []
        self._script = script

    async def record(self, request: Request) -> tuple[Any, Reply | None]:
        body, queued = await super().record(request)
        # No await since the request was recorded: `requests` and `served` stay in step.
        reply = queued if queued is not None else self._script(len(self.requests) - 1, body)
        self.served.append(Served(next(_ARRIVALS), self.name, body, reply))
        return body, reply


def success_reply(body: Any, prompt_tokens: int, completion_tokens: int) -> Reply:
    """A whole answer in the shape the request asked for (streamed or not; a call of
    `get_weather` when the request offers tools), reporting this usage."""
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    tools = bool(body.get("tools"))
    if not body.get("stream"):
        if not tools:
            return JsonReply(completion_body("Hello from upstream.", usage=usage))
        message = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": WEATHER_ARGUMENTS},
                }
            ],
        }
        choices = [{"index": 0, "message": message, "finish_reason": "tool_calls"}]
        return JsonReply(completion_body(usage=usage) | {"choices": choices})
    if not tools:
        return StreamReply(stream_events(["Hello", " from", " upstream."], usage=usage))
    call = {
        "index": 0,
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": WEATHER_ARGUMENTS},
    }
    events = stream_events([], usage=usage, finish_reason="tool_calls")
    chunk = {
        "id": "chatcmpl-up",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "upstream-model",
        "choices": [{"index": 0, "delta": {"tool_calls": [call]}, "finish_reason": None}],
    }
    return StreamReply([events[0], b"data: " + orjson.dumps(chunk), *events[1:]])


def error_reply(status: int, usage: tuple[int, int] | None = None) -> JsonReply:
    """An upstream error; with `usage`, the error body reports what the failed call consumed."""
    body: dict[str, Any] = {"error": {"message": f"scripted {status}", "type": "server_error"}}
    if usage is not None:
        body["usage"] = {
            "prompt_tokens": usage[0],
            "completion_tokens": usage[1],
            "total_tokens": sum(usage),
        }
    return JsonReply(body, status=status)


# Headers sent, then the connection dropped before any byte of the body, streamed or not.
CUT_REPLY = StreamReply([b"data: {}"], reset_after=0)


def reported_usage(reply: Reply) -> tuple[int, int]:
    """The prompt and completion tokens a reply reports (in a body, an error body or a stream's
    usage chunk); (0, 0) when it reports none or is cut before its end."""
    if isinstance(reply, JsonReply):
        usage = reply.body.get("usage") if isinstance(reply.body, dict) else None
    elif reply.reset_after is not None and reply.reset_after < len(reply.events):
        usage = None
    else:
        usage = None
        for event in reply.events:
            data = event.removeprefix(b"data: ")
            if data != b"[DONE]":
                usage = orjson.loads(data).get("usage") or usage
    if not isinstance(usage, dict):
        return (0, 0)
    return (int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))
