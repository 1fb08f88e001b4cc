"""Turn the credential headers of a request into a Principal, or refuse with 401.

Clients send keys as `Authorization: Bearer <key>` (OpenAI, Mistral), `api-key: <key>` (Azure
OpenAI) or both with the same value (azure-ai-inference). Two different credentials in one
request are refused rather than guessed between. A bearer value shaped like a JWT is verified
as an identity-provider token when one is configured.

Everything here reads memory only (the Directory and the token cache): a project key costs one
HMAC and a dict lookup. Unknown key ids still cost the HMAC, so timing says nothing about which
ids exist.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from modelyard.auth.directory import Directory, KeyRecord
from modelyard.auth.keys import digests_match, key_hint, keyed_digest, project_key_id
from modelyard.auth.principal import Principal, home_project
from modelyard.auth.sessions import SessionCredential
from modelyard.auth.tokens import TokenVerifier, looks_like_jwt
from modelyard.errors import AuthenticationFailed, PermissionDenied
from modelyard.policy.rbac import ALL_PROJECTS, Role

PROJECT_HEADER = "x-modelyard-project"
_OWNER_EVERYWHERE = {ALL_PROJECTS: Role.OWNER}
_NO_DIGEST = "0" * 64
_ADMIN = Principal(
    subject="admin", kind="admin", grants=_OWNER_EVERYWHERE, hint="myd-admin-…", project=None
)


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
    def __init__(
        self,
        admin_digest: str,
        directory: Directory,
        key_secret: bytes,
        tokens: TokenVerifier | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._admin_digest = admin_digest
        self._directory = directory
        self._key_secret = key_secret
        self._tokens = tokens
        self._clock = clock
        self._key_principals: dict[str, tuple[KeyRecord, Principal]] = {}

    def may_block(self, headers: Mapping[str, str]) -> bool:
        """Whether authenticating may wait on the network (an identity provider's JWKS URL), so
        the caller should run it off the event loop."""
        if self._tokens is None or not self._tokens.fetches_keys:
            return False
        authorization = headers.get("authorization", "")
        return looks_like_jwt(authorization.partition(" ")[2].strip())

    def authenticate(self, headers: Mapping[str, str]) -> Principal:
        credential = presented_key(headers)
        if credential is None:
            raise AuthenticationFailed(
                "No API key provided. Send it as 'Authorization: Bearer <key>' or 'api-key: <key>'."
            )
        if project_key_id(credential) is not None:
            principal = self._project_key(credential)
        elif digests_match(credential, self._admin_digest):
            principal = _ADMIN
        elif self._tokens is not None and looks_like_jwt(credential):
            token = self._tokens.verify(credential)
            grants = {**token.grants, **self._directory.member_grants(token.subject)}
            principal = Principal(
                subject=token.subject,
                kind="token",
                grants=grants,
                hint=token.subject,
                expires_at=token.expires_at,
            )
        else:
            raise AuthenticationFailed(f"Incorrect API key provided: {key_hint(credential)}.")
        named = headers.get(PROJECT_HEADER)
        if named is None and principal.project is not None:
            return principal
        return self._acting(principal, named)

    def _project_key(self, key: str) -> Principal:
        key_id = project_key_id(key)
        record = self._directory.keys.get(key_id or "")
        digest = keyed_digest(self._key_secret, key)
        if record is None or not hmac.compare_digest(
            digest, record.digest if record else _NO_DIGEST
        ):
            raise AuthenticationFailed(f"Incorrect API key provided: {key_hint(key)}.")
        why_not = record.unusable_because(self._clock())
        if why_not is not None:
            raise AuthenticationFailed(f"The API key {key_hint(key)} cannot be used: {why_not}.")
        return self._key_principal(record, key_hint(key))

    def _key_principal(self, record: KeyRecord, hint: str) -> Principal:
        cached = self._key_principals.get(record.id)
        if cached is not None and cached[0] is record:
            return cached[1]
        principal = Principal(
            subject=record.subject,
            kind="key",
            grants={record.project_id: record.role},
            hint=hint,
            project=record.project_id,
            key_id=record.id,
            models=record.models,
            expires_at=record.expires_at,
        )
        # Keyed by the record object: a revocation or rotation replaces it, and so the entry.
        self._key_principals[record.id] = (record, principal)
        return principal

    def session_credential(self, principal: Principal) -> SessionCredential:
        """What a console session keeps of the credential `principal` signed in with."""
        if principal.kind == "admin":
            return SessionCredential("admin", "admin", principal.hint, digest=self._admin_digest)
        if principal.kind == "key":
            record = self._directory.keys[principal.key_id or ""]
            return SessionCredential(
                "key",
                record.subject,
                principal.hint,
                digest=record.digest,
                key_id=record.id,
                expires_at=record.expires_at,
            )
        raise ValueError("a token's session comes from token_session_credential")

    def token_session_credential(self, token: str) -> SessionCredential:
        """Verify an identity provider's token (the console's OIDC sign-in) like a bearer token
        and keep its subject and the roles its claims grant (memberships are read per page)."""
        if self._tokens is None:
            raise AuthenticationFailed("No identity provider is configured.")
        verified = self._tokens.verify(token)
        return SessionCredential(
            "token",
            verified.subject,
            verified.subject,
            grants=dict(verified.grants),
            expires_at=verified.expires_at,
        )

    def session_principal(self, credential: SessionCredential) -> Principal:
        """The principal a console session acts as, checked now as its credential would be: a
        key revoked, rotated or expired, a changed admin key or an expired token refuse (401)."""
        if credential.kind == "admin":
            if credential.digest != self._admin_digest:
                raise AuthenticationFailed("The admin key this session signed in with changed.")
            return _ADMIN
        if credential.expires_at is not None and credential.expires_at <= self._clock():
            raise AuthenticationFailed("The credential this session signed in with has expired.")
        if credential.kind == "key":
            record = self._directory.keys.get(credential.key_id or "")
            if record is None or record.digest != credential.digest:
                raise AuthenticationFailed(
                    f"The API key {credential.hint} this session signed in with is gone."
                )
            why_not = record.unusable_because(self._clock())
            if why_not is not None:
                raise AuthenticationFailed(
                    f"The API key {credential.hint} cannot be used: {why_not}."
                )
            return self._key_principal(record, credential.hint)
        grants = {**credential.grants, **self._directory.member_grants(credential.subject)}
        return Principal(
            subject=credential.subject,
            kind="token",
            grants=grants,
            hint=credential.hint,
            expires_at=credential.expires_at,
        )

    def acting_as(self, principal: Principal, project: str | None) -> Principal:
        """`principal` acting in `project` (as if named in x-modelyard-project); a project the
        principal holds no role on, or that does not exist, is refused the same way."""
        if project is None and principal.project is not None:
            return principal
        return self._acting(principal, project)

    def _acting(self, principal: Principal, named: str | None) -> Principal:
        """Fix the project the request acts in: the one named in the header, else the only one."""
        if named is None:
            project = home_project(principal.grants)
        elif principal.role_in(named) is None or named not in self._directory.projects:
            # Same answer whether the project is missing or merely not theirs.
            raise PermissionDenied(
                f"The project '{named}' named in {PROJECT_HEADER} does not exist or is not yours.",
                param=PROJECT_HEADER,
            )
        else:
            project = named
        return principal._replace(project=project)
