"""Who the client is: the direct peer, or the hop a trusted proxy vouches for.

- `ClientAddressResolver` believes `X-Forwarded-For` only when the direct peer is a trusted
  proxy. It then walks the list from the right, past trusted proxies, to the first address none
  of them owns. Entries left of that one were written by the client and prove nothing.
- `ClientAddressMiddleware` resolves once per request into `scope["state"]["client_ip"]`, the
  one value auth, audit and network checks read.

Addresses come out canonical (`str(ipaddress.ip_address(...))`), IPv4-mapped IPv6 as plain
IPv4, so the same client always compares equal. Nothing here refuses a request: callers decide.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.types import ASGIApp, Receive, Scope, Send

from modelyard.errors import StartupError
from modelyard.policy.networks import IPAddress, parse_address, parse_network


class ClientAddressResolver:
    def __init__(self, trusted_proxies: Sequence[str]) -> None:
        try:
            self.trusted = tuple(parse_network(entry) for entry in trusted_proxies)
        except ValueError as exc:
            raise StartupError(
                f"trusted_proxies (MODELYARD_TRUSTED_PROXIES, --trusted-proxy): {exc}"
            ) from None

    def resolve(self, peer: str | None, forwarded_for: str | None) -> str | None:
        """The client's address: the peer, or the rightmost hop no trusted proxy owns."""
        if peer is None:
            return None
        client = parse_address(peer)
        if client is None:
            return peer  # not an IP (a Unix socket, an in-process transport): never a proxy
        if not forwarded_for or not self.is_trusted(client):
            return str(client)
        for hop in reversed(forwarded_for.split(",")):
            address = parse_address(hop)
            if address is None:
                break  # past a malformed entry nothing can be believed; keep the last good hop
            client = address
            if not self.is_trusted(address):
                break
        return str(client)

    def is_trusted(self, address: IPAddress) -> bool:
        return any(address in network for network in self.trusted)


class ClientAddressMiddleware:
    def __init__(self, app: ASGIApp, resolver: ClientAddressResolver) -> None:
        self.app = app
        self.resolver = resolver

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            client = scope.get("client")
            # Repeated headers are one list, in order (RFC 9110 section 5.3).
            forwarded = ",".join(
                value.decode("latin-1")
                for name, value in scope["headers"]
                if name == b"x-forwarded-for"
            )
            scope.setdefault("state", {})["client_ip"] = self.resolver.resolve(
                client[0] if client else None, forwarded or None
            )
        await self.app(scope, receive, send)
