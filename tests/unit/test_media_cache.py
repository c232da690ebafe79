"""The NACK cache returns exactly the packet asked for, or nothing."""

from __future__ import annotations

from aiortc.rtp import RtpPacket

from server.media.cache import PacketCache


def test_hit_miss_and_overwrite() -> None:
    cache = PacketCache(capacity=4)
    for seq in range(6):
        cache.put(RtpPacket(sequence_number=seq))
    assert cache.get(5) is not None and cache.get(2) is not None
    assert cache.get(1) is None  # overwritten by 5
    assert cache.get(9) is None
