"""The console's OpenID Connect sign-in: the authorization-code flow with PKCE (RFC 7636, S256).

Owns what one sign-in keeps between the redirect to the identity provider and its callback
(`PendingSignIn`: state, nonce, code_verifier and where to go after), the authorization URL, the
token request (RFC 6749 section 4.1.3, client_secret_basic when the client has a secret) and the
reading of its answer by status and by the fields RFC 6749 section 5 defines (`id_token`,
`error`). Not here: the routes and the cookie that carries a `PendingSignIn`
(`api/console/oidc.py`); verifying the id_token, which the authenticator does like any bearer
token (`tokens.py`).

Invariants: every random value comes from `secrets` (256 bits or more); no failure's message
holds the code, the verifier, the client secret, a token or the provider's free text (only its
`error` code, when it is one); the nonce is read only from an id_token already verified.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote_plus, urlencode, urlsplit, urlunsplit

import httpx
import jwt
import orjson

from modelyard.auth.identity_provider import ConsoleClient
from modelyard.errors import AuthenticationFailed, ServiceUnavailable

TOKEN_TIMEOUT_S = 10.0
# An id_token is small; a token endpoint answering more than this is not one to read.
MAX_TOKEN_ANSWER_BYTES = 256 * 1024
# The error codes of RFC 6749 sections 4.1.2.1 and 5.2 and their extensions are short ASCII.
_ERROR_CODE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


class OidcSignInFailed(AuthenticationFailed):
    code = "oidc_sign_in_failed"


class IdentityProviderUnavailable(ServiceUnavailable):
    code = "identity_provider_unavailable"


@dataclass(frozen=True)
class PendingSignIn:
    """One sign-in under way: what the callback must find again."""

    state: str
    nonce: str
    code_verifier: str
    next_path: str

    @classmethod
    def start(cls, next_path: str) -> PendingSignIn:
        # 64 random bytes: an 86-character verifier, within RFC 7636's 43 to 128.
        return cls(
            secrets.token_urlsafe(32),
            secrets.token_urlsafe(32),
            secrets.token_urlsafe(64),
            next_path,
        )

    def to_cookie(self) -> str:
        fields = [self.state, self.nonce, self.code_verifier, self.next_path]
        return base64.urlsafe_b64encode(orjson.dumps(fields)).decode().rstrip("=")

    @classmethod
    def from_cookie(cls, value: str | None) -> PendingSignIn | None:
        """The sign-in a cookie carries; None when there is none or it is not one of ours."""
        if not value or len(value) > 4096:
            return None
        try:
            fields = orjson.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
        except (binascii.Error, ValueError):
            return None
        if not (
            isinstance(fields, list)
            and len(fields) == 4
            and all(isinstance(f, str) and f for f in fields)
        ):
            return None
        return cls(*fields)


def code_challenge(code_verifier: str) -> str:
    """S256: the unpadded base64url of the verifier's SHA-256."""
    digest = hashlib.sha256(code_verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def authorization_url(client: ConsoleClient, pending: PendingSignIn, redirect_uri: str) -> str:
    """Where the browser goes to sign in (the endpoint's own query, if any, is kept)."""
    parts = urlsplit(client.authorization_endpoint)
    query = [
        *parse_qsl(parts.query, keep_blank_values=True),
        ("response_type", "code"),
        ("client_id", client.client_id),
        ("redirect_uri", redirect_uri),
        ("scope", " ".join(client.scopes)),
        ("state", pending.state),
        ("nonce", pending.nonce),
        ("code_challenge", code_challenge(pending.code_verifier)),
        ("code_challenge_method", "S256"),
    ]
    return urlunsplit(parts._replace(query=urlencode(query)))


def token_request(
    client: ConsoleClient, code: str, code_verifier: str, redirect_uri: str
) -> tuple[dict[str, str], dict[str, str]]:
    """The form and headers that exchange `code` for tokens."""
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "code_verifier": code_verifier,
    }
    headers = {"accept": "application/json"}
    if client.client_secret is None:
        form["client_id"] = client.client_id  # a public client names itself in the form
    else:
        # RFC 6749 section 2.3.1: both parts form-encoded before they are joined.
        pair = f"{quote_plus(client.client_id)}:{quote_plus(client.client_secret)}"
        headers["authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
    return form, headers


def id_token_from(status: int, body: bytes) -> str:
    """The id_token of the token endpoint's answer, or the failure it stands for."""
    try:
        answer = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        answer = None
    if status == 200 and isinstance(answer, dict):
        id_token = answer.get("id_token")
        if isinstance(id_token, str) and id_token:
            return id_token
        raise OidcSignInFailed(
            "The identity provider signed you in but sent no id_token; the console needs the "
            "'openid' scope.",
            param="id_token",
        )
    if status in (400, 401) and isinstance(answer, dict) and "error" in answer:
        raise OidcSignInFailed(
            f"The identity provider refused the sign-in code ({shown_error(answer['error'])}); "
            "sign in again.",
            param="code",
        )
    raise IdentityProviderUnavailable(
        f"The identity provider's token endpoint failed (HTTP {status}); try again later."
    )


async def exchange_code(
    client: ConsoleClient,
    code: str,
    code_verifier: str,
    redirect_uri: str,
    *,
    timeout_s: float = TOKEN_TIMEOUT_S,
) -> str:
    """Trade the authorization code for the id_token at the token endpoint."""
    form, headers = token_request(client, code, code_verifier, redirect_uri)
    try:
        async with (
            httpx.AsyncClient(timeout=timeout_s, follow_redirects=False) as http,
            http.stream("POST", client.token_endpoint, data=form, headers=headers) as answer,
        ):
            body = b""
            async for chunk in answer.aiter_bytes():
                body += chunk
                if len(body) > MAX_TOKEN_ANSWER_BYTES:
                    raise IdentityProviderUnavailable(
                        "The identity provider's token endpoint answered too much; try again later."
                    )
            status = answer.status_code
    except httpx.HTTPError:
        raise IdentityProviderUnavailable(
            "The identity provider's token endpoint could not be reached; try again later."
        ) from None
    return id_token_from(status, body)


def check_state(pending: PendingSignIn | None, presented: str | None) -> PendingSignIn:
    """The sign-in this callback belongs to; refused when the browser started none, or another."""
    if pending is None:
        raise OidcSignInFailed(
            "This sign-in was not started here, or took too long; sign in again.", param="state"
        )
    if not presented or not hmac.compare_digest(presented.encode(), pending.state.encode()):
        raise OidcSignInFailed(
            "The identity provider's answer does not belong to this sign-in; sign in again.",
            param="state",
        )
    return pending


def check_nonce(verified_id_token: str, nonce: str) -> None:
    """Refuse an id_token that was not issued for this sign-in. Call it only on a token whose
    signature, issuer, audience and expiry were verified: its claims are read unverified here."""
    claims = jwt.decode(verified_id_token, options={"verify_signature": False})
    presented = claims.get("nonce")
    if not isinstance(presented, str) or not hmac.compare_digest(
        presented.encode(), nonce.encode()
    ):
        raise OidcSignInFailed(
            "The identity provider's token was not issued for this sign-in; sign in again.",
            param="nonce",
        )


def refused_by_provider(error: str) -> OidcSignInFailed:
    """The callback said `error=...`: the person was not signed in."""
    return OidcSignInFailed(
        f"The identity provider did not sign you in ({shown_error(error)}).", param="error"
    )


def shown_error(error: object) -> str:
    """An RFC 6749 error code as it may be shown; anything else as a placeholder."""
    return error if isinstance(error, str) and _ERROR_CODE.fullmatch(error) else "unknown error"
