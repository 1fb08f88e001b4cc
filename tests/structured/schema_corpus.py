"""JSON schemas that real clients send, with a prompt each, for the structured-output suite.

`SUPPORTED` holds schemas the gateway must enforce, from flat objects to recursive trees: hand
written ones, ones the `openai` SDK's `.parse()` derives from pydantic models
(`to_strict_json_schema`, exactly what it sends) and ones LangChain derives for
`with_structured_output`. `UNSUPPORTED` holds schemas the gateway must refuse up front, each with
the keyword (or format, or type) the error must name and the JSON pointer of where it sits.

Every schema bounds its output (maxLength, maxItems, enums, few decimals), because the bundled
model is tiny: an unbounded string, array or number can loop until `max_tokens`, and an answer
cut there is not validated. A schema that loops is fixed by bounding it, never by relaxing a test.
No schema can bound the depth of recursion, so the recursive entries' prompts show the structure.
"""

from __future__ import annotations

import datetime
import enum
import ipaddress
import uuid
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from langchain_core.utils.function_calling import convert_to_json_schema, convert_to_openai_tool
from openai.lib._pydantic import to_strict_json_schema
from pydantic import AnyUrl, BaseModel, Field
from typing_extensions import TypedDict

Schema = dict[str, Any]


@dataclass(frozen=True)
class CorpusSchema:
    """A schema the gateway enforces, and a user prompt that makes sense for it."""

    name: str
    schema: Schema
    prompt: str


@dataclass(frozen=True)
class UnsupportedCase:
    """A schema the gateway refuses; the error message must name `names` and `location`."""

    name: str
    schema: Schema
    names: str
    location: str


def obj(properties: dict[str, Any], optional: tuple[str, ...] = ()) -> Schema:
    """A closed object whose properties are all required except `optional`."""
    return {
        "type": "object",
        "properties": properties,
        "required": [key for key in properties if key not in optional],
        "additionalProperties": False,
    }


def text(max_length: int = 40, **extra: Any) -> Schema:
    return {"type": "string", "maxLength": max_length, **extra}


def integer(minimum: int, maximum: int, **extra: Any) -> Schema:
    return {"type": "integer", "minimum": minimum, "maximum": maximum, **extra}


# --- pydantic models, as the openai SDK's `.parse(response_format=Model)` sees them ----------

Name = Annotated[str, Field(max_length=40)]


class Priority(enum.StrEnum):
    low = "low"
    medium = "medium"
    high = "high"


class CalendarEvent(BaseModel):
    """The example from OpenAI's structured-outputs guide, with its list bounded."""

    name: Name
    date: Annotated[str, Field(max_length=20)]
    participants: Annotated[list[Name], Field(max_length=3)]


class Step(BaseModel):
    explanation: Annotated[str, Field(max_length=60)]
    output: Annotated[str, Field(max_length=30)]


class MathReasoning(BaseModel):
    steps: Annotated[list[Step], Field(min_length=1, max_length=2)]
    final_answer: Annotated[str, Field(max_length=20)]


class Address(BaseModel):
    street: Name
    city: Name
    postcode: Annotated[str, Field(pattern=r"^[0-9]{5}$")]


class Customer(BaseModel):
    name: Name
    age: Annotated[int, Field(ge=0, le=120)]
    address: Address
    nickname: Annotated[str, Field(max_length=20)] | None = None


class Ticket(BaseModel):
    title: Name
    priority: Priority
    status: Literal["open", "closed"]
    assignee: Name | None


class Reading(BaseModel):
    sensor_id: uuid.UUID
    taken_at: datetime.datetime
    day: datetime.date
    celsius: Annotated[float, Field(ge=-50, le=60)]
    location: tuple[float, float]


class Endpoint(BaseModel):
    host: ipaddress.IPv4Address
    port: Annotated[int, Field(ge=1, le=65535)]
    secure: bool


class Inventory(BaseModel):
    """A pydantic `dict[str, int]`, bounded to a few entries."""

    counts: Annotated[dict[str, Annotated[int, Field(ge=0, le=999)]], Field(max_length=3)]


class Glossary(BaseModel):
    """Constrained dict keys become propertyNames, which the gateway cannot enforce."""

    terms: dict[Annotated[str, Field(max_length=12)], str]


class Link(BaseModel):
    url: Annotated[AnyUrl, Field(max_length=40)]
    label: Name


