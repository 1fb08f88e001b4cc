"""The playground's "view code": the same chat call written for three client SDKs (`openai`,
`azure-ai-inference`, `mistralai`) against this gateway's URL, the key read from the environment
(never the signed-in person's key)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from modelyard.auth.authenticator import PROJECT_HEADER

KEY_FROM_ENV = 'os.environ["MODELYARD_API_KEY"]'
WIDTH = 88


@dataclass(frozen=True)
class Raw:
    """Python source written as is (an expression, not a value)."""

    source: str


@dataclass(frozen=True)
class Call:
    """A call expression, `function(*args, **kwargs)`, laid out like a formatter would."""

    function: str
    args: tuple[Any, ...] = ()
    kwargs: tuple[tuple[str, Any], ...] = ()


def python(value: Any, indent: int = 0, lead: int = 0) -> str:
    """`value` (JSON data, `Raw` or `Call`) as Python source, starting `lead` columns after
    `indent`: on one line when it fits in WIDTH columns, else one item per line."""
    flat = _flat(value)
    if indent + lead + len(flat) <= WIDTH or not isinstance(value, dict | list | Call) or not value:
        return flat
    inner = indent + 4
    if isinstance(value, Call):
        items = [python(arg, inner) for arg in value.args] + [
            f"{name}={python(arg, inner, len(name) + 1)}" for name, arg in value.kwargs
        ]
        opening, closing = value.function + "(", ")"
    elif isinstance(value, dict):
        items = [f"{_flat(k)}: {python(v, inner, len(_flat(k)) + 2)}" for k, v in value.items()]
        opening, closing = "{", "}"
    else:
        items = [python(item, inner) for item in value]
        opening, closing = "[", "]"
    lines = "".join(f"{' ' * inner}{item},\n" for item in items)
    return f"{opening}\n{lines}{' ' * indent}{closing}"


def _flat(value: Any) -> str:
    if isinstance(value, Raw):
        return value.source
    if isinstance(value, Call):
        args = [_flat(arg) for arg in value.args]
        args += [f"{name}={_flat(arg)}" for name, arg in value.kwargs]
        return f"{value.function}({', '.join(args)})"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_flat(k)}: {_flat(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flat(item) for item in value) + "]"
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, str):
        # A JSON string literal is a Python one too (same escapes), and reads more naturally.
        return orjson.dumps(value).decode()
    return repr(value)


def _program(imports: list[str], client: Call, answer: str, request: Call) -> str:
    lines = ["import os", "", *imports, "", f"client = {python(client, lead=9)}"]
    lines += [
        f"{answer} = {python(request, lead=len(answer) + 3)}",
        f"print({answer}.choices[0].message)",
    ]
    return "\n".join(lines) + "\n"


def openai_code(body: dict[str, Any], base_url: str, project: str | None) -> str:
    client_args: list[tuple[str, Any]] = [
        ("base_url", f"{base_url}/v1"),
        ("api_key", Raw(KEY_FROM_ENV)),
    ]
    if project:
        client_args.append(("default_headers", {PROJECT_HEADER: project}))
    return _program(
        ["from openai import OpenAI"],
        Call("OpenAI", kwargs=tuple(client_args)),
        "completion",
        Call("client.chat.completions.create", kwargs=tuple(body.items())),
    )


def mistral_code(body: dict[str, Any], base_url: str, project: str | None) -> str:
    # Mistral's SDK spells the seed `random_seed`; the rest has OpenAI's shape.
    kwargs = [("random_seed" if name == "seed" else name, value) for name, value in body.items()]
    if project:
        kwargs.append(("http_headers", {PROJECT_HEADER: project}))
    return _program(
        ["from mistralai.client import Mistral"],
        Call("Mistral", kwargs=(("server_url", base_url), ("api_key", Raw(KEY_FROM_ENV)))),
        "response",
        Call("client.chat.complete", kwargs=tuple(kwargs)),
    )


def azure_code(body: dict[str, Any], base_url: str, project: str | None) -> str:
    """azure-ai-inference takes its own model classes for messages, tools and formats."""
    used: set[str] = set()
    kwargs: list[tuple[str, Any]] = []
    for name, value in body.items():
        if name == "messages":
            classes = [("SystemMessage" if m["role"] == "system" else "UserMessage") for m in value]
            used.update(classes)
            value = [Call(cls, (m["content"],)) for cls, m in zip(classes, value, strict=True)]
        elif name == "tools" and isinstance(value, list):
            value = [_azure_tool(tool, used) for tool in value]
        elif name == "tool_choice":
            value = _azure_tool_choice(value, used)
        elif name == "response_format":
            value = _azure_format(value, used)
        kwargs.append((name, value))
    client_args: list[tuple[str, Any]] = [
        ("endpoint", f"{base_url}/models"),
        ("credential", Call("AzureKeyCredential", (Raw(KEY_FROM_ENV),))),
    ]
    if project:
        client_args.append(("headers", {PROJECT_HEADER: project}))
    return _program(
        [
            "from azure.ai.inference import ChatCompletionsClient",
            _import("azure.ai.inference.models", sorted(used)),
            "from azure.core.credentials import AzureKeyCredential",
        ],
        Call("ChatCompletionsClient", kwargs=tuple(client_args)),
        "response",
        Call("client.complete", kwargs=tuple(kwargs)),
    )


def _import(module: str, names: list[str]) -> str:
    line = f"from {module} import {', '.join(names)}"
    if len(line) <= WIDTH:
        return line
    return f"from {module} import (\n" + "".join(f"    {name},\n" for name in names) + ")"


def _azure_tool(tool: Any, used: set[str]) -> Any:
    function = tool.get("function") if isinstance(tool, dict) else None
    if not isinstance(function, dict) or tool.get("type") != "function":
        return tool
    used.update({"ChatCompletionsToolDefinition", "FunctionDefinition"})
    fields = tuple((k, function[k]) for k in ("name", "description", "parameters") if k in function)
    definition = Call("FunctionDefinition", kwargs=fields)
    return Call("ChatCompletionsToolDefinition", kwargs=(("function", definition),))


def _azure_tool_choice(choice: Any, used: set[str]) -> Any:
    function = choice.get("function") if isinstance(choice, dict) else None
    if not isinstance(function, dict) or "name" not in function:
        return choice  # "auto", "none", "required"
    used.update({"ChatCompletionsNamedToolChoice", "ChatCompletionsNamedToolChoiceFunction"})
    named = Call("ChatCompletionsNamedToolChoiceFunction", kwargs=(("name", function["name"]),))
    return Call("ChatCompletionsNamedToolChoice", kwargs=(("function", named),))


def _azure_format(response_format: Any, used: set[str]) -> Any:
    if not isinstance(response_format, dict):
        return response_format
    kind = response_format.get("type")
    schema = response_format.get("json_schema")
    if kind == "json_schema" and isinstance(schema, dict):
        used.add("JsonSchemaFormat")
        fields = tuple(
            (k, schema[k]) for k in ("name", "schema", "description", "strict") if k in schema
        )
        return Call("JsonSchemaFormat", kwargs=fields)
    return kind if kind in ("text", "json_object") else response_format
