"""The RTCP the relay originates towards publishers: keyframe requests and NACKs.

Subscribers' PLI and FIR are not forwarded verbatim (their SSRCs mean nothing on the
publisher's connection): the relay sends its own PLI, rate-limited per publisher track,
and answers NACKs from its cache, asking the publisher only for what it does not hold.
"""

from __future__ import annotations

from aiortc.rtp import (
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpPsfbPacket,
    RtcpRtpfbPacket,
)

KEYFRAME_REQUEST_INTERVAL_S = 0.3
"""At most one PLI per publisher track this often: every joiner asks, one keyframe serves all."""


def pli(sender_ssrc: int, media_ssrc: int) -> bytes:
    """A Picture Loss Indication (RFC 4585 6.3.1) for `media_ssrc`."""
    return bytes(RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=sender_ssrc, media_ssrc=media_ssrc))


def nack(sender_ssrc: int, media_ssrc: int, lost: list[int]) -> bytes:
    """A generic NACK (RFC 4585 6.2.1) for the sequence numbers in `lost`."""
    packet = RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=sender_ssrc, media_ssrc=media_ssrc)
    packet.lost = sorted(lost)
    return bytes(packet)


class KeyframeThrottle:
    """Decides when a keyframe request may go out again."""

    def __init__(self, interval_s: float = KEYFRAME_REQUEST_INTERVAL_S) -> None:
        self._interval_s = interval_s
        self._last_at: float | None = None

    def allow(self, now: float) -> bool:
        if self._last_at is not None and now - self._last_at < self._interval_s:
            return False
        self._last_at = now
        return True
