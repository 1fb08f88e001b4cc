"""Which JSON Schema keywords the gateway can enforce, checked before any generation.

A schema that uses a keyword the decoder cannot enforce is refused with a 400 naming the keyword
and its location (`#/properties/tags`), never silently relaxed. Annotations (title, description,
examples, ...) are allowed anywhere because they do not constrain output. So is a schema that
refers to itself without describing a value first (`{"$ref": "#"}`, or an `anyOf` whose first
member is the schema itself): no value can ever be checked against it, and checking one would
recurse forever. Schemas nested deeper than `MAX_DEPTH` are refused too.
"""

from __future__ import annotations

from typing import Any

from modelyard.errors import UnsupportedSchema

ENFORCED = frozenset(
    {
        "type", "properties", "required", "additionalProperties", "patternProperties",
        "minProperties", "maxProperties", "items", "prefixItems", "additionalItems",
        "minItems", "maxItems", "enum", "const", "anyOf", "oneOf", "allOf", "$ref", "$defs",
        "definitions", "pattern", "format", "minLength", "maxLength", "minimum", "maximum",
        "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
    }
)  # fmt: skip
ANNOTATIONS = frozenset(
    {
        "title", "description", "default", "examples", "$schema", "$id", "$comment",
        "deprecated", "readOnly", "writeOnly", "contentEncoding", "contentMediaType",
        "discriminator",
    }
)  # fmt: skip
FORMATS = frozenset(
    {"date-time", "date", "time", "duration", "email", "hostname", "ipv4", "ipv6", "uuid", "uri"}
)
TYPES = frozenset({"object", "array", "string", "number", "integer", "boolean", "null"})
MAX_DEPTH = 64
_SUBSCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions")
_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SUBSCHEMA_SINGLE = ("additionalProperties", "additionalItems", "items")


def check_schema(schema: Any, param: str) -> None:
    """Raise UnsupportedSchema (400) naming the first keyword the gateway cannot enforce."""
    if not isinstance(schema, dict):
        raise UnsupportedSchema(
            f"The JSON schema must be an object; got {type(schema).__name__}.", param=param
        )
    nodes: dict[str, Any] = {}
    _check(schema, "#", param, nodes)
    loop = _self_reference(nodes)
    if loop is not None:
        raise UnsupportedSchema(
            f"The JSON schema at '{loop}' refers back to itself without describing any value "
            "in between (through $ref, anyOf, oneOf or allOf only), so no value can match it.",
            param=param,
        )


def _check(schema: Any, path: str, param: str, nodes: dict[str, Any]) -> None:
    if path.count("/") > MAX_DEPTH * 2:
        raise UnsupportedSchema(
            f"The JSON schema is nested too deeply at '{path[:200]}' (more than {MAX_DEPTH} "
            "levels).",
            param=param,
        )
    nodes[path] = schema
    if isinstance(schema, bool):
        return
    if not isinstance(schema, dict):
        raise UnsupportedSchema(
            f"The JSON schema at '{path}' must be an object or a boolean.", param=param
        )
    for keyword, value in schema.items():
        if keyword in ANNOTATIONS:
            continue
        if keyword not in ENFORCED:
            raise UnsupportedSchema(
                f"The JSON schema keyword '{keyword}' at '{path}' cannot be enforced by this "
                f"gateway; remove it or express the constraint with supported keywords.",
                param=param,
            )
        _check_value(keyword, value, f"{path}/{_escape(keyword)}", param)
    for keyword in _SUBSCHEMA_MAPS:
        for name, subschema in (schema.get(keyword) or {}).items():
            _check(subschema, f"{path}/{keyword}/{_escape(name)}", param, nodes)
    for keyword in _SUBSCHEMA_LISTS:
        for index, subschema in enumerate(schema.get(keyword) or []):
            _check(subschema, f"{path}/{keyword}/{index}", param, nodes)
    for keyword in _SUBSCHEMA_SINGLE:
        value = schema.get(keyword)
        if isinstance(value, list):
            for index, subschema in enumerate(value):
                _check(subschema, f"{path}/{keyword}/{index}", param, nodes)
        elif value is not None:
            _check(value, f"{path}/{keyword}", param, nodes)


def _self_reference(nodes: dict[str, Any]) -> str | None:
    """A subschema that, following only keywords that apply to the same value ($ref and the
    combinators), reaches itself again; None when there is none."""

    def same_value(path: str) -> list[str]:
        schema = nodes[path]
        if not isinstance(schema, dict):
            return []
        following = [
            f"{path}/{keyword}/{index}"
            for keyword in ("anyOf", "oneOf", "allOf")
            for index in range(len(schema.get(keyword) or []))
        ]
        reference = schema.get("$ref")
        if isinstance(reference, str) and reference in nodes:
            following.append(reference)
        return following

    done: set[str] = set()
    for start in nodes:
        if start in done:
            continue
        # Iterative depth-first search: a schema may be deep, the Python stack is not.
        visiting = {start}
        stack = [(start, iter(same_value(start)))]
        while stack:
            path, following = stack[-1]
            target = next(following, None)
            if target is None:
                stack.pop()
                visiting.discard(path)
                done.add(path)
            elif target in visiting:
                return target
            elif target not in done:
                visiting.add(target)
                stack.append((target, iter(same_value(target))))
    return None


def _check_value(keyword: str, value: Any, path: str, param: str) -> None:
    if keyword == "format" and value not in FORMATS:
        supported = ", ".join(sorted(FORMATS))
        raise UnsupportedSchema(
            f"The string format '{value}' at '{path}' cannot be enforced; supported: {supported}.",
            param=param,
        )
    if keyword == "type":
        names = value if isinstance(value, list) else [value]
        unknown = [name for name in names if name not in TYPES]
        if unknown:
            raise UnsupportedSchema(f"Unknown JSON type {unknown[0]!r} at '{path}'.", param=param)
    if keyword == "$ref" and not (isinstance(value, str) and value.startswith("#")):
        raise UnsupportedSchema(
            f"Only local references ('#/$defs/...') are supported; '{value}' at '{path}' is not.",
            param=param,
        )
    if keyword in _SUBSCHEMA_MAPS and not isinstance(value, dict):
        raise UnsupportedSchema(f"'{keyword}' at '{path}' must be an object.", param=param)
    if keyword in _SUBSCHEMA_LISTS and not isinstance(value, list):
        raise UnsupportedSchema(f"'{keyword}' at '{path}' must be an array.", param=param)


def _escape(segment: str) -> str:
    """A JSON Pointer segment (RFC 6901): '~' and '/' inside names are escaped."""
    return segment.replace("~", "~0").replace("/", "~1")
