"""Recent packets of one published track, by sequence number, to answer NACKs.

One cache per publisher track, keyed by the publisher's sequence numbers: subscribers map
their own sequence numbers back before asking, so the packets are stored once, not once
per subscriber.
"""

from __future__ import annotations

from aiortc.rtp import RtpPacket

DEFAULT_CAPACITY = 512


class PacketCache:
    """A ring of the last `capacity` packets (aiortc's own history keeps 128)."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self._capacity = capacity
        self._slots: list[RtpPacket | None] = [None] * capacity

    def put(self, packet: RtpPacket) -> None:
        self._slots[packet.sequence_number % self._capacity] = packet

    def get(self, sequence_number: int) -> RtpPacket | None:
        """The packet with this sequence number, if it is still held."""
        packet = self._slots[sequence_number % self._capacity]
        if packet is None or packet.sequence_number != sequence_number:
            return None
        return packet