class TaggedNote(BaseModel):
    """Sets become uniqueItems, which the gateway cannot enforce."""

    text: Name
    tags: set[str]


class Category(BaseModel):
    """A recursive model, as pydantic emits it: the class in `$defs`, referring to itself."""

    name: Annotated[str, Field(max_length=20)]
    subcategories: Annotated[list[Category], Field(max_length=1)]


# --- LangChain's shapes for `with_structured_output` -------------------------------------


class Joke(TypedDict):
    """Joke to tell user."""

    setup: Annotated[str, ..., "The setup of the joke, under 60 characters"]
    punchline: Annotated[str, ..., "The punchline of the joke, under 60 characters"]


class Weather(BaseModel):
    """Weather in a city."""

    city: Name = Field(description="The city name")
    condition: Literal["sunny", "cloudy", "rainy", "snowy"] = Field(description="The sky")
    celsius: Annotated[int, Field(ge=-40, le=50, description="Temperature in Celsius")]


def _langchain_tool_parameters(schema: Any, strict: bool | None = None) -> Schema:
    parameters: Schema = convert_to_openai_tool(schema, strict=strict)["function"]["parameters"]
    return parameters


def _bounded_joke() -> Schema:
    """`strict=True` closes the object; an open one lets the model invent keys forever."""
    schema = _langchain_tool_parameters(Joke, strict=True)
    for prop in schema["properties"].values():
        prop["maxLength"] = 60
    return schema


# --- the corpus ---------------------------------------------------------------------------

# Recursive schemas: nothing bounds their depth, so the model has to stop nesting by itself. The
# value comes before the recursive part, so the model writes the payload first; asked to describe
# a tree freely, SmolLM2 nests forever, so the prompts give the structure to copy.
TREE: Schema = {
    "$defs": {
        "node": {
            "type": "object",
            "properties": {
                "label": text(16),
                "subtrees": {"type": "array", "items": {"$ref": "#/$defs/node"}, "maxItems": 2},
            },
            "required": ["label", "subtrees"],
            "additionalProperties": False,
        }
    },
    "$ref": "#/$defs/node",
}

LINKED_LIST: Schema = {
    "type": "object",
    "properties": {
        "head": integer(0, 9),
        "tail": {"anyOf": [{"$ref": "#"}, {"type": "null"}]},
    },
    "required": ["head", "tail"],
    "additionalProperties": False,
}

