"""Remote candidates outside the allow-list never reach aioice; loopback gathering."""

from __future__ import annotations

import ipaddress

import aioice.ice
import pytest

from server.media.ice import LOOPBACK_NETWORKS, enable_loopback_gathering, filter_remote_candidates

SDP = "\r\n".join(
    [
        "v=0",
        "m=audio 9 UDP/TLS/RTP/SAVPF 96",
        "a=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host",
        "a=candidate:2 1 udp 2130706431 169.254.169.254 80 typ host",
        "a=candidate:3 1 udp 2130706431 10.0.0.5 5000 typ host",
        "a=candidate:4 1 udp 2130706431 abcd.local 5000 typ host",
        "a=candidate:5 1 udp 1694498815 ::1 5001 typ host",
        "a=candidate:6 1 udp",
        "a=end-of-candidates",
        "",
    ]
)


def test_only_allowed_candidates_remain() -> None:
    kept = filter_remote_candidates(SDP, LOOPBACK_NETWORKS)
    assert "127.0.0.1" in kept and "::1 5001" in kept
    for dropped in ("169.254.169.254", "10.0.0.5", "abcd.local", "candidate:6"):
        assert dropped not in kept
    assert "a=end-of-candidates" in kept and kept.startswith("v=0\r\n")


def test_empty_allow_list_allows_nothing() -> None:
    assert "a=candidate" not in filter_remote_candidates(SDP, ())


def test_private_range_when_configured() -> None:
    kept = filter_remote_candidates(SDP, (ipaddress.ip_network("10.0.0.0/8"),))
    assert "10.0.0.5" in kept and "127.0.0.1" not in kept


def test_loopback_gathering_is_idempotent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["192.0.2.9"])
    enable_loopback_gathering()
    enable_loopback_gathering()
    assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False) == [
        "127.0.0.1",
        "192.0.2.9",
    ]
