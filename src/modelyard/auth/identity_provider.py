"""Read the identity provider file (`Settings.auth_config`) that lets OIDC/JWT tokens in.

The file names one issuer, the audiences a token must carry, where the signing keys come from
(a JWKS file or URL, exactly one) and how a claim's values map to roles on projects. It is
validated completely at start-up; a problem raises `AuthConfigError`, whose message names the
file and the field. Verifying tokens is `tokens.py`'s job. Invariants: only public-key
algorithms are configured, and role `owner` is granted on `*` and nowhere else.

An optional `oidc.console` section registers the web console as a client of the identity
provider (the authorization-code flow with PKCE, `oidc_flow.py`): its client id, which must be
one of the audiences (the id_token is verified like any bearer token), an optional client
secret, the authorization and token endpoints (https, or http to a loopback address) and the
scopes it asks for besides `openid`.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from modelyard.errors import StartupError
from modelyard.policy.rbac import ALL_PROJECTS, Role

PUBLIC_KEY_ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)
DEFAULT_ALGORITHMS = ("RS256", "ES256", "PS256", "EdDSA")
# RFC 6749 section 3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")


class AuthConfigError(StartupError):
    """The identity provider file is missing, unparsable or invalid; the message says where."""


@dataclass(frozen=True)
class RoleMapping:
    value: str
    project: str
    role: Role


@dataclass(frozen=True)
class ConsoleClient:
    """The web console as a client of the identity provider."""

    client_id: str
    # Kept out of repr: a config printed in a log never shows it.
    client_secret: str | None = field(repr=False)
    authorization_endpoint: str
    token_endpoint: str
    # Always starts with "openid".
    scopes: tuple[str, ...]


@dataclass(frozen=True)
class IdentityProviderConfig:
    issuer: str
    audiences: tuple[str, ...]
    algorithms: tuple[str, ...]
    jwks_file: Path | None
    jwks_url: str | None
    jwks_cache_seconds: int
    leeway_seconds: int
    subject_claim: str
    role_claim: str
    mappings: tuple[RoleMapping, ...]
    # None: the console signs in with API keys only.
    console: ConsoleClient | None = None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class _MappingEntry(_Strict):
    value: Annotated[str, Field(min_length=1)]
    project: Annotated[str, Field(min_length=1, max_length=64)]
    # YAML gives the role as a string; strict mode alone would want a Role instance.
    role: Annotated[Role, Field(strict=False)]


class _ConsoleEntry(_Strict):
    client_id: Annotated[str, Field(min_length=1)]
    client_secret: Annotated[str, Field(min_length=1)] | None = None
    authorization_endpoint: str
    token_endpoint: str
    scopes: list[str] = []

    @field_validator("authorization_endpoint", "token_endpoint")
    @classmethod
    def _endpoint(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http") or not parts.hostname or parts.fragment:
            raise ValueError("must be an https:// URL without a fragment")
        # The authorization code and the id_token travel here.
        if parts.scheme == "http" and not _is_loopback(parts.hostname):
            raise ValueError("plain http is only allowed to a loopback address; use https")
        return url

    @field_validator("scopes")
    @classmethod
    def _scope_tokens(cls, scopes: list[str]) -> list[str]:
        for scope in scopes:
            if _SCOPE_TOKEN.fullmatch(scope) is None:
                raise ValueError(
                    f"{scope!r} is not one scope (printable ASCII without spaces, '\"' or '\\')"
                )
        return scopes


class _OidcEntry(_Strict):
    issuer: Annotated[str, Field(min_length=1)]
    audience: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)]
    jwks_file: Annotated[str, Field(min_length=1)] | None = None
    jwks_url: str | None = None
    jwks_cache_seconds: Annotated[int, Field(gt=0, le=86_400)] = 600
    algorithms: Annotated[list[str], Field(min_length=1)] = list(DEFAULT_ALGORITHMS)
    leeway_seconds: Annotated[int, Field(ge=0, le=600)] = 30
    subject_claim: Annotated[str, Field(min_length=1)] = "sub"
    role_claim: Annotated[str, Field(min_length=1)]
    mappings: Annotated[list[_MappingEntry], Field(min_length=1)]
    console: _ConsoleEntry | None = None

    @field_validator("audience", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @field_validator("algorithms")
    @classmethod
    def _public_key_only(cls, algorithms: list[str]) -> list[str]:
        for name in algorithms:
            if name.lower() == "none":
                raise ValueError("'none' accepts unsigned tokens and is never allowed")
            if name.upper().startswith("HS"):
                raise ValueError(
                    f"'{name}' uses a shared secret; only public-key algorithms are allowed"
                )
            if name not in PUBLIC_KEY_ALGORITHMS:
                raise ValueError(
                    f"'{name}' is not supported; use {', '.join(PUBLIC_KEY_ALGORITHMS)}"
                )
        return list(dict.fromkeys(algorithms))

    @field_validator("jwks_url")
    @classmethod
    def _trusted_transport(cls, url: str | None) -> str | None:
        if url is None:
            return None
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError("must be an https:// URL")
        # Whoever can change these keys in transit can sign any token.
        if parts.scheme == "http" and not _is_loopback(parts.hostname):
            raise ValueError("plain http is only allowed to a loopback address; use https")
        return url


class _AuthFile(_Strict):
    oidc: _OidcEntry


def _secret(value: str | None, where: str) -> str | None:
    """A secret written as is, or `env:NAME` to read it from the environment at start-up."""
    if value is None or not value.startswith("env:"):
        return value
    name = value.removeprefix("env:")
    found = os.environ.get(name)
    if not found:
        raise AuthConfigError(f"{where}: the environment variable {name} is not set")
    return found


def load_identity_provider(path: Path) -> IdentityProviderConfig:
    """Parse and validate the file at `path`, or raise AuthConfigError naming what is wrong."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise AuthConfigError(
            f"auth config {path}: cannot read the file ({exc.strerror})"
        ) from None
    except yaml.YAMLError as exc:
        raise AuthConfigError(f"auth config {path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise AuthConfigError(f"auth config {path}: expected a mapping with an 'oidc' section")
    try:
        parsed = _AuthFile.model_validate(raw)
    except ValidationError as exc:
        raise AuthConfigError(_describe(path, exc)) from None
    return _build(path, parsed.oidc)


def _build(path: Path, oidc: _OidcEntry) -> IdentityProviderConfig:
    where = f"auth config {path}: oidc"
    if (oidc.jwks_file is None) == (oidc.jwks_url is None):
        raise AuthConfigError(f"{where}: jwks_file, jwks_url: give exactly one of the two")
    seen: set[tuple[str, str]] = set()
    for index, mapping in enumerate(oidc.mappings):
        at = f"{where}.mappings[{index}]"
        on_all = mapping.project == ALL_PROJECTS
        if on_all and mapping.role is not Role.OWNER:
            raise AuthConfigError(
                f"{at}.project: only role 'owner' may be granted on '*', not '{mapping.role}'"
            )
        if mapping.role is Role.OWNER and not on_all:
            raise AuthConfigError(f"{at}.role: 'owner' is granted on project '*' only")
        if (mapping.value, mapping.project) in seen:
            raise AuthConfigError(
                f"{at}.value: '{mapping.value}' is already mapped on project '{mapping.project}'"
            )
        seen.add((mapping.value, mapping.project))
    console = None
    if oidc.console is not None:
        if oidc.console.client_id not in oidc.audience:
            raise AuthConfigError(
                f"{where}.console.client_id: '{oidc.console.client_id}' must be one of the "
                "audiences (oidc.audience): the console's id_token is issued to it"
            )
        console = ConsoleClient(
            client_id=oidc.console.client_id,
            client_secret=_secret(oidc.console.client_secret, f"{where}.console.client_secret"),
            authorization_endpoint=oidc.console.authorization_endpoint,
            token_endpoint=oidc.console.token_endpoint,
            scopes=tuple(dict.fromkeys(["openid", *oidc.console.scopes])),
        )
    jwks_file = None
    if oidc.jwks_file is not None:
        jwks_file = Path(oidc.jwks_file)
        if not jwks_file.is_absolute():
            jwks_file = path.parent / jwks_file
    return IdentityProviderConfig(
        issuer=oidc.issuer,
        audiences=tuple(oidc.audience),
        algorithms=tuple(oidc.algorithms),
        jwks_file=jwks_file,
        jwks_url=oidc.jwks_url,
        jwks_cache_seconds=oidc.jwks_cache_seconds,
        leeway_seconds=oidc.leeway_seconds,
        subject_claim=oidc.subject_claim,
        role_claim=oidc.role_claim,
        mappings=tuple(RoleMapping(m.value, m.project, m.role) for m in oidc.mappings),
        console=console,
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _describe(path: Path, exc: ValidationError) -> str:
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        field = ""
        for part in error["loc"]:
            if isinstance(part, int):
                field += f"[{part}]"
            else:
                field += f".{part}" if field else part
        ctx: dict[str, Any] = error.get("ctx") or {}
        # A validator's own message, without pydantic's "Value error, " prefix.
        message = str(ctx["error"]) if error["type"] == "value_error" else error["msg"]
        problems.append(f"auth config {path}: {field or '(file)'}: {message}")
    return "\n".join(problems)