SUPPORTED: tuple[CorpusSchema, ...] = (
    # flat objects and scalars
    CorpusSchema(
        "flat_strings",
        obj({"name": text(), "city": text()}),
        "Alice lives in Paris. Give her name and city.",
    ),
    CorpusSchema(
        "flat_mixed_scalars",
        obj(
            {
                "name": text(),
                "age": integer(0, 120),
                "height_m": {"type": "number", "minimum": 0.5, "maximum": 2.5},
                "member": {"type": "boolean"},
            }
        ),
        "Bob is 34 years old, 1.8 metres tall and a club member.",
    ),
    CorpusSchema("boolean_answer", obj({"answer": {"type": "boolean"}}), "Is water wet?"),
    CorpusSchema(
        "integer_bounds", obj({"count": integer(1, 10)}), "How many legs does a spider have?"
    ),
    CorpusSchema(
        "negative_integer_range",
        obj({"celsius": integer(-60, -1)}),
        "What is a typical winter temperature in Antarctica, in Celsius?",
    ),
    CorpusSchema(
        "exclusive_number_bounds",
        obj({"probability": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1}}),
        "What is the probability that a fair coin lands heads?",
    ),
    CorpusSchema(
        "integer_multiple_of",
        obj({"minutes": integer(0, 120, multipleOf=15)}),
        "How long is a football half, rounded to a quarter hour, in minutes?",
    ),
    CorpusSchema(
        "number_multiple_of_half",
        obj({"rating": {"type": "number", "multipleOf": 0.5, "minimum": 0, "maximum": 5}}),
        "Rate the movie Jaws from 0 to 5 stars, in half-star steps.",
    ),
    CorpusSchema(
        "string_length_bounds",
        obj({"slogan": text(30, minLength=5)}),
        "Write a short slogan for a bakery.",
    ),
    CorpusSchema(
        "annotations_everywhere",
        {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": "https://example.com/schemas/book.json",
            "$comment": "annotations do not constrain output",
            "title": "Book",
            "description": "A book on a shelf.",
            **obj(
                {
                    "title": text(description="The title", examples=["Dune"]),
                    "year": integer(1400, 2030, default=2000, deprecated=False),
                    "isbn": text(20, readOnly=True),
                }
            ),
        },
        "Describe the novel Dune by Frank Herbert.",
    ),
    CorpusSchema(
        "optional_property",
        obj({"name": text(), "email": text(60, format="email")}, optional=("email",)),
        "Give the name of a fictional pirate.",
    ),
    CorpusSchema(
        "empty_closed_object",
        {"type": "object", "properties": {}, "additionalProperties": False},
        "Reply with an empty object.",
    ),
    CorpusSchema(
        "open_object_bounded",
        {
            "type": "object",
            "properties": {"id": integer(1, 99)},
            "required": ["id"],
            "maxProperties": 2,
        },
        "Give an id for a new user.",
    ),
    # enums and consts
    CorpusSchema(
        "string_enum",
        obj({"color": {"enum": ["red", "green", "blue"]}}),
        "What colour is grass?",
    ),
    CorpusSchema(
        "mixed_enum",
        obj({"level": {"enum": ["low", 2, 3.5, True, None]}}),
        "Pick a level.",
    ),
    CorpusSchema(
        "integer_enum",
        obj({"dice": {"type": "integer", "enum": [1, 2, 3, 4, 5, 6]}}),
        "Roll a die.",
    ),
    CorpusSchema(
        "const_fields",
        obj({"kind": {"const": "event"}, "version": {"const": 2}, "title": text()}),
        "Record an event called launch day.",
    ),
    CorpusSchema(
        "top_level_enum",
        {"type": "string", "enum": ["positive", "negative", "neutral"]},
        "Classify the sentiment: I love this phone!",
    ),
    CorpusSchema("top_level_integer", integer(1, 100), "Pick a number between 1 and 100."),
    CorpusSchema(
        "top_level_number",
        {"type": "number", "minimum": 0, "maximum": 10, "multipleOf": 0.25},
        "What is the square root of 16?",
    ),
    # arrays
    CorpusSchema(
        "top_level_string_array",
        {"type": "array", "items": text(20), "minItems": 2, "maxItems": 4},
        "List some fruits.",
    ),
    CorpusSchema(
        "top_level_object_array",
        {"type": "array", "items": obj({"name": text(20), "qty": integer(1, 9)}), "maxItems": 3},
        "List a shopping basket: apples and bread.",
    ),
    CorpusSchema(
        "array_item_bounds",
        obj({"tags": {"type": "array", "items": text(15), "minItems": 1, "maxItems": 3}}),
        "Tag this article: a recipe for vegan chocolate cake.",
    ),
    CorpusSchema(
        "exact_length_array",
        obj({"rgb": {"type": "array", "items": integer(0, 255), "minItems": 3, "maxItems": 3}}),
        "Give the RGB components of pure orange.",
    ),
    CorpusSchema(
        "array_of_enums",
        obj(
            {
                "toppings": {
                    "type": "array",
                    "items": {"enum": ["cheese", "ham", "pineapple", "olives"]},
                    "maxItems": 3,
                }
            }
        ),
        "Choose pizza toppings for a Hawaiian pizza.",
    ),
    CorpusSchema(
        "tuple_prefix_items",
        obj(
            {
                "point": {
                    "type": "array",
                    "prefixItems": [
                        {"type": "number", "minimum": -90, "maximum": 90},
                        {"type": "number", "minimum": -180, "maximum": 180},
                    ],
                    "items": False,
                    "minItems": 2,
                }
            }
        ),
        "Give the latitude and longitude of London.",
    ),
    CorpusSchema(
        "nested_arrays_matrix",
        obj(
            {
                "matrix": {
                    "type": "array",
                    "items": {
                        "type": "array",
                        "items": integer(0, 9),
                        "minItems": 2,
                        "maxItems": 2,
                    },
                    "minItems": 2,
                    "maxItems": 2,
                }
            }
        ),
        "Give the 2x2 identity matrix.",
    ),
    CorpusSchema(
        "empty_array_allowed",
        obj({"errors": {"type": "array", "items": text(30), "maxItems": 2}}),
        "Validate the input 'hello'. List any errors.",
    ),
    # nesting
    CorpusSchema(
        "nested_object",
        obj({"name": text(), "address": obj({"street": text(), "city": text()})}),
        "Carol lives at 5 Main Street, Springfield.",
    ),
    CorpusSchema(
        "deeply_nested",
        obj({"a": obj({"b": obj({"c": obj({"d": obj({"leaf": integer(0, 9)})})})})}),
        "Put the number 7 in the leaf.",
    ),
    CorpusSchema(
        "order_with_line_items",
        obj(
            {
                "order_id": {"type": "string", "pattern": "^ORD-[0-9]{4}$"},
                "items": {
                    "type": "array",
                    "items": obj(
                        {
                            "sku": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{3}$"},
                            "quantity": integer(1, 10),
                            "unit_price": {"type": "number", "minimum": 0, "maximum": 1000},
                        }
                    ),
                    "minItems": 1,
                    "maxItems": 2,
                },
                "paid": {"type": "boolean"},
            }
        ),
        "Order ORD-0042: two widgets at 3.50 each, paid.",
    ),
    # nullable and unions
    CorpusSchema(
        "nullable_type_list",
        obj({"middle_name": {"type": ["string", "null"], "maxLength": 20}, "first": text(20)}),
        "John Smith has no middle name.",
    ),
    CorpusSchema(
        "nullable_any_of",
        obj({"spouse": {"anyOf": [text(30), {"type": "null"}]}, "name": text(30)}),
        "Describe a single person named Dana.",
    ),
    CorpusSchema(
        "any_of_primitives",
        obj({"value": {"anyOf": [integer(0, 1000), text(10), {"type": "boolean"}]}}),
        "What is 12 times 12?",
    ),
    CorpusSchema(
        "type_list_union",
        obj({"answer": {"type": ["integer", "boolean"], "minimum": 0, "maximum": 50}}),
        "How many states are in the USA?",
    ),
    CorpusSchema(
        "one_of_discriminated",
        obj(
            {
                "shape": {
                    "oneOf": [
                        obj({"kind": {"const": "circle"}, "radius": integer(1, 100)}),
                        obj(
                            {
                                "kind": {"const": "rectangle"},
                                "width": integer(1, 100),
                                "height": integer(1, 100),
                            }
                        ),
                    ]
                }
            }
        ),
        "Describe a circle with radius 4.",
    ),
    CorpusSchema(
        "any_of_objects",
        obj(
            {
                "contact": {
                    "anyOf": [
                        obj({"email": text(60, format="email")}),
                        obj({"phone": {"type": "string", "pattern": "^\\+[0-9]{7,12}$"}}),
                    ]
                }
            }
        ),
        "How can I reach support? Use the email help@example.com.",
    ),
    CorpusSchema(
        "all_of_refinement",
        obj({"code": {"allOf": [{"type": "string"}, {"maxLength": 8}, {"pattern": "^[A-Z]+$"}]}}),
        "Give an airport code for London Heathrow.",
    ),
    # references
    CorpusSchema(
        "shared_defs",
        {
            "$defs": {"address": obj({"street": text(), "city": text()})},
            **obj(
                {
                    "billing": {"$ref": "#/$defs/address"},
                    "shipping": {"$ref": "#/$defs/address"},
                }
            ),
        },
        "Bill to 1 High St, Leeds and ship to 9 Low Rd, York.",
    ),
    CorpusSchema(
        "draft7_definitions",
        {
            "definitions": {"money": obj({"amount": integer(0, 10000), "currency": text(3)})},
            **obj({"price": {"$ref": "#/definitions/money"}, "label": text()}),
        },
        "A coffee mug costs 12 EUR.",
    ),
    CorpusSchema(
        "recursive_tree",
        TREE,
        "Copy this tree exactly: "
        '{"label":"Ann","subtrees":[{"label":"Bob","subtrees":[]},{"label":"Cy","subtrees":[]}]}',
    ),
    CorpusSchema(
        "recursive_root_ref",
        LINKED_LIST,
        'Return this linked list as JSON: {"head":1,"tail":{"head":2,"tail":null}}',
    ),
    # objects as maps
    CorpusSchema(
        "pattern_properties_map",
        {
            "type": "object",
            "patternProperties": {"^[a-z]{1,8}$": integer(0, 100)},
            "additionalProperties": False,
            "minProperties": 1,
            "maxProperties": 3,
        },
        "Give the ages of tom and ann.",
    ),
    CorpusSchema(
        "additional_properties_schema",
        {
            "type": "object",
            "additionalProperties": {"type": "number", "minimum": 0, "maximum": 100},
            "maxProperties": 3,
        },
        "Give exam scores for math and art.",
    ),
    # strings with pattern and formats
    CorpusSchema(
        "string_patterns",
        obj(
            {
                "phone": {"type": "string", "pattern": "^[0-9]{3}-[0-9]{4}$"},
                "zip": {"type": "string", "pattern": "^[0-9]{5}$"},
                "hex_colour": {"type": "string", "pattern": "^#[0-9a-f]{6}$"},
            }
        ),
        "The shop's phone is 555-0199, zip 90210, brand colour #ff8800.",
    ),
    CorpusSchema(
        "format_date_and_date_time",
        obj(
            {
                "title": text(),
                "day": {"type": "string", "format": "date"},
                "starts_at": {"type": "string", "format": "date-time", "maxLength": 25},
            }
        ),
        "The product launch is on 3 March 2025 at 10:00 UTC.",
    ),
    CorpusSchema(
        "format_time",
        obj({"starts": {"type": "string", "format": "time", "maxLength": 14}}),
        "The meeting starts at 09:30 UTC.",
    ),
    CorpusSchema(
        "format_duration",
        obj({"length": {"type": "string", "format": "duration", "maxLength": 8}}),
        "The meeting lasts 45 minutes.",
    ),
    CorpusSchema(
        "format_email_and_uri",
        obj(
            {
                "email": {"type": "string", "format": "email", "maxLength": 40},
                "homepage": {"type": "string", "format": "uri", "maxLength": 40},
            }
        ),
        "Jane's email is jane@example.com and her site is https://jane.example.com.",
    ),
    CorpusSchema(
        "format_network_addresses",
        obj(
            {
                "hostname": {"type": "string", "format": "hostname", "maxLength": 30},
                "ipv4": {"type": "string", "format": "ipv4"},
                "ipv6": {"type": "string", "format": "ipv6", "maxLength": 39},
            }
        ),
        "Server db.example.org has address 10.0.0.5 and IPv6 address ::1.",
    ),
    CorpusSchema(
        "format_uuid",
        obj({"request_id": {"type": "string", "format": "uuid"}, "ok": {"type": "boolean"}}),
        "Log a successful request with a new UUID.",
    ),
    # what the openai SDK's `.parse()` sends for pydantic models
    CorpusSchema(
        "pydantic_calendar_event",
        to_strict_json_schema(CalendarEvent),
        "Alice and Bob are going to a science fair on Friday.",
    ),
    CorpusSchema(
        "pydantic_math_reasoning",
        to_strict_json_schema(MathReasoning),
        "Solve 8x + 7 = -23 step by step.",
    ),
    CorpusSchema(
        "pydantic_nested_optional",
        to_strict_json_schema(Customer),
        "Customer Eve, 29, lives at 12 Elm St, Boston 02101, no nickname.",
    ),
    CorpusSchema(
        "pydantic_enum_literal_nullable",
        to_strict_json_schema(Ticket),
        "Open an urgent ticket: the login page is down. Nobody is assigned yet.",
    ),
    CorpusSchema(
        "pydantic_formats_and_tuple",
        to_strict_json_schema(Reading),
        "Sensor 3f2b reported 21.5 C at Berlin (52.5, 13.4) on 2024-05-01 at 12:00.",
    ),
    CorpusSchema(
        "pydantic_ip_address",
        to_strict_json_schema(Endpoint),
        "The API server is at 192.168.1.20 port 8443 over TLS.",
    ),
    CorpusSchema(
        "pydantic_bounded_dict",
        to_strict_json_schema(Inventory),
        "The store has 4 apples and 7 pears.",
    ),
    CorpusSchema(
        "pydantic_url",
        to_strict_json_schema(Link),
        "Link to the Python homepage at https://python.org.",
    ),
    CorpusSchema(
        "pydantic_recursive",
        to_strict_json_schema(Category),
        "Return this category as JSON: "
        '{"name":"Food","subcategories":[{"name":"Fruit","subcategories":[]}]}',
    ),
    # what LangChain sends for `with_structured_output`
    CorpusSchema(
        "langchain_typed_dict_strict",
        _bounded_joke(),
        "Tell me a joke about cats.",
    ),
    CorpusSchema(
        "langchain_pydantic_json_schema",
        convert_to_json_schema(Weather),
        "It is 18 degrees and raining in Dublin.",
    ),
    CorpusSchema(
        "langchain_function_parameters",
        _langchain_tool_parameters(Weather),
        "It is 30 degrees and sunny in Madrid.",
    ),
)


