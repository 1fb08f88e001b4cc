"""Verify OIDC/JWT access tokens from the configured identity provider and map them to grants.

Owns the signature and claim checks and the identity provider's signing keys: a JWKS file read
once, or a JWKS URL fetched with httpx and cached (refetched when its lifetime ends, or when a
token names an unknown key, at most once per `REFETCH_INTERVAL_S`). Not here: reading request
headers, turning grants into a Principal, the config file (`identity_provider.py`).

Invariants: a token is checked only with an algorithm from the config and a key whose type fits
that algorithm, chosen by the token's `kid`; every refusal is `AuthenticationFailed` whose
message never holds the token or the values of its role and subject claims. Verified results
are cached by the token's SHA-256 until the token expires, and dropped when a key disappears.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import jwt

from modelyard.auth.identity_provider import AuthConfigError, IdentityProviderConfig, RoleMapping
from modelyard.errors import AuthenticationFailed
from modelyard.policy.rbac import ROLE_ACTIONS, Role, role_within

log = logging.getLogger(__name__)

REFETCH_INTERVAL_S = 30.0
FETCH_TIMEOUT_S = 3.0
RESULT_CACHE_SIZE = 10_000
# Far above any real access token; bounds the work an arbitrary header value can cause.
MAX_TOKEN_CHARS = 16_384
MAX_HEADER_CHARS = 4_096

_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")

# kid (None for a key that has none) -> algorithm -> key bound to that algorithm.
_Keys = dict[str | None, dict[str, jwt.PyJWK]]


@dataclass(frozen=True)
class VerifiedToken:
    subject: str  # "oidc:" + the subject claim
    grants: dict[str, Role]  # project, or "*" for every project -> role
    expires_at: datetime


def looks_like_jwt(credential: str) -> bool:
    """Whether a bearer credential is a JWS compact token rather than an API key."""
    # An empty signature still counts (alg "none"), so that it is refused as a token.
    if _COMPACT_JWS.fullmatch(credential) is None:
        return False
    return _header(credential.partition(".")[0]) is not None


class TokenVerifier:
    def __init__(
        self,
        config: IdentityProviderConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        cache_size: int = RESULT_CACHE_SIZE,
    ) -> None:
        self._config = config
        self._audiences = frozenset(config.audiences)
        self._algorithms = frozenset(config.algorithms)
        self._mappings: dict[str, list[RoleMapping]] = {}
        for mapping in config.mappings:
            self._mappings.setdefault(mapping.value, []).append(mapping)
        self._clock = clock
        self._cache_size = cache_size
        self._results: OrderedDict[bytes, VerifiedToken] = OrderedDict()
        self._results_lock = threading.Lock()
        self._keys_lock = threading.Lock()
        self._keys: _Keys | None = None
        self._fetched_at = 0.0
        self._attempted_at: float | None = None
        if config.jwks_file is not None:
            self._keys = self._read_jwks_file()

    @property
    def fetches_keys(self) -> bool:
        """True when keys come from a URL, so `verify` may wait on the network."""
        return self._config.jwks_url is not None

    def verify(self, token: str) -> VerifiedToken:
        """Check `token` and map it to grants, or raise AuthenticationFailed saying why.

        May block on the JWKS URL (up to FETCH_TIMEOUT_S) when keys are due or a kid is new.
        """
        if len(token) > MAX_TOKEN_CHARS:
            raise AuthenticationFailed("token is too large")
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        cached = self._cached(digest)
        if cached is not None:
            return cached
        verified = self._verify_uncached(token)
        if self._cache_size > 0:
            with self._results_lock:
                self._results[digest] = verified
                if len(self._results) > self._cache_size:
                    self._results.popitem(last=False)
        return VerifiedToken(verified.subject, dict(verified.grants), verified.expires_at)

    def _cached(self, digest: bytes) -> VerifiedToken | None:
        with self._results_lock:
            verified = self._results.get(digest)
            if verified is None:
                return None
            if verified.expires_at.timestamp() <= time.time():
                del self._results[digest]
                return None
            self._results.move_to_end(digest)
        # A copy, so that a caller changing its grants cannot change the cached ones.
        return VerifiedToken(verified.subject, dict(verified.grants), verified.expires_at)

    def _verify_uncached(self, token: str) -> VerifiedToken:
        header = _header(token.partition(".")[0])
        if header is None:
            raise AuthenticationFailed("token is not a well-formed JWT")
        alg = header["alg"]
        if alg not in self._algorithms:
            if alg.lower() == "none":
                raise AuthenticationFailed("unsigned tokens (alg 'none') are not accepted")
            raise AuthenticationFailed(f"token algorithm {_shown(alg)} is not accepted")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise AuthenticationFailed("token header 'kid' is not a string")
        key = self._key_for(kid, alg)
        claims = _decode(token, key, alg, self._config.leeway_seconds)
        self._check_issuer_and_audience(claims)
        subject = claims.get(self._config.subject_claim)
        if not isinstance(subject, str) or not subject:
            raise AuthenticationFailed(
                f"token has no '{self._config.subject_claim}' claim to identify the caller"
            )
        return VerifiedToken(
            subject=f"oidc:{subject}", grants=self._grants(claims), expires_at=_expiry(claims)
        )

    def _check_issuer_and_audience(self, claims: dict[str, Any]) -> None:
        # Checked here rather than by PyJWT to say which issuer or audience came; both are
        # public identifiers, and a signed token with the wrong one is a configuration issue.
        issuer = claims.get("iss")
        if issuer != self._config.issuer:
            raise AuthenticationFailed(
                f"issuer {_shown(issuer)} not accepted; expected {_shown(self._config.issuer)}"
            )
        audience = claims.get("aud")
        offered = [audience] if isinstance(audience, str) else audience
        if not isinstance(offered, list) or not self._audiences.intersection(
            value for value in offered if isinstance(value, str)
        ):
            raise AuthenticationFailed(
                f"audience {_shown(audience)} not accepted; "
                f"expected {_shown(sorted(self._audiences))}"
            )

    def _grants(self, claims: dict[str, Any]) -> dict[str, Role]:
        claim = self._config.role_claim
        raw = claims.get(claim)
        values = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else []
        grants: dict[str, Role] = {}
        for value in values:
            if not isinstance(value, str):
                continue
            for mapping in self._mappings.get(value, ()):
                held = grants.get(mapping.project)
                grants[mapping.project] = (
                    mapping.role if held is None else _stronger(held, mapping.role)
                )
        if not grants:
            raise AuthenticationFailed(
                "authenticated by the identity provider but granted no Modelyard role: "
                f"no role mapping matched claim '{claim}'"
            )
        return grants

    def _key_for(self, kid: str | None, alg: str) -> jwt.PyJWK:
        keys = self._keys
        if self._config.jwks_url is not None:
            stale = (
                keys is None or self._clock() - self._fetched_at >= self._config.jwks_cache_seconds
            )
            if stale and self._may_fetch():
                # With keys in hand, a refresh already under way elsewhere is not waited for.
                keys = self._refresh(wait=keys is None)
            if _select(keys, kid) is None and keys is not None and self._may_fetch():
                keys = self._refresh(wait=True)
        if keys is None:
            raise AuthenticationFailed("identity provider keys unavailable")
        by_algorithm = _select(keys, kid)
        if by_algorithm is None:
            if kid is None:
                raise AuthenticationFailed(
                    "token names no signing key (kid) and the identity provider has several"
                )
            raise AuthenticationFailed("unknown signing key: no key with the token's kid")
        key = by_algorithm.get(alg)
        if key is None:
            raise AuthenticationFailed(f"the signing key does not fit algorithm {_shown(alg)}")
        return key

    def _may_fetch(self) -> bool:
        attempted = self._attempted_at
        return attempted is None or self._clock() - attempted >= REFETCH_INTERVAL_S

    def _refresh(self, *, wait: bool) -> _Keys | None:
        if not self._keys_lock.acquire(blocking=wait):
            return self._keys
        try:
            if not self._may_fetch():  # another thread fetched while this one waited
                return self._keys
            self._attempted_at = self._clock()
            url = self._config.jwks_url
            assert url is not None
            try:
                response = httpx.get(url, timeout=FETCH_TIMEOUT_S, follow_redirects=False)
                response.raise_for_status()
                keys = _parse_jwks(response.json(), self._config.algorithms)
            except (httpx.HTTPError, ValueError) as exc:
                log.warning("identity provider keys from %s unavailable: %s", url, exc)
                return self._keys
            self._forget_results_of_removed_keys(keys)
            self._keys, self._fetched_at = keys, self._attempted_at
            return keys
        finally:
            self._keys_lock.release()

    def _forget_results_of_removed_keys(self, keys: _Keys) -> None:
        # A key the provider withdrew or replaced may have been compromised: re-verify everything.
        for kid, by_algorithm in (self._keys or {}).items():
            for alg, key in by_algorithm.items():
                kept = keys.get(kid, {}).get(alg)
                if kept is None or kept.key != key.key:
                    with self._results_lock:
                        self._results.clear()
                    return

    def _read_jwks_file(self) -> _Keys:
        path = self._config.jwks_file
        assert path is not None
        try:
            return _parse_jwks(json.loads(path.read_bytes()), self._config.algorithms)
        except OSError as exc:
            raise AuthConfigError(f"oidc.jwks_file {path}: cannot read ({exc.strerror})") from None
        except ValueError as exc:
            raise AuthConfigError(f"oidc.jwks_file {path}: {exc}") from None


def _decode(token: str, key: jwt.PyJWK, alg: str, leeway: int) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[alg],
            leeway=leeway,
            options={
                "require": ["exp"],
                "verify_aud": False,
                "verify_iss": False,
                "enforce_minimum_key_length": True,
            },
        )
    except jwt.ExpiredSignatureError:
        raise AuthenticationFailed("token expired") from None
    except jwt.ImmatureSignatureError:
        raise AuthenticationFailed("token not yet valid (nbf or iat in the future)") from None
    except jwt.MissingRequiredClaimError as exc:
        raise AuthenticationFailed(f"token has no '{exc.claim}' claim") from None
    except jwt.InvalidSignatureError:
        raise AuthenticationFailed("signature invalid") from None
    except jwt.InvalidKeyError:
        raise AuthenticationFailed("the identity provider's signing key is too weak") from None
    except (jwt.PyJWTError, RecursionError):
        raise AuthenticationFailed("token is malformed") from None
    return claims


def _expiry(claims: dict[str, Any]) -> datetime:
    exp = claims["exp"]
    # PyJWT also takes numeric strings; a NumericDate is a JSON number.
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        raise AuthenticationFailed("token claim 'exp' is not a number")
    try:
        return datetime.fromtimestamp(exp, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise AuthenticationFailed("token claim 'exp' is out of range") from None


def _parse_jwks(document: object, algorithms: tuple[str, ...]) -> _Keys:
    """The JWKS's signing keys, each bound to every configured algorithm its type fits."""
    raw_keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(raw_keys, list):
        raise ValueError("not a JWKS: expected an object with a 'keys' list")
    keys: _Keys = {}
    for jwk in raw_keys:
        if not isinstance(jwk, dict) or jwk.get("use", "sig") != "sig":
            continue
        # Private material has no place in a key set; refuse to use such a key at all.
        if jwk.get("kty") not in ("RSA", "EC", "OKP") or "d" in jwk:
            continue
        kid = jwk.get("kid")
        if kid is not None and not isinstance(kid, str):
            continue
        declared = jwk.get("alg")
        candidates = [declared] if declared is not None else algorithms
        for alg in candidates:
            if alg not in algorithms or alg in keys.get(kid, {}):
                continue
            try:
                key = jwt.PyJWK(jwk, algorithm=alg)
                key.Algorithm.prepare_key(key.key)  # refuses e.g. a P-384 key for ES256
            except (jwt.PyJWTError, ValueError, TypeError):
                continue
            keys.setdefault(kid, {})[alg] = key
    if not keys:
        raise ValueError(f"no usable signing key for algorithms {', '.join(algorithms)}")
    return keys


def _select(keys: _Keys | None, kid: str | None) -> dict[str, jwt.PyJWK] | None:
    if keys is None:
        return None
    if kid is None and len(keys) == 1:
        return next(iter(keys.values()))
    return keys.get(kid) if kid is not None else None


def _header(segment: str) -> dict[str, Any] | None:
    """The decoded JOSE header when it is a JSON object with a string `alg`, else None."""
    if not segment or len(segment) > MAX_HEADER_CHARS or not _BASE64URL.fullmatch(segment):
        return None
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, binascii.Error, RecursionError):
        return None
    if not isinstance(header, dict) or not isinstance(header.get("alg"), str):
        return None
    return header


def _stronger(held: Role, other: Role) -> Role:
    if role_within(other, held):
        return held
    if role_within(held, other):
        return other
    # Neither contains the other (developer and auditor): keep the one with more actions.
    return held if len(ROLE_ACTIONS[held]) >= len(ROLE_ACTIONS[other]) else other


def _shown(value: object) -> str:
    """A claim or header value quoted for a message, cut short."""
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."
