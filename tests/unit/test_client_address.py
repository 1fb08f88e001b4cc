"""Whose address a request carries: X-Forwarded-For is believed only from trusted proxies."""

from __future__ import annotations

import pytest
from starlette.types import Message, Receive, Scope, Send

from modelyard.api.client_address import ClientAddressMiddleware, ClientAddressResolver
from modelyard.errors import StartupError
from modelyard.policy.networks import AllowedNetworks

PROXIES = ClientAddressResolver(["10.0.0.0/8", "2001:db8:ffff::/48"])


def test_xff_from_an_untrusted_peer_is_ignored() -> None:
    assert PROXIES.resolve("203.0.113.9", "10.1.1.1, 198.51.100.1") == "203.0.113.9"


def test_without_trusted_proxies_the_peer_is_always_the_client() -> None:
    assert ClientAddressResolver([]).resolve("10.0.0.1", "198.51.100.1") == "10.0.0.1"


def test_a_trusted_proxy_is_believed_about_its_client() -> None:
    assert PROXIES.resolve("10.0.0.1", "198.51.100.7") == "198.51.100.7"


def test_trusted_hops_are_skipped_to_the_rightmost_untrusted_address() -> None:
    chain = "1.2.3.4, 198.51.100.7, 10.2.0.1, 10.3.0.1"
    assert PROXIES.resolve("10.0.0.1", chain) == "198.51.100.7"


def test_when_every_hop_is_trusted_the_leftmost_is_the_client() -> None:
    assert PROXIES.resolve("10.0.0.1", "10.9.9.9, 10.8.8.8") == "10.9.9.9"


def test_a_trusted_peer_without_xff_is_itself_the_client() -> None:
    assert PROXIES.resolve("10.0.0.1", None) == "10.0.0.1"
    assert PROXIES.resolve("10.0.0.1", "") == "10.0.0.1"


@pytest.mark.parametrize(
    ("forwarded_for", "client"),
    [
        ("198.51.100.7, unknown", "10.0.0.1"),
        ("198.51.100.7, , 10.2.0.1", "10.2.0.1"),
        ("198.51.100.7, 10.2.0.1:notaport", "10.0.0.1"),
        ("unknown, 10.2.0.1", "10.2.0.1"),
        ("198.51.100.7,10.2.0.1", "198.51.100.7"),
    ],
)
def test_a_malformed_hop_stops_the_walk_at_the_last_good_address(
    forwarded_for: str, client: str
) -> None:
    assert PROXIES.resolve("10.0.0.1", forwarded_for) == client


def test_ports_some_proxies_append_are_dropped() -> None:
    assert PROXIES.resolve("10.0.0.1", "198.51.100.7:5123") == "198.51.100.7"
    assert PROXIES.resolve("10.0.0.1", "[2001:db8::7]:443") == "2001:db8::7"


def test_ipv6_peers_and_hops_are_canonical() -> None:
    assert PROXIES.resolve("2001:db8:ffff::1", "2001:DB8:0:0::7") == "2001:db8::7"
    assert PROXIES.resolve("2001:db8::1", "198.51.100.7") == "2001:db8::1"


def test_ipv4_mapped_ipv6_is_the_ipv4_address() -> None:
    assert PROXIES.resolve("::ffff:10.0.0.1", "::ffff:198.51.100.7") == "198.51.100.7"
    mapped_proxies = ClientAddressResolver(["::ffff:10.0.0.0/104"])
    assert mapped_proxies.resolve("10.0.0.1", "198.51.100.7") == "198.51.100.7"


def test_a_peer_that_is_not_an_ip_is_returned_as_is_and_never_trusted() -> None:
    assert PROXIES.resolve("testclient", "10.1.1.1") == "testclient"
    assert PROXIES.resolve(None, "198.51.100.7") is None


def test_an_invalid_trusted_proxy_stops_start_naming_the_setting() -> None:
    with pytest.raises(StartupError, match=r"trusted_proxies .*'10\.0\.0\.300/8'"):
        ClientAddressResolver(["10.0.0.0/8", "10.0.0.300/8"])


def test_allowed_networks_admit_only_their_members() -> None:
    allowed = AllowedNetworks.from_cidrs(["192.168.0.0/16", "2001:db8::/32", "203.0.113.5"])
    assert allowed.allows("192.168.4.4")
    assert allowed.allows("::ffff:192.168.4.4")
    assert allowed.allows("2001:db8::1")
    assert allowed.allows("203.0.113.5")
    assert not allowed.allows("203.0.113.6")
    assert not allowed.allows("10.0.0.1")
    assert not allowed.allows(None)
    assert not allowed.allows("testclient")


def test_empty_allowed_networks_restrict_nothing() -> None:
    assert AllowedNetworks().allows("198.51.100.7")
    assert AllowedNetworks.from_cidrs([]).allows(None)


def test_a_bad_allowed_network_is_named() -> None:
    with pytest.raises(ValueError, match=r"'10\.0\.0\.0/33' is not an IP network"):
        AllowedNetworks.from_cidrs(["10.0.0.0/8", "10.0.0.0/33"])


async def call_middleware(scope: Scope) -> Scope:
    seen: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope)

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        pass

    await ClientAddressMiddleware(app, PROXIES)(scope, receive, send)
    return seen[0]


@pytest.mark.anyio
async def test_middleware_stores_the_resolved_address_beside_existing_state() -> None:
    scope: Scope = {
        "type": "http",
        "client": ("10.0.0.1", 50000),
        "headers": [
            (b"x-forwarded-for", b"1.2.3.4, 198.51.100.7"),
            (b"x-forwarded-for", b"10.2.0.1"),
        ],
        "state": {"request_id": "r1"},
    }
    seen = await call_middleware(scope)
    assert seen["state"] == {"request_id": "r1", "client_ip": "198.51.100.7"}


@pytest.mark.anyio
async def test_middleware_creates_state_and_handles_a_missing_client() -> None:
    seen = await call_middleware({"type": "http", "client": None, "headers": []})
    assert seen["state"] == {"client_ip": None}


@pytest.mark.anyio
async def test_middleware_leaves_lifespan_alone() -> None:
    seen = await call_middleware({"type": "lifespan"})
    assert "state" not in seen
