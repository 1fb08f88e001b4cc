"""IP addresses and networks as Modelyard compares them: canonical, IPv4-mapped IPv6 as plain
IPv4, so the same client always compares equal; and `AllowedNetworks`, whether an address is
inside a project's CIDR list."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Some proxies (Azure Application Gateway among them) append the peer's port to each hop.
_WITH_PORT = re.compile(r"\[(?P<v6>[^\]]+)\](?::[0-9]{1,5})?|(?P<v4>[0-9.]+):[0-9]{1,5}")


def parse_address(text: str) -> IPAddress | None:
    """One address as a peer or proxy writes it, or None if it is not one."""
    text = text.strip()
    with_port = _WITH_PORT.fullmatch(text)
    if with_port is not None:
        text = with_port["v6"] or with_port["v4"]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def parse_network(cidr: str) -> IPNetwork:
    """A CIDR (a bare address is a /32 or /128); ValueError names the entry if it is not one."""
    try:
        network = ipaddress.ip_network(cidr.strip())
    except ValueError as exc:
        raise ValueError(f"{cidr!r} is not an IP network in CIDR form ({exc})") from None
    mapped = network.network_address
    if isinstance(mapped, ipaddress.IPv6Address) and mapped.ipv4_mapped and network.prefixlen >= 96:
        # Addresses are compared as IPv4 once unmapped, so the network must be too.
        return ipaddress.IPv4Network((mapped.ipv4_mapped, network.prefixlen - 96))
    return network


@dataclass(frozen=True)
class AllowedNetworks:
    """The networks a project's clients may call from; empty means from anywhere."""

    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_cidrs(cls, cidrs: Iterable[str]) -> AllowedNetworks:
        return cls(tuple(parse_network(cidr) for cidr in cidrs))

    def allows(self, address: str | None) -> bool:
        if not self.networks:
            return True
        parsed = parse_address(address) if address is not None else None
        return parsed is not None and any(parsed in network for network in self.networks)
