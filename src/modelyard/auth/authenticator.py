"""Turn the credential headers of a request into a Principal, or refuse with 401.

Clients send keys as `Authorization: Bearer <key>` (OpenAI, Mistral), `api-key: <key>` (Azure
OpenAI) or both with the same value (azure-ai-inference). Two different keys in one request are
refused rather than guessed between.
"""

from __future__ import annotations

from collections.abc import Mapping

from modelyard.auth.keys import digests_match, key_hint
from modelyard.auth.principal import Principal
from modelyard.errors import AuthenticationFailed

ADMIN_ROLES = frozenset({"owner"})


def presented_key(headers: Mapping[str, str]) -> str | None:
    bearer = None
    authorization = headers.get("authorization")
    if authorization is not None:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise AuthenticationFailed("The Authorization header must be 'Bearer <api key>'.")
        bearer = value.strip()
    api_key = headers.get("api-key")
    if bearer is not None and api_key is not None and bearer != api_key.strip():
        raise AuthenticationFailed(
            "The 'api-key' and 'Authorization' headers carry different keys."
        )
    return bearer if bearer is not None else (api_key.strip() if api_key else None)


class Authenticator:
    def __init__(self, admin_digest: str) -> None:
        self._admin_digest = admin_digest

    def authenticate(self, headers: Mapping[str, str]) -> Principal:
        key = presented_key(headers)
        if key is None:
            raise AuthenticationFailed(
                "No API key provided. Send it as 'Authorization: Bearer <key>' or 'api-key: <key>'."
            )
        if digests_match(key, self._admin_digest):
            return Principal(
                id="admin", project="default", roles=ADMIN_ROLES, key_hint=key_hint(key)
            )
        raise AuthenticationFailed(f"Incorrect API key provided: {key_hint(key)}.")
