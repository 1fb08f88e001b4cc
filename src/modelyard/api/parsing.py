"""Read a JSON request body into a wire model, turning every failure into a 400 that names the
parameter (`messages[0].role`) and never echoes the prompt back."""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from modelyard.errors import InvalidParameter, MalformedJson, UnsupportedParameter

M = TypeVar("M", bound=BaseModel)

_NOT_JSON = (
    "The request body is not valid JSON. Send one JSON object with "
    "'Content-Type: application/json'."
)
_NOT_FINITE = (
    "The request body is not valid JSON: NaN, Infinity and numbers too large for a double are "
    "not JSON numbers."
)
_TOO_LONG_INTEGER = (
    "The request body holds an integer beyond 64 bits; no parameter takes one (send it as a "
    "string or a float)."
)
# What pydantic's parser accepts but JSON does not (NaN, Infinity, 1e400), and integers no
# encoder on the way to a model can write: bodies that contain such text are checked by a
# strict parser; others skip the second parse.
_MAYBE_NOT_FINITE = re.compile(rb"NaN|Infinity|[0-9][eE][+-]?[0-9]{3}|[0-9]{19}")
_LONG_DIGITS = re.compile(rb"[0-9]{19}")


async def read_model(request: Request, model: type[M], unsupported: frozenset[str]) -> M:
    return parse_model(await request.body(), model, unsupported)


def parse_model(
    body: bytes, model: type[M], unsupported: frozenset[str], *, allow_extras: bool = False
) -> M:
    """Validate `body`; keys the model does not define are refused unless `allow_extras`."""
    _require_finite(body)
    try:
        parsed = model.model_validate_json(body)
    except ValidationError as exc:
        raise _describe(exc, body) from None
    extras = parsed.model_extra or {}
    if extras and not allow_extras:
        raise _unexpected(extras, unsupported)
    return parsed


def json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object, for surfaces that rewrite it before validation."""
    try:
        raw = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise MalformedJson(_NOT_JSON) from None
    if not isinstance(raw, dict):
        raise MalformedJson("The request body must be a JSON object.")
    return raw


def _require_finite(body: bytes) -> None:
    if _MAYBE_NOT_FINITE.search(body) is None:
        return
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError:
        raise MalformedJson(_NOT_FINITE) from None
    if _LONG_DIGITS.search(body) is not None:
        try:
            json.loads(body, parse_int=_int64)  # digits in strings match too: parse to know
        except ValueError:
            raise MalformedJson(_TOO_LONG_INTEGER) from None


def _int64(text: str) -> int:
    value = int(text)
    if not -(2**63) <= value < 2**64:
        raise ValueError(text)
    return value


def _unexpected(extras: dict[str, Any], unsupported: frozenset[str]) -> UnsupportedParameter:
    known = sorted(name for name in extras if name in unsupported)
    if known:
        names = ", ".join(f"'{name}'" for name in known)
        return UnsupportedParameter(
            f"Modelyard does not support {names} on this endpoint yet; remove "
            f"{'it' if len(known) == 1 else 'them'} from the request.",
            param=known[0],
        )
    unknown = sorted(extras)
    names = ", ".join(f"'{name}'" for name in unknown)
    return UnsupportedParameter(
        f"Unrecognized request argument supplied: {names}.", param=unknown[0]
    )


def _describe(
    exc: ValidationError, body: bytes
) -> MalformedJson | InvalidParameter | UnsupportedParameter:
    errors = exc.errors(include_url=False, include_input=False)
    if errors and errors[0]["type"] == "json_invalid":
        return MalformedJson(_NOT_JSON)
    extra = sorted(
        str(e["loc"][0]) for e in errors if e["type"] == "extra_forbidden" and len(e["loc"]) == 1
    )
    if extra:
        # Top-level unknown fields of models that forbid extras (the admin API) are named as
        # they are for models that allow extras and refuse them here.
        return _unexpected(dict.fromkeys(extra), frozenset())
    try:
        raw = orjson.loads(body)
    except orjson.JSONDecodeError:
        return MalformedJson(_NOT_JSON)
    if not isinstance(raw, dict):
        return MalformedJson("The request body must be a JSON object.")
    by_param: dict[str, list[str]] = {}
    for error in errors:
        param = _param_path(raw, error["loc"], error["type"] == "missing")
        message = error["msg"]
        if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
            context = error.get("ctx", {})
            tag = str(context.get("discriminator", "")).strip("'")
            param = f"{param}.{tag}" if param else tag
            # pydantic's message quotes the value sent; ours names only what is accepted.
            message = f"must be one of: {context.get('expected_tags', '')}".rstrip(": ")

        messages = by_param.setdefault(param, [])
        if message not in messages:
            messages.append(message)
    # With unions, the deepest location is where the input came closest to a valid shape.
    param = max(by_param, key=lambda path: path.count(".") + path.count("["))
    messages = by_param[param]
    return InvalidParameter(f"Invalid value for '{param}': {'; or '.join(messages)}.", param=param)


def _param_path(raw: Any, loc: tuple[int | str, ...], missing: bool) -> str:
    """The path of `loc` through the request body, skipping pydantic's union-member labels."""
    path = ""
    node = raw
    for position, part in enumerate(loc):
        if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            path += f"[{part}]"
            node = node[part]
        elif isinstance(node, dict) and isinstance(part, str):
            if part in node:
                path += f".{part}" if path else part
                node = node[part]
            elif missing and position == len(loc) - 1:
                path += f".{part}" if path else part
        # Anything else is a label pydantic adds for union members ('str', 'user', ...).
    return path
