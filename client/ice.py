"""Loopback ICE gathering for the Python client (tests and demos on one machine).

aioice leaves 127.0.0.1 out of the host candidates it gathers (`get_host_addresses` is
the single place it decides). The relay has the same patch in server/media/ice.py, but
client/ may not import server/; a shared marker attribute keeps the two from stacking.
"""

from __future__ import annotations

from collections.abc import Iterable

import aioice.ice


def enable_loopback_gathering() -> None:
    """Make aioice offer 127.0.0.1 first among the host candidates, process-wide."""
    current = aioice.ice.get_host_addresses
    if getattr(current, "_circle_loopback", False):
        return

    def with_loopback(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        found: Iterable[str] = current(use_ipv4=use_ipv4, use_ipv6=use_ipv6)
        return (["127.0.0.1"] if use_ipv4 else []) + [a for a in found if a != "127.0.0.1"]

    with_loopback._circle_loopback = True  # type: ignore[attr-defined]
    aioice.ice.get_host_addresses = with_loopback
