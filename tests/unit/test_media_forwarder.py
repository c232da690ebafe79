"""Ingress/Egress behaviour with a recording stand-in for aiortc's DTLS transport."""

from __future__ import annotations

from typing import Any

from aiortc.rtcrtpparameters import (
    RTCRtpCodecParameters,
    RTCRtpReceiveParameters,
    RTCRtpSendParameters,
)
from aiortc.rtp import (
    HeaderExtensionsMap,
    RtcpPacket,
    RtcpPsfbPacket,
    RtcpRtpfbPacket,
    RtpPacket,
)

from server.media.forwarder import Egress, Ingress

VP8_IN = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
VP8_OUT = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=120)
KEY = bytes([0x10, 0x00, 0xAA])
DELTA = bytes([0x10, 0x01, 0xBB])


class FakeTransport:
    """Records what the relay would SRTP-protect and send."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self._rtp_header_extensions_map = HeaderExtensionsMap()

    def _register_rtp_receiver(self, *args: Any) -> None: ...
    def _register_rtp_sender(self, *args: Any) -> None: ...
    def _unregister_rtp_receiver(self, *args: Any) -> None: ...
    def _unregister_rtp_sender(self, *args: Any) -> None: ...

    async def _send_rtp(self, data: bytes) -> None:
        self.sent.append(data)


async def _pair() -> tuple[Ingress, FakeTransport, Egress, FakeTransport]:
    seen: list[str] = []
    ingress = Ingress("video", rtcp_ssrc=7, on_first_packet=seen.append, clock=lambda: 100.0)
    publisher, subscriber = FakeTransport(), FakeTransport()
    await ingress.bind(publisher, RTCRtpReceiveParameters(codecs=[VP8_IN]))  # type: ignore[arg-type]
    egress = Egress(ingress, ssrc=555)
    await egress.bind(subscriber, RTCRtpSendParameters(codecs=[VP8_OUT], muxId="3"))  # type: ignore[arg-type]
    egress.start(ingress)
    return ingress, publisher, egress, subscriber


def _rtp(seq: int, payload: bytes) -> RtpPacket:
    return RtpPacket(payload_type=96, sequence_number=seq, timestamp=seq * 3000, ssrc=42,
                     payload=payload)


async def test_waits_for_keyframe_asks_for_one_then_rewrites() -> None:
    ingress, publisher, _, subscriber = await _pair()
    await ingress._handle_rtp_packet(_rtp(10, DELTA), 0)
    assert subscriber.sent == []
    plis = [p for d in publisher.sent for p in RtcpPacket.parse(d)]
    assert isinstance(plis[0], RtcpPsfbPacket) and plis[0].media_ssrc == 42

    await ingress._handle_rtp_packet(_rtp(11, KEY), 0)
    await ingress._handle_rtp_packet(_rtp(12, DELTA), 0)
    out = [RtpPacket.parse(d) for d in subscriber.sent]
    assert [p.ssrc for p in out] == [555, 555]
    assert [p.payload_type for p in out] == [120, 120]
    assert (out[1].sequence_number - out[0].sequence_number) % 65536 == 1
    assert out[0].payload == KEY


async def test_nack_is_answered_from_the_cache_and_pli_is_forwarded() -> None:
    ingress, publisher, egress, subscriber = await _pair()
    await ingress._handle_rtp_packet(_rtp(11, KEY), 0)
    first = RtpPacket.parse(subscriber.sent[0])
    nack = RtcpRtpfbPacket(fmt=1, ssrc=9, media_ssrc=555)
    nack.lost = [first.sequence_number]
    await egress._handle_rtcp_packet(nack)
    again = RtpPacket.parse(subscriber.sent[-1])
    assert again.sequence_number == first.sequence_number and again.payload == KEY

    assert publisher.sent == []  # the keyframe came first: nothing was requested
    pli = RtcpPsfbPacket(fmt=1, ssrc=9, media_ssrc=555)
    await egress._handle_rtcp_packet(pli)
    await egress._handle_rtcp_packet(pli)
    forwarded = [p for d in publisher.sent for p in RtcpPacket.parse(d)]
    assert len(forwarded) == 1  # the second is throttled (same clock)
    assert isinstance(forwarded[0], RtcpPsfbPacket) and forwarded[0].media_ssrc == 42


async def test_disallowed_kind_is_dropped_at_ingress() -> None:
    ingress, _, _, subscriber = await _pair()
    ingress.allowed = False
    await ingress._handle_rtp_packet(_rtp(11, KEY), 0)
    assert subscriber.sent == [] and ingress.packets_received == 1


async def test_extensions_are_rewritten_for_the_subscriber_and_padding_kept() -> None:
    from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
    from aiortc.rtp import HeaderExtensions

    ingress, _, egress, subscriber = await _pair()
    subscriber._rtp_header_extensions_map.configure(
        RTCRtpParameters(
            headerExtensions=[
                RTCRtpHeaderExtensionParameters(id=4, uri="urn:ietf:params:rtp-hdrext:sdes:mid"),
                RTCRtpHeaderExtensionParameters(
                    id=6, uri="http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
                ),
            ]
        )
    )
    await egress.bind(subscriber, RTCRtpSendParameters(codecs=[VP8_OUT], muxId="3"))  # type: ignore[arg-type]
    key = _rtp(11, KEY)
    key.extensions = HeaderExtensions(mid="0", abs_send_time=1234, transport_sequence_number=9)
    padded = _rtp(12, DELTA)
    padded.padding_size = 4
    await ingress._handle_rtp_packet(key, 0)
    await ingress._handle_rtp_packet(padded, 0)
    out = [RtpPacket.parse(d, subscriber._rtp_header_extensions_map) for d in subscriber.sent]
    assert out[0].extensions == HeaderExtensions(mid="3", abs_send_time=1234)
    assert out[0].payload == KEY and out[1].payload == DELTA and out[1].padding_size == 4
    assert [p.ssrc for p in out] == [555, 555]
