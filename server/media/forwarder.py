"""Encoded RTP from one publisher track to many subscriber tracks, never decoded.

`Ingress` sits in the publisher connection's RTP router where aiortc's decoding receiver
would be; `Egress` sits in a subscriber connection's router where aiortc's encoding sender
would be, so that subscriber's PLI, FIR and NACK for the forwarded SSRC reach it.
Per subscriber the packet gets the subscriber's SSRC, payload type, sequence numbers,
timestamps, and header extensions re-encoded with that connection's ids (mid,
abs-send-time, audio level; transport-wide sequence numbers, RIDs and unknown ids are
dropped, they describe the publisher's connection). The header is patched in place per
packet (`rewrite.HeaderWriter`), not serialized from a packet object: this is the hot path.

Nothing on the per-packet path suspends: the publisher's SRTP reaches `Ingress` straight
from the socket (`aiortc_seam.receive_rtp_directly`), and each subscriber's copy is
protected and handed to its socket synchronously (`aiortc_seam.SendPath`), so one
received packet costs no task, no event-loop turn and no coroutine per subscriber.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable

from aiortc import RTCDtlsTransport
from aiortc.rtcrtpparameters import (
    RTCRtpCodecParameters,
    RTCRtpReceiveParameters,
    RTCRtpSendParameters,
)
from aiortc.rtp import (
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    AnyRtcpPacket,
    HeaderExtensions,
    RtcpPsfbPacket,
    RtcpRtpfbPacket,
    RtpPacket,
    unwrap_rtx,
)

from server.media import aiortc_seam, rtcp
from server.media.cache import PacketCache
from server.media.keyframe import starts_keyframe
from server.media.rewrite import ExtensionIds, HeaderWriter, StreamRewriter

logger = logging.getLogger(__name__)

Clock = Callable[[], float]

SPEECH_LEVEL = 50
"""An audio packet whose RFC 6464 level is at most this (-50 dBov or louder) is speech.
The voice-activity bit is not used: aiortc never sets it (docs/media.md, "Talk time")."""


def _is_rtx(codec: RTCRtpCodecParameters) -> bool:
    return codec.mimeType.lower().endswith("/rtx")


def _same_codec(a: RTCRtpCodecParameters, b: RTCRtpCodecParameters) -> bool:
    """Whether a payload of codec `a` can be labelled as codec `b` without transcoding."""
    if a.mimeType.lower() != b.mimeType.lower() or a.clockRate != b.clockRate:
        return False
    if a.mimeType.lower() == "video/h264":
        mode_a = str(a.parameters.get("packetization-mode", "0"))
        mode_b = str(b.parameters.get("packetization-mode", "0"))
        return mode_a == mode_b
    return True


class Ingress:
    """One published track: receives its RTP, caches it, fans it out, asks for keyframes."""

    def __init__(
        self,
        kind: str,
        rtcp_ssrc: int,
        on_first_packet: Callable[[str], None],
        clock: Clock = time.monotonic,
    ) -> None:
        self.kind = kind
        self._video = kind == "video"
        self.allowed = True
        """False drops everything at once (the grant no longer allows this kind)."""
        self.packets_received = 0
        self.packets_dropped = 0
        """Received while `allowed` was False (muted or listen-only)."""
        self.speech_packets = 0
        """Allowed audio packets whose audio level was speech (`SPEECH_LEVEL`): talk time."""
        self._rtcp_ssrc = rtcp_ssrc
        self._on_first_packet = on_first_packet
        self._clock = clock
        self._cache = PacketCache()
        self._codecs: dict[int, RTCRtpCodecParameters] = {}
        self._rtx_pts: frozenset[int] = frozenset()
        self._rtx_ssrcs: dict[int, int] = {}
        self._egresses: set[Egress] = set()
        self._fanout: tuple[Egress, ...] = ()
        """`_egresses` as a tuple, rebuilt on attach/detach (iterated per packet)."""
        self._transport: RTCDtlsTransport | None = None
        self._send_path: aiortc_seam.SendPath | None = None
        self._media_ssrc: int | None = None
        self._throttle = rtcp.KeyframeThrottle()
        self._keyframe_pending = False

    @property
    def primary_codec(self) -> RTCRtpCodecParameters | None:
        """The codec the publisher sends (the first negotiated one that is not RTX)."""
        return next((c for c in self._codecs.values() if not _is_rtx(c)), None)

    async def bind(self, transport: RTCDtlsTransport, parameters: RTCRtpReceiveParameters) -> None:
        """Take the place of aiortc's receiver once the publisher's transport is up, and
        again after every renegotiation.

        A renegotiation can renumber the payload types: aiortc's `createOffer` offers its
        own numbering (opus 96) and a browser that offered opus as 111 then sends 96. The
        RTP router delivers a packet only when its payload type is registered for this
        receiver, so the registration follows the latest parameters, or the publisher's
        audio would stop reaching the relay after the first relay offer.
        """
        self._codecs = {
            c.payloadType: c for c in parameters.codecs if c.payloadType is not None
        }
        self._rtx_pts = frozenset(pt for pt, c in self._codecs.items() if _is_rtx(c))
        for encoding in parameters.encodings:
            if encoding.rtx is not None:
                self._rtx_ssrcs[encoding.rtx.ssrc] = encoding.ssrc
        if self._transport is None:
            self._transport = transport
            self._send_path = aiortc_seam.SendPath(transport)
            aiortc_seam.register_rtp_receiver(transport, self, parameters)
            aiortc_seam.receive_rtp_directly(transport)
        else:
            aiortc_seam.unregister_rtp_receiver(self._transport, self)
            aiortc_seam.register_rtp_receiver(self._transport, self, parameters)

    def unbind(self) -> None:
        if self._transport is not None:
            aiortc_seam.unregister_rtp_receiver(self._transport, self)
        for egress in tuple(self._egresses):
            egress.stop()

    def attach(self, egress: Egress) -> None:
        self._egresses.add(egress)
        self._fanout = tuple(self._egresses)

    def detach(self, egress: Egress) -> None:
        self._egresses.discard(egress)
        self._fanout = tuple(self._egresses)

    def _handle_disconnect(self) -> None:
        """The publisher's transport went away; the relay learns it from the plan."""

    async def _handle_rtcp_packet(self, packet: AnyRtcpPacket) -> None:
        """Publisher SRs are not translated for subscribers (see docs/media.md)."""

    async def _handle_rtp_packet(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        codec = self._codecs.get(packet.payload_type)
        if codec is None:
            return
        if codec.payloadType in self._rtx_pts:
            apt = codec.parameters.get("apt")
            original_ssrc = self._rtx_ssrcs.get(packet.ssrc, self._media_ssrc)
            if not isinstance(apt, int) or apt not in self._codecs or original_ssrc is None:
                return
            if len(packet.payload) < 2:
                return  # RTX padding, used only for bandwidth probing
            packet = unwrap_rtx(packet, payload_type=apt, ssrc=original_ssrc)
            codec = self._codecs[apt]
        if self.packets_received == 0:
            self._on_first_packet(self.kind)
        self.packets_received += 1
        self._media_ssrc = packet.ssrc
        if not self.allowed:
            self.packets_dropped += 1
            return
        self._cache.put(packet)
        now = self._clock()
        if self._video:
            if self._throttle.awaiting and starts_keyframe(codec.mimeType, packet.payload):
                self._throttle.keyframe_seen(now)
        elif (level := packet.extensions.audio_level) is not None and level[1] <= SPEECH_LEVEL:
            self.speech_packets += 1
        waiting = self._keyframe_pending
        for egress in self._fanout:
            egress.forward(packet, codec, now)
            if egress.waiting_for_keyframe:
                waiting = True
        if waiting:
            self.send_keyframe_request()

    async def request_keyframe(self) -> None:
        """Send the publisher a PLI, at most once per throttle interval."""
        self.send_keyframe_request()

    def send_keyframe_request(self) -> None:
        """`request_keyframe`, synchronously (the send never waits)."""
        if not self._video:
            return
        if self._transport is None or self._media_ssrc is None:
            self._keyframe_pending = True
            return
        if not self._throttle.allow(self._clock()):
            return
        self._keyframe_pending = False
        self._send_rtcp(rtcp.pli(self._rtcp_ssrc, self._media_ssrc))

    def cached(self, sequence_number: int) -> RtpPacket | None:
        return self._cache.get(sequence_number)

    async def request_retransmission(self, sequence_numbers: list[int]) -> None:
        """NACK the publisher for packets the cache no longer (or never) held."""
        self.send_retransmission_request(sequence_numbers)

    def send_retransmission_request(self, sequence_numbers: list[int]) -> None:
        """`request_retransmission`, synchronously."""
        if self._transport is None or self._media_ssrc is None or not sequence_numbers:
            return
        self._send_rtcp(rtcp.nack(self._rtcp_ssrc, self._media_ssrc, sequence_numbers))

    def _send_rtcp(self, data: bytes) -> None:
        send_path = self._send_path
        if send_path is None:  # unbound: the callers have returned already
            return
        with contextlib.suppress(*aiortc_seam.SEND_ERRORS):
            send_path.rtcp(data)


class Egress:
    """One forwarded track on one subscriber's connection."""

    def __init__(self, ingress: Ingress, ssrc: int) -> None:
        self._ssrc = ssrc
        """The SSRC the subscriber was told about; aiortc's router routes feedback by it."""
        self.ingress = ingress
        self.waiting_for_keyframe = False
        self.packets_sent = 0
        self.packets_failed = 0
        """Sends refused: the subscriber's transport was not connected, or libsrtp refused."""
        self._transport: RTCDtlsTransport | None = None
        self._send_rtp: Callable[[bytes | bytearray, bytes], None] | None = None
        self._mid: str | None = None
        self._codecs: list[RTCRtpCodecParameters] = []
        self._pt_map: dict[int, int | None] = {}
        self._rewriter: StreamRewriter | None = None
        self._header: HeaderWriter | None = None
        self._last_in_ssrc: int | None = None
        self._running = False

    @property
    def bound(self) -> bool:
        return self._transport is not None

    async def bind(self, transport: RTCDtlsTransport, parameters: RTCRtpSendParameters) -> None:
        """Take the place of aiortc's sender once the subscriber's answer is applied."""
        self._mid = parameters.muxId
        self._codecs = [c for c in parameters.codecs if not _is_rtx(c)]
        self._pt_map = {}
        if self._transport is None:
            self._transport = transport
            self._send_rtp = aiortc_seam.SendPath(transport).rtp
            aiortc_seam.register_rtp_sender(transport, self, parameters)
            aiortc_seam.receive_rtp_directly(transport)  # this subscriber's RTCP
        ids = ExtensionIds.from_map(aiortc_seam.header_extensions(self._transport))
        self._header = HeaderWriter(self._ssrc, self._mid, ids)

    def unbind(self) -> None:
        self.stop()
        if self._transport is not None:
            aiortc_seam.unregister_rtp_sender(self._transport, self)

    def start(self, ingress: Ingress) -> None:
        """Begin forwarding `ingress` (video waits for the next keyframe, which it asks for)."""
        if self._running and ingress is self.ingress:
            return
        self.stop()
        self.ingress = ingress
        self._running = True
        self._restart_stream()
        ingress.attach(self)

    def stop(self) -> None:
        """Stop forwarding at once."""
        self.ingress.detach(self)
        self._running = False
        if self._rewriter is not None:
            self._rewriter.pause()

    def _restart_stream(self) -> None:
        if self._rewriter is not None:
            self._rewriter.pause()
        self.waiting_for_keyframe = self.ingress.kind == "video"

    def _payload_type(self, codec: RTCRtpCodecParameters) -> int | None:
        if codec.payloadType is None:
            return None
        if codec.payloadType not in self._pt_map:
            match = next((c for c in self._codecs if _same_codec(codec, c)), None)
            self._pt_map[codec.payloadType] = None if match is None else match.payloadType
            if self._rewriter is None and match is not None:
                self._rewriter = StreamRewriter(match.clockRate)
        return self._pt_map[codec.payloadType]

    def forward(self, packet: RtpPacket, codec: RTCRtpCodecParameters, now: float) -> None:
        """Rewrite `packet` for this subscriber and send it (may wait for a keyframe)."""
        if self._send_rtp is None:
            return
        payload_type = self._pt_map.get(codec.payloadType)  # type: ignore[arg-type]
        if payload_type is None:
            payload_type = self._payload_type(codec)
        if payload_type is None or self._rewriter is None:
            return
        if packet.ssrc != self._last_in_ssrc:
            self._last_in_ssrc = packet.ssrc
            self._restart_stream()
        if self.waiting_for_keyframe:
            if not starts_keyframe(codec.mimeType, packet.payload):
                return
            self.waiting_for_keyframe = False
        self._send(packet, payload_type, now)

    def _send(self, packet: RtpPacket, payload_type: int, now: float) -> None:
        send_rtp, rewriter, transport = self._send_rtp, self._rewriter, self._transport
        if send_rtp is None or rewriter is None or transport is None:
            return  # unbound, or no codec matched yet (the callers have returned already)
        mapped = rewriter.map(packet.sequence_number, packet.timestamp, now)
        if mapped is None:
            return
        try:
            if packet.csrc or packet.padding_size or self._header is None:
                send_rtp(self._serialize(transport, packet, payload_type, mapped), b"")
            else:
                extensions = packet.extensions
                send_rtp(
                    self._header.header(
                        payload_type,
                        packet.marker,
                        mapped[0],
                        mapped[1],
                        extensions.abs_send_time,
                        extensions.audio_level,
                    ),
                    packet.payload,
                )
        except aiortc_seam.SEND_ERRORS:
            self.packets_failed += 1
            return
        self.packets_sent += 1

    def _serialize(
        self,
        transport: RTCDtlsTransport,
        packet: RtpPacket,
        payload_type: int,
        mapped: tuple[int, int],
    ) -> bytes:
        """The general path (CSRCs, padding): rare, so building a packet object is fine."""
        out = RtpPacket(
            payload_type=payload_type,
            marker=packet.marker,
            sequence_number=mapped[0],
            timestamp=mapped[1],
            ssrc=self._ssrc,
            payload=packet.payload,
        )
        out.csrc = packet.csrc
        out.padding_size = packet.padding_size
        out.extensions = HeaderExtensions(
            mid=self._mid,
            abs_send_time=packet.extensions.abs_send_time,
            audio_level=packet.extensions.audio_level,
        )
        return out.serialize(aiortc_seam.header_extensions(transport))

    async def _handle_rtcp_packet(self, packet: AnyRtcpPacket) -> None:
        if not self._running:
            return
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
            self.ingress.send_keyframe_request()
        elif isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
            self._retransmit(packet.lost)

    def _retransmit(self, lost: list[int]) -> None:
        """Answer a NACK from the cache; ask the publisher for what is not there."""
        if self._rewriter is None:
            return
        missing: list[int] = []
        for out_seq in lost:
            in_seq = self._rewriter.unmap(out_seq)
            if in_seq is None:
                continue
            cached = self.ingress.cached(in_seq)
            if cached is None:
                missing.append(in_seq)
                continue
            codec_pt = self._pt_map.get(cached.payload_type)
            if codec_pt is not None:
                self._send(cached, codec_pt, time.monotonic())
        self.ingress.send_retransmission_request(missing)