def _deep(path: list[str], leaf: Schema) -> Schema:
    """Nest `leaf` under a chain of `properties` names: a closed object at every level."""
    schema = leaf
    for key in reversed(path):
        schema = obj({key: schema})
    return schema


UNSUPPORTED: tuple[UnsupportedCase, ...] = (
    UnsupportedCase(
        "unique_items",
        obj({"a": {"type": "array", "items": {"type": "string"}, "uniqueItems": True}}),
        "uniqueItems",
        "#/properties/a",
    ),
    UnsupportedCase(
        "pydantic_set_field",
        to_strict_json_schema(TaggedNote),
        "uniqueItems",
        "#/properties/tags",
    ),
    UnsupportedCase(
        "pydantic_constrained_dict_keys",
        to_strict_json_schema(Glossary),
        "propertyNames",
        "#/properties/terms",
    ),
    UnsupportedCase(
        "not_in_array_items",
        obj({"names": {"type": "array", "items": {"type": "string", "not": {"const": "x"}}}}),
        "not",
        "#/properties/names/items",
    ),
    UnsupportedCase(
        "if_then_at_root",
        {"type": "object", "if": {"required": ["a"]}, "then": {"required": ["b"]}},
        "if",
        "#",
    ),
    UnsupportedCase(
        "contains_in_any_of",
        obj({"v": {"anyOf": [{"type": "null"}, {"type": "array", "contains": {"const": 1}}]}}),
        "contains",
        "#/properties/v/anyOf/1",
    ),
    UnsupportedCase(
        "property_names_in_defs",
        {
            "$defs": {"labels": {"type": "object", "propertyNames": {"pattern": "^[a-z]+$"}}},
            **obj({"labels": {"$ref": "#/$defs/labels"}}),
        },
        "propertyNames",
        "#/$defs/labels",
    ),
    UnsupportedCase(
        "dependent_required_in_one_of",
        obj(
            {
                "card": {
                    "oneOf": [
                        {"type": "null"},
                        {
                            "type": "object",
                            "properties": {"number": {"type": "string"}},
                            "dependentRequired": {"number": ["expiry"]},
                        },
                    ]
                }
            }
        ),
        "dependentRequired",
        "#/properties/card/oneOf/1",
    ),
    UnsupportedCase(
        "unevaluated_properties_in_all_of",
        {"allOf": [{"type": "object", "unevaluatedProperties": False}]},
        "unevaluatedProperties",
        "#/allOf/0",
    ),
    UnsupportedCase(
        "unknown_format_deep",
        _deep(["event", "when"], {"type": "string", "format": "weird"}),
        "weird",
        "#/properties/event/properties/when/format",
    ),
    UnsupportedCase(
        "unknown_format_in_defs",
        {
            "$defs": {"stamp": {"type": "string", "format": "unix-time"}},
            **obj({"at": {"$ref": "#/$defs/stamp"}}),
        },
        "unix-time",
        "#/$defs/stamp/format",
    ),
    UnsupportedCase(
        "remote_ref",
        obj({"owner": {"$ref": "https://example.com/schemas/person.json"}}),
        "https://example.com/schemas/person.json",
        "#/properties/owner/$ref",
    ),
    UnsupportedCase(
        "min_contains_in_prefix_items",
        {
            "type": "array",
            "prefixItems": [{"type": "integer"}, {"type": "array", "minContains": 1}],
        },
        "minContains",
        "#/prefixItems/1",
    ),
    UnsupportedCase(
        "dependent_schemas_in_additional_properties",
        {
            "type": "object",
            "additionalProperties": {"type": "object", "dependentSchemas": {"a": {}}},
        },
        "dependentSchemas",
        "#/additionalProperties",
    ),
    UnsupportedCase(
        "draft7_dependencies_in_pattern_properties",
        {"type": "object", "patternProperties": {"^x-": {"dependencies": {"a": ["b"]}}}},
        "dependencies",
        "#/patternProperties/^x-",
    ),
    UnsupportedCase(
        "dynamic_ref_in_definitions",
        {"definitions": {"t": {"$dynamicRef": "#meta"}}, "$ref": "#/definitions/t"},
        "$dynamicRef",
        "#/definitions/t",
    ),
    UnsupportedCase(
        "unknown_type",
        obj({"price": {"type": "float"}}),
        "float",
        "#/properties/price/type",
    ),
)
