"""ICE policy for the relay: which remote candidates it may probe, which local ones it offers.

aioice sends connectivity checks to any address a remote peer names (127.0.0.1, private
ranges, 169.254.169.254...), so a client could make the relay probe hosts for it. Remote
candidates are therefore filtered against an allow-list in the SDP text itself, before
aiortc parses it and hands the candidates to aioice. Hostname (mDNS) candidates are dropped:
resolving them is a probe too.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

import aioice.ice
import ifaddr

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

LOOPBACK_NETWORKS: tuple[IPNetwork, ...] = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
)


def candidate_allowed(line: str, allowed: Sequence[IPNetwork]) -> bool:
    """Whether an `a=candidate:` line names an address inside `allowed`.

    Grammar (RFC 8839): foundation component transport priority address port typ ...
    """
    fields = line.split()
    if len(fields) < 6:
        return False
    try:
        address = ipaddress.ip_address(fields[4])
        port = int(fields[5])
    except ValueError:
        return False
    if not 0 < port < 65536:
        return False  # aioice would send to it anyway: an OverflowError kills the socket
    return any(address in network for network in allowed)


def filter_remote_candidates(sdp: str, allowed: Sequence[IPNetwork]) -> str:
    """`sdp` without the candidate lines whose address is not in `allowed`."""
    lines = sdp.splitlines()
    kept = [
        line
        for line in lines
        if not line.startswith("a=candidate:") or candidate_allowed(line, allowed)
    ]
    return "\r\n".join(kept) + "\r\n"


def local_interface_networks() -> tuple[IPNetwork, ...]:
    """This machine's own interface addresses, each as a single-host network.

    For tests on one machine: traffic between two sockets on the machine's own addresses
    never leaves it, and a headless browser offers only these (no loopback candidates).
    Link-local IPv6 addresses are left out (aioice does not gather them either).
    """
    networks: list[IPNetwork] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, str):
                networks.append(ipaddress.ip_network(ip.ip))
            elif ip.ip[2] == 0:
                networks.append(ipaddress.ip_network(ip.ip[0]))
    return tuple(networks)


def loopback_test_networks() -> tuple[IPNetwork, ...]:
    """What a relay bound to loopback for tests may probe: loopback and its own addresses."""
    return LOOPBACK_NETWORKS + local_interface_networks()


def enable_loopback_gathering() -> None:
    """Make aioice offer 127.0.0.1 as a host candidate, process-wide and idempotently.

    aioice leaves 127.0.0.1 out in `get_host_addresses`, the single place it decides which
    local addresses to gather; without it a relay and clients on one machine would pair
    only over the machine's other addresses. The Python client has its own copy of this
    patch (client/ may not import server/); a marker attribute keeps the two from stacking.
    """
    current = aioice.ice.get_host_addresses
    if getattr(current, "_circle_loopback", False):
        return

    def with_loopback(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        found: Iterable[str] = current(use_ipv4=use_ipv4, use_ipv6=use_ipv6)
        return (["127.0.0.1"] if use_ipv4 else []) + [a for a in found if a != "127.0.0.1"]

    with_loopback._circle_loopback = True  # type: ignore[attr-defined]
    aioice.ice.get_host_addresses = with_loopback
