"""An OpenID Connect identity provider on a loopback port, for the console's sign-in tests.

`/authorize` signs `person` in at once (no login form) and redirects back to the client's
`redirect_uri` with `code` and `state`, as a provider does after its own login page; it refuses
a request that is not a PKCE S256 code request for the registered client. `/token` exchanges a
code once, only with the same client, the same `redirect_uri` and a `code_verifier` whose S256
is the `code_challenge` the code was issued for (RFC 7636 section 4.6), and answers as RFC 6749
section 5 says: `id_token` (RS256, `iss`, `aud`, `sub`, `exp`, `iat`, `nonce`, the role claim)
on 200, `{"error": ...}` with 400 or 401 otherwise. `/jwks` serves the public key, which is also
written to `jwks.json` beside the gateway's `auth.yaml` (`write_config`).

Faults a real provider shows, scripted for the next sign-in: `fail_next_authorize(error)` (the
person declined: a redirect with `error=` and the state), `tamper_next_state()` (a callback
whose state is not the one sent), `enqueue(JsonReply(...))` (the token endpoint's next answer,
e.g. a 500 or `invalid_grant`), `sign_next_token(**claims)` (the next id_token with claims
changed, e.g. another nonce or audience) and `sign_next_with_foreign_key()`.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus, urlencode

import jwt
import yaml
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from modelyard.testing.scripted_server import RecordedRequest, ScriptedServer, json_response

KEY_ID = "fake-idp-1"
ROLE_CLAIM = "groups"


@dataclass
class Person:
    sub: str
    groups: list[str]


@dataclass(frozen=True)
class Grant:
    """What an issued code stands for."""

    client_id: str
    redirect_uri: str
    code_challenge: str
    nonce: str | None
    person: Person


@dataclass
class AuthorizeFaults:
    error: str | None = None
    tamper_state: bool = False
    claims: dict[str, Any] = field(default_factory=dict)
    foreign_key: bool = False


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class FakeIdentityProvider(ScriptedServer):
    def __init__(
        self, client_id: str = "modelyard-console", client_secret: str | None = None
    ) -> None:
        super().__init__()
        self.client_id = client_id
        self.client_secret = client_secret
        self.key = _new_key()
        self.person = Person("alice", [])
        self.codes: dict[str, Grant] = {}
        # Every /authorize query and every /token form, in order.
        self.authorize_requests: list[dict[str, str]] = []
        self.token_requests: list[RecordedRequest] = []
        self.faults = AuthorizeFaults()
        # True: /authorize shows a login page whose button signs the person in (the redirect
        # back then starts on the provider's site, as after a real login form).
        self.login_page = False

    @property
    def browser_url(self) -> str:
        """Where the browser meets the provider: `localhost`, another site than the gateway's
        127.0.0.1, so the redirect back is cross-site as it is in production."""
        return f"http://localhost:{self.port}"

    @property
    def issuer(self) -> str:
        return self.browser_url

    def routes(self) -> list[Route]:
        return [
            Route("/authorize", self._authorize, methods=["GET"]),
            Route("/login", self._login, methods=["POST"]),
            Route("/token", self._token, methods=["POST"]),
            Route("/jwks", self._jwks, methods=["GET"]),
        ]

    def jwks(self) -> dict[str, Any]:
        public = json.loads(RSAAlgorithm.to_jwk(self.key.public_key()))
        public.update(kid=KEY_ID, alg="RS256", use="sig")
        return {"keys": [public]}

    def write_config(self, directory: Path, mappings: list[dict[str, str]], **console: Any) -> Path:
        """`auth.yaml` and `jwks.json` in `directory` that make a gateway trust this provider
        and register its console as this client; `console` overrides that section's fields."""
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "jwks.json").write_text(json.dumps(self.jwks()))
        section: dict[str, Any] = {
            "client_id": self.client_id,
            "authorization_endpoint": f"{self.browser_url}/authorize",
            # The gateway calls the token endpoint itself, at the address it listens on.
            "token_endpoint": f"{self.root_url}/token",
            "scopes": ["profile"],
        }
        if self.client_secret is not None:
            section["client_secret"] = self.client_secret
        section.update(console)
        config = {
            "oidc": {
                "issuer": self.issuer,
                "audience": [self.client_id],
                "jwks_file": "jwks.json",
                "algorithms": ["RS256"],
                "role_claim": ROLE_CLAIM,
                "mappings": mappings,
                "console": section,
            }
        }
        path = directory / "auth.yaml"
        path.write_text(yaml.safe_dump(config))
        return path

    # Faults of the next sign-in.
    def fail_next_authorize(self, error: str = "access_denied") -> None:
        self.faults.error = error

    def tamper_next_state(self) -> None:
        self.faults.tamper_state = True

    def sign_next_token(self, **claims: Any) -> None:
        self.faults.claims = claims

    def sign_next_with_foreign_key(self) -> None:
        self.faults.foreign_key = True

    def reset(self) -> None:
        super().reset()
        self.codes.clear()
        self.authorize_requests.clear()
        self.token_requests.clear()
        self.faults = AuthorizeFaults()
        self.login_page = False

    async def _authorize(self, request: Request) -> Response:
        query = dict(request.query_params)
        self.authorize_requests.append(query)
        problem = self._authorize_problem(query)
        if problem is not None:
            # A provider shows its own error page for a client or redirect it does not know.
            return JSONResponse({"error": "invalid_request", "error_description": problem}, 400)
        if self.login_page:
            fields = "".join(
                f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                for k, v in query.items()
            )
            return HTMLResponse(
                f'<!doctype html><title>Fake IdP</title><form method="post" action="/login">'
                f"{fields}<button>Continue as {html.escape(self.person.sub)}</button></form>"
            )
        return self._redirect_back(query)

    async def _login(self, request: Request) -> Response:
        form = {key: str(value) for key, value in (await request.form()).items()}
        # A form POST answered with 303, as login forms are.
        redirect = self._redirect_back(form)
        redirect.status_code = 303
        return redirect

    def _redirect_back(self, query: dict[str, str]) -> Response:
        state = query.get("state", "")
        back: dict[str, str]
        if self.faults.error is not None:
            back = {"error": self.faults.error, "error_description": "The user said no"}
            self.faults.error = None
        else:
            code = secrets.token_urlsafe(24)
            self.codes[code] = Grant(
                self.client_id,
                query["redirect_uri"],
                query["code_challenge"],
                query.get("nonce"),
                Person(self.person.sub, list(self.person.groups)),
            )
            back = {"code": code}
        if self.faults.tamper_state:
            state = state[:-2] + ("AA" if not state.endswith("AA") else "BB")
            self.faults.tamper_state = False
        back["state"] = state
        return RedirectResponse(f"{query['redirect_uri']}?{urlencode(back)}", status_code=302)

    def _authorize_problem(self, query: dict[str, str]) -> str | None:
        if query.get("response_type") != "code":
            return "response_type must be code"
        if query.get("client_id") != self.client_id:
            return "unknown client_id"
        if not query.get("redirect_uri", "").endswith("/console/oidc/callback"):
            return "redirect_uri is not registered"
        if query.get("code_challenge_method") != "S256" or not query.get("code_challenge"):
            return "PKCE with S256 is required"
        if "openid" not in query.get("scope", "").split():
            return "scope must include openid"
        return None

    async def _token(self, request: Request) -> Response:
        form = {key: str(value) for key, value in (await request.form()).items()}
        self.token_requests.append(
            RecordedRequest(request.url.path, dict(request.headers), form, {})
        )
        if self.replies:
            reply = self.replies.popleft()
            assert not hasattr(reply, "events"), "the token endpoint answers JSON only"
            return await json_response(reply)  # type: ignore[arg-type]
        client_id = self._authenticated_client(request, form)
        if client_id is None:
            return JSONResponse({"error": "invalid_client"}, 401)
        if form.get("grant_type") != "authorization_code":
            return JSONResponse({"error": "unsupported_grant_type"}, 400)
        grant = self.codes.pop(form.get("code", ""), None)
        if grant is None or grant.client_id != client_id:
            return JSONResponse({"error": "invalid_grant"}, 400)
        if form.get("redirect_uri") != grant.redirect_uri:
            return JSONResponse({"error": "invalid_grant", "error_description": "redirect"}, 400)
        if s256(form.get("code_verifier", "")) != grant.code_challenge:
            return JSONResponse({"error": "invalid_grant", "error_description": "PKCE"}, 400)
        return JSONResponse(
            {
                "access_token": secrets.token_urlsafe(24),
                "token_type": "Bearer",
                "expires_in": 3600,
                "id_token": self._id_token(grant),
            }
        )

    def _authenticated_client(self, request: Request, form: dict[str, str]) -> str | None:
        if self.client_secret is None:
            return form.get("client_id")
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return None
        # RFC 6749 section 2.3.1: each part was form-encoded before the two were joined.
        client_id, _, secret = base64.b64decode(encoded).decode().partition(":")
        if unquote_plus(secret) != self.client_secret:
            return None
        return unquote_plus(client_id)

    def _id_token(self, grant: Grant) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": grant.client_id,
            "sub": grant.person.sub,
            ROLE_CLAIM: grant.person.groups,
            "iat": now,
            "exp": now + 3600,
        }
        if grant.nonce is not None:
            claims["nonce"] = grant.nonce
        claims.update(self.faults.claims)
        self.faults.claims = {}
        key = _new_key() if self.faults.foreign_key else self.key
        self.faults.foreign_key = False
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": KEY_ID})

    async def _jwks(self, request: Request) -> Response:
        return JSONResponse(self.jwks())
