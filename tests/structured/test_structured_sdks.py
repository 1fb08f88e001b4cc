"""The structured-output helpers of real client SDKs, against the live gateway and SmolLM2.

The `openai` SDK's `.parse()` derives a strict schema from a pydantic model and parses the answer
back into it; LangChain's `with_structured_output` does the same through `response_format`
(its default) or through a forced tool call, and `bind_tools` reads tool calls into
`AIMessage.tool_calls`. Each test checks the SDK hands back a typed value, which only happens
when the gateway's answer is valid for the schema the SDK sent.

Every model here bounds its strings and lists (see `schema_corpus.py`), so a greedy answer ends
well before `max_tokens`; LangChain needs no network beyond the gateway (no tiktoken download:
nothing here counts tokens).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
from jsonschema import Draft202012Validator
from langchain_core.messages import AIMessage
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

from tests.structured.schema_corpus import (
    CalendarEvent,
    Customer,
    Endpoint,
    Reading,
    Ticket,
    Weather,
    integer,
    obj,
    text,
)
from tests.support.gateway import GatewayProcess

pytestmark = pytest.mark.model

MODEL = "smollm2"
MAX_TOKENS = 400

PARSE_CASES = [
    pytest.param(CalendarEvent, "Alice and Bob are going to a science fair on Friday.", id="list"),
    pytest.param(
        Customer, "Customer Eve, 29, lives at 12 Elm St, Boston 02101.", id="nested_optional"
    ),
    pytest.param(
        Ticket, "Open an urgent ticket: the login page is down. Nobody is assigned.", id="enum"
    ),
    pytest.param(
        Reading, "Sensor 3f2b read 21.5 C at (52.5, 13.4) on 2024-05-01 at 12:00.", id="formats"
    ),
]

GET_WEATHER: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": obj(
            {"city": text(30), "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}
        ),
    },
}
GET_TIME: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Get the current local time in a time zone.",
        "parameters": obj({"zone": text(30)}),
    },
}
RATING = {
    "title": "Rating",
    "description": "A film rating.",
    **obj({"film": text(30), "stars": integer(1, 5)}),
}


def user(prompt: str) -> list[Any]:
    return [{"role": "user", "content": prompt}]


# --- openai SDK ---------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "prompt"), PARSE_CASES)
def test_parse_returns_an_instance_of_the_pydantic_model(
    client: openai.OpenAI, model: type[BaseModel], prompt: str
) -> None:
    completion = client.chat.completions.parse(
        model=MODEL,
        messages=user(prompt),
        response_format=model,
        max_tokens=MAX_TOKENS,
        temperature=0,
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.refusal is None
    assert isinstance(choice.message.parsed, model)
    assert choice.message.parsed == model.model_validate_json(choice.message.content or "")


@pytest.mark.anyio
async def test_async_parse_returns_an_instance_of_the_pydantic_model(
    async_client: openai.AsyncOpenAI,
) -> None:
    completion = await async_client.chat.completions.parse(
        model=MODEL,
        messages=user("The API server is at 192.168.1.20 port 8443 over TLS."),
        response_format=Endpoint,
        max_tokens=MAX_TOKENS,
        temperature=0,
    )
    assert isinstance(completion.choices[0].message.parsed, Endpoint)


def test_stream_helper_parses_the_accumulated_answer(client: openai.OpenAI) -> None:
    with client.chat.completions.stream(
        model=MODEL,
        messages=user("Open an urgent ticket: the login page is down. Nobody is assigned."),
        response_format=Ticket,
        max_tokens=MAX_TOKENS,
        temperature=0,
    ) as stream:
        deltas = [event for event in stream if event.type == "content.delta"]
        final = stream.get_final_completion()
    assert len(deltas) > 1
    assert isinstance(final.choices[0].message.parsed, Ticket)


def test_parse_fills_parsed_arguments_of_a_strict_pydantic_tool(client: openai.OpenAI) -> None:
    completion = client.chat.completions.parse(
        model=MODEL,
        messages=user("What is the weather in Oslo?"),
        tools=[openai.pydantic_function_tool(Weather, name="report_weather")],
        tool_choice="required",
        max_tokens=MAX_TOKENS,
        temperature=0,
    )
    calls = completion.choices[0].message.tool_calls or []
    assert [call.function.name for call in calls] == ["report_weather"]
    assert isinstance(calls[0].function.parsed_arguments, Weather)


# --- LangChain ----------------------------------------------------------------------------


def langchain_model(gateway: GatewayProcess, http_client: httpx.Client | None = None) -> ChatOpenAI:
    return ChatOpenAI(
        base_url=f"{gateway.base_url}/v1",
        api_key=gateway.admin_key,
        model="smollm2",
        max_retries=0,
        temperature=0,
        max_tokens=MAX_TOKENS,
        http_client=http_client,
    )


@pytest.fixture()
def chat_model(gateway: GatewayProcess) -> ChatOpenAI:
    return langchain_model(gateway)


def test_langchain_structured_output_returns_the_model(chat_model: ChatOpenAI) -> None:
    # The default method sends `response_format: json_schema` with the pydantic schema.
    structured = chat_model.with_structured_output(Weather)
    assert isinstance(structured.invoke("It is 18 degrees and raining in Dublin."), Weather)


def test_langchain_function_calling_structured_output_returns_the_model(
    gateway: GatewayProcess,
) -> None:
    sent: list[dict[str, Any]] = []

    def record(request: httpx.Request) -> None:
        sent.append(json.loads(request.content))

    with httpx.Client(event_hooks={"request": [record]}) as http_client:
        structured = langchain_model(gateway, http_client).with_structured_output(
            Weather, method="function_calling"
        )
        assert isinstance(structured.invoke("It is 30 degrees and sunny in Madrid."), Weather)
    # LangChain declares the model as a tool and forces it with a named tool_choice.
    assert sent[0]["tool_choice"] == {"type": "function", "function": {"name": "Weather"}}
    assert sent[0]["parallel_tool_calls"] is False


def test_langchain_structured_output_from_a_json_schema_returns_a_valid_dict(
    chat_model: ChatOpenAI,
) -> None:
    structured = chat_model.with_structured_output(RATING)
    rating = structured.invoke("Rate the film Jaws.")
    assert isinstance(rating, dict)
    assert not list(Draft202012Validator(RATING).iter_errors(rating))


@pytest.mark.anyio
async def test_langchain_async_structured_output_returns_the_model(
    gateway: GatewayProcess,
) -> None:
    # An async client of this test's own event loop: LangChain's default one is cached across
    # tests, and its connections would be closed later on a loop that no longer exists.
    async with openai.DefaultAsyncHttpxClient() as http_async_client:
        model = ChatOpenAI(
            base_url=f"{gateway.base_url}/v1",
            api_key=gateway.admin_key,
            model="smollm2",
            max_retries=0,
            temperature=0,
            max_tokens=MAX_TOKENS,
            http_async_client=http_async_client,
        )
        structured = model.with_structured_output(Weather)
        answer = await structured.ainvoke("It is 5 degrees and snowing in Oslo.")
    assert isinstance(answer, Weather)


@pytest.mark.parametrize("tool_choice", ["get_weather", "any", "required"])
def test_langchain_bind_tools_with_forced_choice_returns_tool_calls(
    chat_model: ChatOpenAI, tool_choice: str
) -> None:
    bound = chat_model.bind_tools([GET_WEATHER, GET_TIME], tool_choice=tool_choice)
    message = bound.invoke("What is the weather like in Paris?")
    assert isinstance(message, AIMessage)
    assert message.tool_calls, f"no tool call in {message!r}"
    tools = {"get_weather": GET_WEATHER, "get_time": GET_TIME}
    for call in message.tool_calls:
        if tool_choice == "get_weather":
            assert call["name"] == "get_weather"
        parameters = tools[call["name"]]["function"]["parameters"]
        assert not list(Draft202012Validator(parameters).iter_errors(call["args"])), call
        assert call["id"]
