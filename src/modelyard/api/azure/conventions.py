"""What every Azure-family request carries: `api-version`, the `extra-parameters` policy, and a
way to name the model outside the body (`azureml-model-deployment`, or the path)."""

from __future__ import annotations

import enum
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel
from starlette.requests import Request

from modelyard.errors import InvalidParameter, UnsupportedParameter
from modelyard.protocol.chat import EXTENSION_PARAMETERS

SUPPORTED_API_VERSIONS = (
    "2024-02-01",
    "2024-05-01-preview",
    "2024-06-01",
    "2024-08-01-preview",
    "2024-10-21",
    "2024-12-01-preview",
    "2025-01-01-preview",
    "2025-03-01-preview",
    "2025-04-01",
    "2025-04-01-preview",
    "2025-05-01",
)
DROPPED_HEADER = "x-modelyard-dropped-parameters"
# The dropped names a header lists at most; they are the client's own keys, percent-encoded.
MAX_LISTED_DROPPED = 20


def dropped_header_value(dropped: list[str]) -> str:
    """The names of dropped parameters as a header value that is always plain ASCII, whatever
    the client named them (non-Latin-1 names, CR/LF): each is percent-encoded, and a long list
    is cut with a count of the rest."""
    listed = [quote(name, safe="") for name in dropped[:MAX_LISTED_DROPPED]]
    rest = len(dropped) - len(listed)
    return ",".join(listed) + (f",...{rest} more" if rest else "")


class ExtraParameters(enum.StrEnum):
    ERROR = "error"
    DROP = "drop"
    PASS_THROUGH = "pass-through"


def check_api_version(request: Request) -> str:
    version = request.query_params.get("api-version")
    if version is None or version not in SUPPORTED_API_VERSIONS:
        given = f"'{version}' is not supported" if version else "it is missing"
        raise InvalidParameter(
            f"The api-version query parameter is required and {given}. Supported versions: "
            f"{', '.join(SUPPORTED_API_VERSIONS)}.",
            param="api-version",
        )
    return version


def extra_parameters_policy(request: Request) -> ExtraParameters:
    value = request.headers.get("extra-parameters", ExtraParameters.ERROR.value)
    try:
        return ExtraParameters(value)
    except ValueError:
        raise InvalidParameter(
            f"The extra-parameters header must be one of error, drop, pass-through; got '{value}'.",
            param="extra-parameters",
        ) from None


def apply_extra_parameters(
    raw: dict[str, Any], policy: ExtraParameters, model: type[BaseModel]
) -> list[str]:
    """Enforce the policy on keys the canonical request does not define; returns those dropped."""
    known = set(model.model_fields) - EXTENSION_PARAMETERS
    extras = sorted(key for key in raw if key not in known)
    if not extras or policy is ExtraParameters.PASS_THROUGH:
        return []
    if policy is ExtraParameters.ERROR:
        names = ", ".join(f"'{name}'" for name in extras)
        raise UnsupportedParameter(
            f"Extra parameters {names} are not allowed when the extra-parameters header is "
            f"absent or 'error'; send 'extra-parameters: drop' or 'pass-through'.",
            param=extras[0],
        )
    for name in extras:
        del raw[name]
    return extras
