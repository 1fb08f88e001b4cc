"""Function calling through the official SDKs (openai sync and async, mistralai, LangChain)
against a live gateway on the bundled SmolLM2.

Every returned call is checked the same way (`assert_valid_calls`): it names a declared tool,
its `arguments` are a JSON string that validates against that tool's parameters, and ids are
unique strings. Which tool the model picks under `auto` is the model's quality, not the
gateway's: it is measured by `tool_accuracy.py` and never asserted here. Decoding is greedy
(temperature 0) so runs repeat, and `max_tokens` stays small because the machine is small.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import openai
import pydantic
import pytest
from jsonschema import Draft202012Validator
from langchain_openai import ChatOpenAI
from mistralai.client import Mistral
from mistralai.client.errors import SDKError
from mistralai.client.models import ToolMessage

from tests.structured.tool_cases import (
    CASES,
    CONVERT_CURRENCY,
    CREATE_EVENT,
    GET_JOKE,
    GET_TIME,
    GET_WEATHER,
    LIST_TODOS,
    SEND_EMAIL,
    SET_ALARM,
    TOOLBOX,
    UNENFORCEABLE_TOOL,
    ToolCase,
    call_problem,
    function_tool,
    parameters_of,
    tool_names,
)
from tests.support.gateway import GatewayProcess

MODEL = "smollm2"
CALL_TOKENS = 160  # the longest forced call (create_event) takes ~90 tokens
TEXT_TOKENS = 16
WEATHER_QUESTION = [{"role": "user", "content": "What's the weather like in Paris right now?"}]
WEATHER_TOOLS = [GET_WEATHER, GET_TIME]


def named(tool: Mapping[str, Any]) -> dict[str, Any]:
    return {"type": "function", "function": {"name": tool["function"]["name"]}}


def _weather_call(call_id: str, city: str) -> dict[str, Any]:
    arguments = json.dumps({"city": city})
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": "get_weather", "arguments": arguments},
    }


# One earlier turn in which the assistant called two tools at once: with it in the history,
# greedy SmolLM2 answers the next two-city question with two calls (it never does unprompted).
TWO_CITIES = [
    {"role": "user", "content": "What's the weather in Rome and in Oslo?"},
    {
        "role": "assistant",
        "tool_calls": [_weather_call("call_a", "Rome"), _weather_call("call_b", "Oslo")],
    },
    {"role": "tool", "tool_call_id": "call_a", "content": "Rome: sunny, 24C"},
    {"role": "tool", "tool_call_id": "call_b", "content": "Oslo: snow, -3C"},
    {"role": "assistant", "content": "Rome is sunny at 24C; Oslo has snow at -3C."},
    {"role": "user", "content": "What's the weather in Paris and in London?"},
]


def assert_valid_calls(
    calls: Sequence[Any] | None, tools: Sequence[Mapping[str, Any]]
) -> list[str]:
    """Check calls from any SDK (`.id`, `.function.name`, `.function.arguments`); their names."""
    assert calls, "expected at least one tool call"
    for call in calls:
        problem = call_problem(call.function.name, call.function.arguments, tools)
        assert problem is None, problem
    ids = [call.id for call in calls]
    assert all(isinstance(i, str) and i for i in ids), ids
    assert len(set(ids)) == len(ids), f"duplicate tool call ids: {ids}"
    return [call.function.name for call in calls]


def params(messages: Sequence[Any] = WEATHER_QUESTION, **overrides: Any) -> dict[str, Any]:
    """Keyword arguments for any SDK's chat call: greedy, the weather tools, room for a call.
    An override of None leaves that key out of the request."""
    defaults = {"model": MODEL, "temperature": 0, "max_tokens": CALL_TOKENS, "tools": WEATHER_TOOLS}
    merged = {**defaults, "messages": list(messages), **overrides}
    return {key: value for key, value in merged.items() if value is not None}


def create(client: openai.OpenAI, messages: Sequence[Any], **overrides: Any) -> Any:
    return client.chat.completions.create(**params(messages, **overrides))


def assert_text_answer(choice: Any) -> None:
    assert not choice.message.tool_calls
    assert isinstance(choice.message.content, str) and choice.message.content.strip()
    assert choice.finish_reason in ("stop", "length")


def assert_tool_answer(choice: Any, tools: Sequence[Mapping[str, Any]]) -> list[str]:
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    return assert_valid_calls(choice.message.tool_calls, tools)


# -- requests the gateway refuses before generating --------------------------------------------


BAD_NAME = function_tool("get weather", "Spaces are not allowed in names.", None)
REFUSED = [
    pytest.param(
        {"tool_choice": named(SEND_EMAIL)}, "tool_choice.function.name", id="undeclared-named"
    ),
    pytest.param({"tools": [*WEATHER_TOOLS, GET_WEATHER]}, "tools[2].function.name", id="dup"),
    pytest.param({"tools": None, "tool_choice": "required"}, "tool_choice", id="no-tools"),
    pytest.param(
        {"tools": None, "tool_choice": named(GET_TIME)}, "tool_choice", id="no-tools-named"
    ),
    pytest.param({"tools": [UNENFORCEABLE_TOOL]}, "tools[0].function.parameters", id="schema"),
    pytest.param({"tools": [BAD_NAME]}, "tools[0].function.name", id="bad-name"),
]


@pytest.mark.parametrize(("overrides", "param"), REFUSED)
def test_invalid_tool_requests_are_400_naming_the_parameter(
    client: openai.OpenAI, overrides: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        create(client, WEATHER_QUESTION, **overrides)
    assert caught.value.param == param
    expected = "unsupported_schema" if param.endswith("parameters") else "invalid_parameter"
    assert caught.value.code == expected


def test_mistral_sdk_gets_a_400_for_an_undeclared_named_tool(mistral: Mistral) -> None:
    with pytest.raises(SDKError) as caught:
        mistral.chat.complete(**params(tool_choice=named(SEND_EMAIL)))
    assert caught.value.status_code == 400
    assert json.loads(caught.value.body)["error"]["param"] == "tool_choice.function.name"


# -- openai SDK, non-streamed ------------------------------------------------------------------


def test_required_with_one_tool_calls_it_with_valid_arguments(client: openai.OpenAI) -> None:
    completion = create(client, WEATHER_QUESTION, tools=[GET_WEATHER], tool_choice="required")
    assert assert_tool_answer(completion.choices[0], [GET_WEATHER]) == ["get_weather"]
    assert completion.usage is not None and completion.usage.completion_tokens > 0


def test_required_with_the_whole_toolbox_calls_a_declared_tool(client: openai.OpenAI) -> None:
    prompt = [{"role": "user", "content": "Convert 100 US dollars to euros."}]
    completion = create(client, prompt, tools=list(TOOLBOX), tool_choice="required")
    assert_tool_answer(completion.choices[0], TOOLBOX)


SCHEMA_SHAPES = [CREATE_EVENT, SET_ALARM, SEND_EMAIL, CONVERT_CURRENCY, GET_JOKE, LIST_TODOS]


@pytest.mark.parametrize(
    "tool", SCHEMA_SHAPES, ids=[tool["function"]["name"] for tool in SCHEMA_SHAPES]
)
def test_named_tool_gets_arguments_matching_its_schema(
    client: openai.OpenAI, tool: dict[str, Any]
) -> None:
    """Nested objects and $ref (create_event), pattern/anyOf/enum arrays (set_alarm), email
    arrays (send_email), numbers and enums (convert_currency), no or empty parameters."""
    case = next(case for case in CASES if case.right_tool == tool["function"]["name"])
    tools = [GET_WEATHER, tool]
    prompt = [{"role": "user", "content": case.prompt}]
    completion = create(client, prompt, tools=tools, tool_choice=named(tool))
    names = assert_tool_answer(completion.choices[0], tools)
    assert set(names) == {tool["function"]["name"]}


def test_named_tool_is_called_even_when_another_fits_better(client: openai.OpenAI) -> None:
    completion = create(client, WEATHER_QUESTION, tool_choice=named(GET_TIME))
    assert set(assert_tool_answer(completion.choices[0], WEATHER_TOOLS)) == {"get_time"}


def test_parallel_calls_each_validate_with_unique_ids(client: openai.OpenAI) -> None:
    completion = create(client, TWO_CITIES, tool_choice="required")
    names = assert_tool_answer(completion.choices[0], WEATHER_TOOLS)
    assert len(names) == 2, "the two-call history should lead greedy SmolLM2 to two calls"


def test_parallel_tool_calls_false_yields_exactly_one_call(client: openai.OpenAI) -> None:
    completion = create(client, TWO_CITIES, tool_choice="required", parallel_tool_calls=False)
    assert len(assert_tool_answer(completion.choices[0], WEATHER_TOOLS)) == 1


def test_several_choices_get_distinct_call_ids(client: openai.OpenAI) -> None:
    completion = create(client, WEATHER_QUESTION, tools=[GET_WEATHER], tool_choice="required", n=2)
    calls = [call for choice in completion.choices for call in choice.message.tool_calls or []]
    assert len(calls) >= 2
    assert_valid_calls(calls, [GET_WEATHER])


def test_tool_choice_none_answers_in_text(client: openai.OpenAI) -> None:
    completion = create(client, WEATHER_QUESTION, tool_choice="none", max_tokens=TEXT_TOKENS)
    assert_text_answer(completion.choices[0])


AUTO_CASES = [CASES[0], CASES[13], CASES[-3]]  # weather, joke, small talk
AUTO_TOOLS = [GET_WEATHER, GET_TIME, GET_JOKE, LIST_TODOS]


@pytest.mark.parametrize("case", AUTO_CASES, ids=[case.id for case in AUTO_CASES])
def test_auto_answers_in_text_or_with_valid_calls(client: openai.OpenAI, case: ToolCase) -> None:
    prompt = [{"role": "user", "content": case.prompt}]
    completion = create(client, prompt, tools=AUTO_TOOLS, tool_choice="auto", max_tokens=64)
    choice = completion.choices[0]
    if choice.message.tool_calls:
        assert_tool_answer(choice, AUTO_TOOLS)
    else:
        assert_text_answer(choice)
        assert not choice.message.content.lstrip().startswith("<")


def test_a_call_cut_by_max_tokens_does_not_leak_the_call_syntax(client: openai.OpenAI) -> None:
    completion = create(
        client, WEATHER_QUESTION, tools=[GET_WEATHER], tool_choice="required", max_tokens=8
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "length"
    assert "<tool_call>" not in (choice.message.content or "")


# Two earlier answers that open with a newline and markup: greedy SmolLM2 answers the third
# question the same way ("\n<u>underlined text</u>"), which the grammar allows as text.
MARKUP_HISTORY = [
    {"role": "user", "content": "Give me the HTML for bold text."},
    {"role": "assistant", "content": "\n<b>bold text</b>"},
    {"role": "user", "content": "Give me the HTML for italic text."},
    {"role": "assistant", "content": "\n<i>italic text</i>"},
    {"role": "user", "content": "Give me the HTML for underlined text."},
]


def test_auto_text_that_starts_with_a_newline_and_markup_is_kept(client: openai.OpenAI) -> None:
    completion = create(client, MARKUP_HISTORY, tool_choice="auto", max_tokens=20)
    choice = completion.choices[0]
    assert not choice.message.tool_calls
    assert "<u>" in (choice.message.content or "")


def test_strict_pydantic_tool_is_parsed_by_the_sdk_helper(client: openai.OpenAI) -> None:
    class GetWeather(pydantic.BaseModel):
        """Get the current weather in a city."""

        city: str = pydantic.Field(max_length=30)

    tool = openai.pydantic_function_tool(GetWeather)
    completion = client.chat.completions.parse(**params(tools=[tool], tool_choice="required"))
    calls = completion.choices[0].message.tool_calls
    assert assert_valid_calls(calls, [tool]) == ["GetWeather"]
    assert isinstance(calls[0].function.parsed_arguments, GetWeather)


# -- multi-turn: the SDK's own assistant message goes back with the tool result ---------------


@pytest.fixture(scope="module")
def weather_turn(gateway: GatewayProcess) -> list[dict[str, Any]]:
    """The user question, the assistant's call echoed as `model_dump(exclude_none=True)`
    (no `content` key), and a tool result: the history of a follow-up request."""
    client = openai.OpenAI(
        base_url=f"{gateway.base_url}/v1", api_key=gateway.admin_key, max_retries=0
    )
    message = create(client, WEATHER_QUESTION, tools=[GET_WEATHER], tool_choice="required")
    message = message.choices[0].message
    echo = message.model_dump(exclude_none=True)
    assert "content" not in echo
    result = {"role": "tool", "tool_call_id": message.tool_calls[0].id, "content": "Sunny, 21C"}
    return [*WEATHER_QUESTION, echo, result]


@pytest.mark.parametrize(
    "follow_up",
    [{"tools": [GET_WEATHER], "tool_choice": "none"}, {"tools": None}],
    ids=["tools-kept-choice-none", "tools-dropped"],
)
def test_tool_result_fed_back_gets_a_text_answer(
    client: openai.OpenAI, weather_turn: list[dict[str, Any]], follow_up: dict[str, Any]
) -> None:
    completion = create(client, weather_turn, max_tokens=TEXT_TOKENS, **follow_up)
    assert_text_answer(completion.choices[0])


def test_tool_result_fed_back_under_auto_is_text_or_a_valid_call(
    client: openai.OpenAI, weather_turn: list[dict[str, Any]]
) -> None:
    choice = create(client, weather_turn, tools=[GET_WEATHER], tool_choice="auto").choices[0]
    if choice.message.tool_calls:
        assert_tool_answer(choice, [GET_WEATHER])
    else:
        assert_text_answer(choice)


# -- openai SDK, streamed ----------------------------------------------------------------------


def test_stream_delivers_each_call_whole_in_one_delta(client: openai.OpenAI) -> None:
    options = {"include_usage": True}
    chunks = list(
        create(client, TWO_CITIES, tool_choice="required", stream=True, stream_options=options)
    )
    deltas = [call for c in chunks if c.choices for call in c.choices[0].delta.tool_calls or []]
    assert [call.index for call in deltas] == list(range(len(deltas)))
    for call in deltas:
        assert call.type == "function" and call.id and call.function.name
    assert_valid_calls(deltas, WEATHER_TOOLS)
    assert len(deltas) == 2
    finished = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finished == ["tool_calls"]
    assert not "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].choices == [] and chunks[-1].usage is not None


def test_stream_helper_final_message_has_the_calls(client: openai.OpenAI) -> None:
    with client.chat.completions.stream(**params(tool_choice="required")) as stream:
        done = [e for e in stream if e.type == "tool_calls.function.arguments.done"]
        final = stream.get_final_completion()
    choice = final.choices[0]
    names = assert_tool_answer(choice, WEATHER_TOOLS)
    assert [event.name for event in done] == names
    assert [event.arguments for event in done] == [
        call.function.arguments for call in choice.message.tool_calls or []
    ]


def test_stream_with_tool_choice_none_streams_text(client: openai.OpenAI) -> None:
    stream = create(client, WEATHER_QUESTION, tool_choice="none", stream=True, max_tokens=32)
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks).strip()
    assert not any(c.choices[0].delta.tool_calls for c in chunks)
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


# -- openai SDK, async -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_async_client_calls_then_answers_the_tool_result(
    async_client: openai.AsyncOpenAI,
) -> None:
    first = await async_client.chat.completions.create(**params(tool_choice="required"))
    message = first.choices[0].message
    assert_tool_answer(first.choices[0], WEATHER_TOOLS)
    results = [
        {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21C"}
        for call in message.tool_calls or []
    ]
    history = [*WEATHER_QUESTION, message.model_dump(exclude_none=True), *results]
    second = await async_client.chat.completions.create(
        **params(history, tool_choice="none", max_tokens=TEXT_TOKENS)
    )
    assert_text_answer(second.choices[0])


@pytest.mark.anyio
async def test_async_stream_delivers_the_named_call(async_client: openai.AsyncOpenAI) -> None:
    stream = await async_client.chat.completions.create(
        **params(tool_choice=named(GET_TIME), stream=True)
    )
    chunks = [chunk async for chunk in stream]
    deltas = [call for c in chunks for call in c.choices[0].delta.tool_calls or []]
    assert assert_valid_calls(deltas, WEATHER_TOOLS) == ["get_time"]
    assert deltas[0].index == 0 and deltas[0].type == "function"
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


# -- mistralai SDK -----------------------------------------------------------------------------


@pytest.fixture()
def mistral(gateway: GatewayProcess) -> Mistral:
    # The SDK adds /v1 itself (CLIENTS.md §1).
    return Mistral(server_url=gateway.base_url, api_key=gateway.admin_key)


def mistral_complete(mistral: Mistral, messages: Sequence[Any], **overrides: Any) -> Any:
    return mistral.chat.complete(**params(messages, **overrides))


def test_mistral_models_list_advertises_function_calling(mistral: Mistral) -> None:
    cards = {card.id: card for card in mistral.models.list().data or []}
    card = cards["smollm2-135m-instruct"]
    assert card.type == "base"
    assert card.capabilities.function_calling


def test_mistral_any_forces_a_valid_call_with_seed_and_safe_prompt(mistral: Mistral) -> None:
    response = mistral_complete(
        mistral,
        WEATHER_QUESTION,
        tool_choice="any",
        random_seed=7,
        safe_prompt=True,
    )
    choice = response.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert_valid_calls(choice.message.tool_calls, WEATHER_TOOLS)
    assert response.usage.completion_tokens > 0


def test_mistral_named_tool_choice_calls_that_tool(mistral: Mistral) -> None:
    response = mistral_complete(mistral, WEATHER_QUESTION, tool_choice=named(GET_TIME))
    assert assert_valid_calls(response.choices[0].message.tool_calls, WEATHER_TOOLS) == ["get_time"]


def test_mistral_parallel_tool_calls_false_yields_one_call(mistral: Mistral) -> None:
    response = mistral_complete(mistral, TWO_CITIES, tool_choice="any", parallel_tool_calls=False)
    assert len(assert_valid_calls(response.choices[0].message.tool_calls, WEATHER_TOOLS)) == 1


def test_mistral_none_answers_in_text(mistral: Mistral) -> None:
    response = mistral_complete(
        mistral, WEATHER_QUESTION, tool_choice="none", max_tokens=TEXT_TOKENS
    )
    choice = response.choices[0]
    assert not choice.message.tool_calls
    assert isinstance(choice.message.content, str) and choice.message.content.strip()


# The Mistral SDK refuses, client-side, a function without `parameters` (get_joke).
MISTRAL_AUTO_TOOLS = [tool for tool in AUTO_TOOLS if "parameters" in tool["function"]]


def test_mistral_auto_answers_in_text_or_with_valid_calls(mistral: Mistral) -> None:
    prompt = [{"role": "user", "content": "Tell me a joke."}]
    response = mistral_complete(
        mistral, prompt, tools=MISTRAL_AUTO_TOOLS, tool_choice="auto", max_tokens=64
    )
    choice = response.choices[0]
    if choice.message.tool_calls:
        assert choice.finish_reason == "tool_calls"
        assert_valid_calls(choice.message.tool_calls, MISTRAL_AUTO_TOOLS)
    else:
        assert isinstance(choice.message.content, str) and choice.message.content.strip()


def test_mistral_sdk_message_objects_round_trip(mistral: Mistral) -> None:
    """The SDK's own AssistantMessage (content null, prefix false, tool_calls[].index) and a
    ToolMessage with `name` are sent back as they are."""
    first = mistral_complete(mistral, WEATHER_QUESTION, tool_choice="any")
    assistant = first.choices[0].message
    results = [
        ToolMessage(content="Sunny, 21C", tool_call_id=call.id, name=call.function.name)
        for call in assistant.tool_calls
    ]
    history = [*WEATHER_QUESTION, assistant, *results]
    second = mistral_complete(mistral, history, tool_choice="none", max_tokens=TEXT_TOKENS)
    assert isinstance(second.choices[0].message.content, str)
    assert second.choices[0].message.content.strip()


def test_mistral_stream_delivers_whole_tool_calls(mistral: Mistral) -> None:
    events = list(mistral.chat.stream(**params(tool_choice="any")))
    deltas = [call for e in events for call in e.data.choices[0].delta.tool_calls or []]
    assert_valid_calls(deltas, WEATHER_TOOLS)
    assert [call.index for call in deltas] == list(range(len(deltas)))
    assert events[-1].data.choices[0].finish_reason == "tool_calls"
    assert events[-1].data.usage is not None


@pytest.mark.anyio
async def test_mistral_async_complete_forces_a_call(mistral: Mistral) -> None:
    response = await mistral.chat.complete_async(
        **params(tools=[GET_WEATHER], tool_choice="required")
    )
    names = assert_valid_calls(response.choices[0].message.tool_calls, [GET_WEATHER])
    assert names == ["get_weather"]


# -- LangChain ---------------------------------------------------------------------------------


@pytest.fixture()
def chat_model(gateway: GatewayProcess) -> ChatOpenAI:
    return ChatOpenAI(
        model=MODEL,
        base_url=f"{gateway.base_url}/v1",
        api_key=gateway.admin_key,
        max_retries=0,
        temperature=0,
        max_tokens=CALL_TOKENS,
    )


@pytest.mark.parametrize("tool_choice", ["get_time", "any"])
def test_langchain_bind_tools_returns_valid_calls(chat_model: ChatOpenAI, tool_choice: str) -> None:
    message = chat_model.bind_tools(WEATHER_TOOLS, tool_choice=tool_choice).invoke(
        WEATHER_QUESTION[0]["content"]
    )
    assert message.response_metadata["finish_reason"] == "tool_calls"
    calls = message.tool_calls
    assert calls and len({call["id"] for call in calls}) == len(calls)
    for call in calls:
        problem = call_problem(call["name"], json.dumps(call["args"]), WEATHER_TOOLS)
        assert problem is None, problem
    if tool_choice != "any":
        assert {call["name"] for call in calls} == {tool_choice}


def test_langchain_function_calling_structured_output(chat_model: ChatOpenAI) -> None:
    """`method="function_calling"` sends a forced tool_choice with parallel_tool_calls false."""

    class Weather(pydantic.BaseModel):
        """The weather request."""

        city: str = pydantic.Field(max_length=30)

    runnable = chat_model.with_structured_output(Weather, method="function_calling")
    assert isinstance(runnable.invoke(WEATHER_QUESTION[0]["content"]), Weather)


# -- the cases themselves ----------------------------------------------------------------------


def test_case_tools_are_valid_schemas_with_unique_names() -> None:
    names = tool_names(TOOLBOX)
    assert len(set(names)) == len(names)
    for tool in TOOLBOX:
        Draft202012Validator.check_schema(parameters_of(tool))
    assert {case.right_tool for case in CASES} - {None} <= set(names)
