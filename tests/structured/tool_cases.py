"""Tool-calling cases shared by the suite (`test_tool_calling.py`) and the accuracy report
(`tool_accuracy.py`): the tools, the prompts, which tool is the right one, and what makes a
returned call valid.

Tools are plain dicts in the OpenAI wire shape, which the Mistral SDK and LangChain also accept.
Every string parameter that the model fills freely has a `maxLength`, so a forced call always
fits in a small `max_tokens` on the tiny local model. Whether the model picks the *right* tool
is its quality, not the gateway's; only validity (declared name, arguments that parse and match
the schema) is the gateway's promise.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker

ToolDef = dict[str, Any]


def function_tool(name: str, description: str, parameters: dict[str, Any] | None) -> ToolDef:
    """An OpenAI `tools[]` entry; `parameters=None` leaves the key out (a no-argument tool)."""
    function: dict[str, Any] = {"name": name, "description": description}
    if parameters is not None:
        function["parameters"] = parameters
    return {"type": "function", "function": function}


def _object(properties: dict[str, Any], required: Sequence[str] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


def _text(max_length: int, description: str = "") -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "maxLength": max_length}
    if description:
        schema["description"] = description
    return schema


CURRENCIES = ["USD", "EUR", "GBP", "JPY"]
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]

GET_WEATHER = function_tool(
    "get_weather",
    "Get the current weather in a city.",
    _object(
        {
            "city": _text(40, "City name, e.g. Paris"),
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        required=["city"],
    ),
)
GET_TIME = function_tool(
    "get_time",
    "Get the current local time in a timezone.",
    _object({"timezone": _text(40, "IANA timezone, e.g. Europe/Paris")}, required=["timezone"]),
)
CONVERT_CURRENCY = function_tool(
    "convert_currency",
    "Convert an amount of money from one currency to another.",
    _object(
        {
            "amount": {"type": "number", "minimum": 0, "maximum": 1_000_000_000},
            "from_currency": {"type": "string", "enum": CURRENCIES},
            "to_currency": {"type": "string", "enum": CURRENCIES},
        },
        required=["amount", "from_currency", "to_currency"],
    ),
)
SEND_EMAIL = function_tool(
    "send_email",
    "Send an email to one or more people.",
    _object(
        {
            "to": {
                "type": "array",
                "items": {"type": "string", "format": "email", "maxLength": 40},
                "minItems": 1,
                "maxItems": 3,
            },
            "subject": _text(40),
            "body": _text(80),
        },
        required=["to", "subject"],
    ),
)
# Nested objects, an array of $ref'd objects, a date format and integer bounds.
CREATE_EVENT = function_tool(
    "create_event",
    "Create a calendar event with attendees.",
    {
        "type": "object",
        "$defs": {
            "person": _object(
                {
                    "name": _text(20),
                    "email": {"type": "string", "format": "email", "maxLength": 40},
                },
                required=["name"],
            )
        },
        "properties": {
            "title": _text(30),
            "date": {"type": "string", "format": "date"},
            "attendees": {"type": "array", "items": {"$ref": "#/$defs/person"}, "maxItems": 3},
            "location": _object(
                {"city": _text(20), "room": {"type": "integer", "minimum": 1, "maximum": 999}},
                required=["city"],
            ),
        },
        "required": ["title", "date", "attendees"],
        "additionalProperties": False,
    },
)
# A pattern, a nullable anyOf and an array of enum values.
SET_ALARM = function_tool(
    "set_alarm",
    "Set an alarm clock.",
    _object(
        {
            "time": {"type": "string", "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$"},
            "label": {"anyOf": [_text(20), {"type": "null"}]},
            "days": {"type": "array", "items": {"enum": WEEKDAYS}, "maxItems": 7},
        },
        required=["time"],
    ),
)
# No `parameters` key at all, and an explicitly empty object: both mean "no arguments".
GET_JOKE = function_tool("get_joke", "Tell a random joke.", None)
LIST_TODOS = function_tool(
    "list_todos", "List the user's open to-do items.", {"type": "object", "properties": {}}
)

TOOLBOX: tuple[ToolDef, ...] = (
    GET_WEATHER,
    GET_TIME,
    CONVERT_CURRENCY,
    SEND_EMAIL,
    CREATE_EVENT,
    SET_ALARM,
    GET_JOKE,
    LIST_TODOS,
)
TOOLS_BY_NAME: dict[str, ToolDef] = {tool["function"]["name"]: tool for tool in TOOLBOX}

# A tool whose parameters use a keyword the gateway cannot enforce (`uniqueItems`): a 400.
UNENFORCEABLE_TOOL = function_tool(
    "tag_items",
    "Tag items.",
    _object({"tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True}}),
)


@dataclass(frozen=True)
class ToolCase:
    """One user request and the tool that answers it (None: no tool is needed)."""

    prompt: str
    right_tool: str | None

    @property
    def id(self) -> str:
        return self.right_tool or "no_tool"


CASES: tuple[ToolCase, ...] = (
    ToolCase("What's the weather like in Paris right now?", "get_weather"),
    ToolCase("Is it raining in Tokyo today?", "get_weather"),
    ToolCase("How hot is it in Cairo, in fahrenheit?", "get_weather"),
    ToolCase("What time is it in New York?", "get_time"),
    ToolCase("Tell me the current time in the Europe/Berlin timezone.", "get_time"),
    ToolCase("Convert 100 US dollars to euros.", "convert_currency"),
    ToolCase("How many Japanese yen is 50 British pounds?", "convert_currency"),
    ToolCase("Email bob@example.com with the subject 'Lunch' to ask about lunch.", "send_email"),
    ToolCase("Send an email to alice@example.org saying the report is ready.", "send_email"),
    ToolCase(
        "Schedule a meeting called Budget review on 2026-12-01 with Ann and Bob.", "create_event"
    ),
    ToolCase("Put a team lunch in my calendar on 2026-12-05 in Lyon.", "create_event"),
    ToolCase("Set an alarm for 07:30 on weekdays.", "set_alarm"),
    ToolCase("Wake me up at 06:15 tomorrow.", "set_alarm"),
    ToolCase("Tell me a joke.", "get_joke"),
    ToolCase("Make me laugh with something funny.", "get_joke"),
    ToolCase("What's on my to-do list?", "list_todos"),
    ToolCase("Show me my open tasks.", "list_todos"),
    ToolCase("Hi! How are you today?", None),
    ToolCase("Write one sentence about the sea.", None),
    ToolCase("What is two plus two?", None),
)


def tool_names(tools: Iterable[Mapping[str, Any]]) -> list[str]:
    return [tool["function"]["name"] for tool in tools]


def parameters_of(tool: Mapping[str, Any]) -> dict[str, Any]:
    """The schema a call's arguments must match; no `parameters` means an empty object."""
    parameters: dict[str, Any] | None = tool["function"].get("parameters")
    return parameters if parameters is not None else {"type": "object", "properties": {}}


def call_problem(name: object, arguments: object, tools: Sequence[Mapping[str, Any]]) -> str | None:
    """Why one returned call is invalid for the declared `tools`, or None when it is valid:
    it names a declared tool, and its arguments are a JSON *string* matching that tool's schema.
    """
    declared = {tool["function"]["name"]: tool for tool in tools}
    if name not in declared:
        return f"called {name!r}, which is not one of {sorted(declared)}"
    if not isinstance(arguments, str):
        return f"arguments of {name} are a {type(arguments).__name__}, not a JSON string"
    try:
        value = json.loads(arguments)
    except json.JSONDecodeError as exc:
        return f"arguments of {name} are not JSON ({exc}): {arguments!r}"
    validator = Draft202012Validator(parameters_of(declared[name]), format_checker=FormatChecker())
    errors = sorted(validator.iter_errors(value), key=lambda error: list(error.path))
    if errors:
        return f"arguments of {name} do not match its schema: {errors[0].message} in {arguments}"
    return None
