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


KEYFRAME_ANSWERED_INTERVAL_S = 0.05
"""Once a keyframe has answered the last request, the next may follow this soon."""


class KeyframeThrottle:
    """Decides when a keyframe request may go out again.

    One request per `interval_s` while nothing answers it (a lost PLI is repeated, not
    flooded). Once a keyframe has passed the relay after the last request
    (`keyframe_seen`), that request is spent: a subscriber that starts waiting after it
    cannot use it, so its request may go out after `answered_interval_s` instead of
    waiting out the interval. When twelve join at once, egresses start one after another;
    without this, one that starts just after a keyframe waited 0.3 s for the next PLI.
    """

    def __init__(
        self,
        interval_s: float = KEYFRAME_REQUEST_INTERVAL_S,
        answered_interval_s: float = KEYFRAME_ANSWERED_INTERVAL_S,
    ) -> None:
        self._interval_s = interval_s
        self._answered_interval_s = min(answered_interval_s, interval_s)
        self._last_at: float | None = None
        self._answered = False

    def allow(self, now: float) -> bool:
        if self._last_at is not None:
            limit = self._answered_interval_s if self._answered else self._interval_s
            if now - self._last_at < limit:
                return False
        self._last_at = now
        self._answered = False
        return True

    @property
    def awaiting(self) -> bool:
        """A request went out and no keyframe has answered it yet."""
        return self._last_at is not None and not self._answered

    def keyframe_seen(self, now: float) -> None:
        """A keyframe from the publisher reached the relay at `now`."""
        if self._last_at is not None and now >= self._last_at:
            self._answered = True
