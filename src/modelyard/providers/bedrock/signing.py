"""AWS credentials for Bedrock deployments, and SigV4 signing of each request, both through
botocore (never signing code of our own).

A deployment's credentials come from its catalog reference (`upstream.credential`: `env:NAME`
or `file:/path` whose value is `ACCESS_KEY_ID:SECRET_ACCESS_KEY` or
`ACCESS_KEY_ID:SECRET_ACCESS_KEY:SESSION_TOKEN`), resolved when the provider is built, or, with
no reference, from botocore's standard chain (environment, shared files, SSO, container and
instance metadata), resolved once at start-up off the event loop. Chain credentials that expire
are refreshed by botocore; a refresh that is due runs on a thread, so the event loop never waits
on the network for it. Secrets live only in these objects: never logged, never in an error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from botocore.auth import SigV4Auth  # type: ignore[import-untyped]
from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]
from botocore.credentials import (  # type: ignore[import-untyped]
    Credentials,
    ReadOnlyCredentials,
    RefreshableCredentials,
)
from botocore.exceptions import BotoCoreError  # type: ignore[import-untyped]
from botocore.session import Session  # type: ignore[import-untyped]

from modelyard.errors import UpstreamFailed
from modelyard.providers.credentials import CredentialMissing, resolve_credential

log = logging.getLogger(__name__)

# Bedrock Runtime's SigV4 signing name (its endpoint prefix is `bedrock-runtime`).
SIGNING_SERVICE = "bedrock"


def credentials_from_reference(reference: str, deployment_id: str) -> Credentials:
    """The catalog reference's `ACCESS_KEY_ID:SECRET_ACCESS_KEY[:SESSION_TOKEN]`."""
    parts = resolve_credential(reference, deployment_id).split(":")
    if len(parts) not in (2, 3) or not all(parts):
        raise CredentialMissing(
            f"deployment '{deployment_id}': credential {reference} is not "
            "ACCESS_KEY_ID:SECRET_ACCESS_KEY or ACCESS_KEY_ID:SECRET_ACCESS_KEY:SESSION_TOKEN"
        )
    return Credentials(parts[0], parts[1], parts[2] if len(parts) == 3 else None)


def chain_credentials(deployment_ids: list[str]) -> Credentials:
    """botocore's standard chain, resolved once while the gateway is built, before it serves
    (it may ask the instance metadata endpoint, a network call with timeouts, when nothing else
    is configured); missing, it stops start-up with a one-line message."""
    credentials = Session().get_credentials()
    if credentials is None:
        raise CredentialMissing(
            f"deployment(s) {', '.join(repr(d) for d in deployment_ids)}: no upstream.credential "
            "and no AWS credentials in the standard chain (AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, AWS_PROFILE and shared files, SSO, container or instance "
            "metadata)"
        )
    return credentials


def quiet_signing_logs() -> None:
    """botocore logs each canonical request at debug level, session token included: never."""
    logging.getLogger("botocore.auth").setLevel(logging.INFO)


class RequestSigner:
    """Signs requests to one region with one set of credentials (shared by deployments)."""

    def __init__(self, credentials: Credentials, region: str) -> None:
        self._credentials = credentials
        self._region = region

    async def signed_headers(
        self, deployment_id: str, url: str, body: bytes, headers: Mapping[str, str]
    ) -> dict[str, str]:
        credentials = self._credentials
        try:
            if isinstance(credentials, RefreshableCredentials) and credentials.refresh_needed():
                frozen = await asyncio.to_thread(credentials.get_frozen_credentials)
            else:
                frozen = credentials.get_frozen_credentials()
        except BotoCoreError as exc:
            log.error(
                "bedrock: refreshing the AWS credentials of %s failed: %s", deployment_id, exc
            )
            raise UpstreamFailed(
                f"Deployment '{deployment_id}' could not refresh its AWS credentials."
            ) from None
        return sign(frozen, self._region, url, body, headers)


def sign(
    credentials: ReadOnlyCredentials, region: str, url: str, body: bytes, headers: Mapping[str, str]
) -> dict[str, str]:
    """`headers` plus X-Amz-Date, X-Amz-Security-Token (session credentials) and Authorization
    for a POST of `body` to `url`. The HTTP client adds `host` as botocore derives it from the
    URL, so the request sent is the request signed."""
    request = AWSRequest(method="POST", url=url, data=body, headers=dict(headers))
    SigV4Auth(credentials, SIGNING_SERVICE, region).add_auth(request)
    return {name: str(value) for name, value in request.headers.items()}
