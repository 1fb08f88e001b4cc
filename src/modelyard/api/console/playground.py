"""The playground: chat with a model or route the person may call, streamed, one or two at once.

The page (`playground.html`, `static/playground.js`) sends what the person typed as one JSON
object (`PlaygroundCall`); `chat_body` makes it the OpenAI chat body, which `/chat` relays,
streamed, to the gateway's own `/v1/chat/completions` with the person's principal (same access
checks, validation, limits and usage record as the API: a refusal comes back as the API's own
status and message), and `/code` shows the same call for three client SDKs. The page validates
tools and schemas before sending; the gateway validates everything again, so this module never
checks a parameter's value itself.

A streamed answer carries no cost header (the cost is known only once the stream has ended), so
after the gateway's own stream has ended well `/chat` adds one `modelyard.cost` event with what
the usage ledger recorded for this very request: the console never reads a record it did not
just cause.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Message, Receive, Scope, Send

from modelyard.api.console.internal import Relay, call, principal_in
from modelyard.api.console.page import console_page
from modelyard.api.console.playground_code import azure_code, mistral_code, openai_code
from modelyard.api.console.rendering import error_page, render
from modelyard.api.console.session import SignedIn
from modelyard.api.parsing import parse_model
from modelyard.auth.principal import Principal
from modelyard.errors import MalformedJson, PermissionDenied
from modelyard.ledger.store import LedgerStore
from modelyard.money import dollars
from modelyard.policy.rbac import Action
from modelyard.state import app_state, request_id

CHAT_PATH = "/v1/chat/completions"
COST_EVENT = b"modelyard.cost"
# How long the end of a stream waits for the ledger to hold its record (written in the
# background, normally within a few tens of milliseconds).
COST_WAIT_S = 5.0
_COST_POLL_S = 0.05
# The parameters the page may set, passed to the gateway as they are (it validates them).
PARAMETERS = (
    "temperature", "top_p", "max_tokens", "seed", "stop", "tools", "tool_choice",
    "response_format",
)  # fmt: skip
EXAMPLE_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The current weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "description": "The city's name."}},
                "required": ["city"],
            },
        },
    }
]
EXAMPLE_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
    "required": ["city", "country"],
    "additionalProperties": False,
}


class PlaygroundCall(BaseModel):
    """What the page sends: who is asked what, in which project, with which parameters."""

    # extra="allow" so that unknown keys are refused by name (`parse_model`).
    model_config = ConfigDict(extra="allow", strict=True, frozen=True)

    project: str | None = None
    model: str = Field(min_length=1, max_length=200)
    system: str = ""
    message: str = Field(min_length=1)
    temperature: Any = None
    top_p: Any = None
    max_tokens: Any = None
    seed: Any = None
    stop: Any = None
    tools: Any = None
    tool_choice: Any = None
    response_format: Any = None


def chat_body(ask: PlaygroundCall) -> dict[str, Any]:
    """The OpenAI chat body of the call (not streamed): parameters left empty are not sent."""
    messages = [{"role": "system", "content": ask.system}] if ask.system.strip() else []
    messages.append({"role": "user", "content": ask.message})
    body: dict[str, Any] = {"model": ask.model, "messages": messages}
    for name in PARAMETERS:
        value = getattr(ask, name)
        if value is not None and value != []:
            body[name] = value
    return body


@console_page
async def playground_page(request: Request, who: SignedIn) -> Response:
    projects = who.projects(Action.MODELS_USE)
    if not projects:
        raise PermissionDenied("Your roles do not let you use models in any project.")
    project = request.query_params.get("project") or projects[0]
    listed = await call(request, who, "GET", "/v1/models", project=project)
    if not listed.ok:
        return error_page(request, who, listed.status, listed.error_message)
    chat_models = [e for e in listed.json()["data"] if e["capabilities"]["completion_chat"]]
    models = [
        {"id": e["id"], "name": e.get("name") or e["id"]}
        for e in chat_models
        if e.get("type") != "route"
    ]
    routes = [{"id": e["id"], "name": e["id"]} for e in chat_models if e.get("type") == "route"]
    examples = {
        "tools": orjson.dumps(EXAMPLE_TOOLS, option=orjson.OPT_INDENT_2).decode(),
        "schema": orjson.dumps(EXAMPLE_SCHEMA, option=orjson.OPT_INDENT_2).decode(),
    }
    context = {
        "project": project,
        "projects": projects,
        "models": models,
        "routes": routes,
        "examples": examples,
    }
    return render(request, "playground.html", context, who=who)


@console_page
async def chat(request: Request, who: SignedIn) -> Relay:
    ask = parse_model(await request.body(), PlaygroundCall, frozenset())
    body = {**chat_body(ask), "stream": True, "stream_options": {"include_usage": True}}
    state = app_state(request)
    principal = principal_in(request, who, ask.project)
    return PricedStream(request, principal, body, state.ledger, request_id(request))


@console_page
async def code(request: Request, who: SignedIn) -> Response:
    form = await request.form()
    sent = form.get("call")
    if not isinstance(sent, str):
        raise MalformedJson("Send the call as the form field 'call' (a JSON object).")
    ask = parse_model(sent.encode(), PlaygroundCall, frozenset())
    body = chat_body(ask)
    base_url = str(request.base_url).rstrip("/")
    # A key acts in its own project; anyone else names the project as the API expects.
    project = ask.project if ask.project and ask.project != who.principal.project else None
    snippets = [
        ("openai", "openai", openai_code(body, base_url, project)),
        ("azure", "azure-ai-inference", azure_code(body, base_url, project)),
        ("mistral", "mistralai", mistral_code(body, base_url, project)),
    ]
    return render(request, "playground_code.html", {"snippets": snippets}, who=who)


class PricedStream(Relay):
    """The gateway's own chat stream, then (when it ended well) one `modelyard.cost` event with
    the cost the ledger recorded for the request."""

    def __init__(
        self,
        request: Request,
        principal: Principal,
        body: dict[str, Any],
        ledger: LedgerStore,
        request_id: str,
    ) -> None:
        super().__init__(request, principal, "POST", CHAT_PATH, body)
        self._ledger = ledger
        self._request_id = request_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        streamed = False
        ending: Message | None = None

        async def forward(message: Message) -> None:
            nonlocal streamed, ending
            if message["type"] == "http.response.start":
                streamed = message["status"] == 200 and any(
                    name.lower() == b"content-type" and value.startswith(b"text/event-stream")
                    for name, value in message.get("headers", [])
                )
            elif streamed and not message.get("more_body", False):
                ending = message  # held back: the cost goes before the end
                return
            await send(message)

        await super().__call__(scope, receive, forward)
        if ending is None:
            return  # refused, failed mid-stream or left: nothing ended well to price
        cost = await self._recorded_cost()
        payload = {"request_id": self._request_id, "cost_usd": cost}
        event = b"event: " + COST_EVENT + b"\ndata: " + orjson.dumps(payload) + b"\n\n"
        await send({"type": "http.response.body", "body": event, "more_body": True})
        await send(ending)

    async def _recorded_cost(self) -> str | None:
        """The request's cost as the ledger has it; None if it is not written in time."""
        deadline = time.monotonic() + COST_WAIT_S
        while True:
            costs = await asyncio.to_thread(self._ledger.costs, [self._request_id])
            if self._request_id in costs:
                return dollars(costs[self._request_id])
            if time.monotonic() >= deadline:
                return None
            await asyncio.sleep(_COST_POLL_S)


ROUTES: list[BaseRoute] = [
    Route("/playground", playground_page, methods=["GET"]),
    Route("/playground/chat", chat, methods=["POST"]),
    Route("/playground/code", code, methods=["POST"]),
]
