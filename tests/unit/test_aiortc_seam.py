"""Fails loudly when an aiortc (or aioice) upgrade moves a hook the relay depends on."""

from __future__ import annotations

import inspect

import aioice.ice
from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.rtcrtpparameters import (
    RTCRtpCodecParameters,
    RTCRtpHeaderExtensionParameters,
    RTCRtpReceiveParameters,
    RTCRtpSendParameters,
)
from aiortc.rtp import AnyRtcpPacket, RtcpPsfbPacket, RtpPacket

from server.media import aiortc_seam


def test_class_hooks_exist() -> None:
    assert aiortc_seam.check_seam() is None  # raises RuntimeError naming any moved hook


async def test_instance_hooks_exist() -> None:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        assert aiortc_seam.check_seam(pc.addTransceiver("video")) is None
    finally:
        await pc.close()


async def test_disarmed_transceiver_never_starts_a_decoder_or_encoder() -> None:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        transceiver = pc.addTransceiver("video")
        aiortc_seam.disarm(transceiver)
        vp8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=97)
        await transceiver.receiver.receive(RTCRtpReceiveParameters(codecs=[vp8]))
        await transceiver.sender.send(RTCRtpSendParameters(codecs=[vp8]))
        assert transceiver.receiver._RTCRtpReceiver__decoder_thread is None  # type: ignore[attr-defined]
        assert transceiver.sender._RTCRtpSender__rtp_task is None  # type: ignore[attr-defined]
    finally:
        await pc.close()


class _Sink:
    def __init__(self, ssrc: int) -> None:
        self._ssrc = ssrc
        self.rtp: list[RtpPacket] = []
        self.rtcp: list[AnyRtcpPacket] = []

    def _handle_disconnect(self) -> None:
        pass

    async def _handle_rtcp_packet(self, packet: AnyRtcpPacket) -> None:
        self.rtcp.append(packet)

    async def _handle_rtp_packet(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        self.rtp.append(packet)


async def test_router_delivers_rtp_and_feedback_to_registered_sinks() -> None:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        transport = pc.addTransceiver("video").receiver.transport
        vp8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=97)
        ingress, egress = _Sink(0), _Sink(1234)
        aiortc_seam.register_rtp_receiver(
            transport, ingress, RTCRtpReceiveParameters(codecs=[vp8])
        )
        aiortc_seam.register_rtp_sender(transport, egress, RTCRtpSendParameters(codecs=[vp8]))
        await transport._handle_rtp_data(  # the router entry point the relay relies on
            RtpPacket(payload_type=97, ssrc=42, payload=b"\x10\x00").serialize(), 0
        )
        await transport._handle_rtcp_data(
            bytes(RtcpPsfbPacket(fmt=1, ssrc=9, media_ssrc=1234))
        )
        assert [p.ssrc for p in ingress.rtp] == [42]
        assert len(egress.rtcp) == 1
        aiortc_seam.unregister_rtp_receiver(transport, ingress)
        aiortc_seam.unregister_rtp_sender(transport, egress)
    finally:
        await pc.close()


async def test_header_extension_ids_are_per_connection() -> None:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        transport = pc.addTransceiver("audio").receiver.transport
        mid = RTCRtpHeaderExtensionParameters(id=7, uri="urn:ietf:params:rtp-hdrext:sdes:mid")
        aiortc_seam.register_rtp_sender(
            transport, _Sink(1), RTCRtpSendParameters(headerExtensions=[mid])
        )
        packet = RtpPacket(payload_type=111, payload=b"x")
        packet.extensions.mid = "3"
        data = packet.serialize(aiortc_seam.header_extensions(transport))
        assert data[12:14] == b"\xbe\xde" and data[16] >> 4 == 7
    finally:
        await pc.close()


def test_aioice_still_decides_host_addresses_in_one_function() -> None:
    params = list(inspect.signature(aioice.ice.get_host_addresses).parameters)
    assert params == ["use_ipv4", "use_ipv6"]
    source = inspect.getsource(aioice.ice.Connection.gather_candidates)
    assert "get_host_addresses(" in source


async def test_reoffer_keeps_the_header_extension_ids_the_remote_chose() -> None:
    """Chrome refuses a re-offer that renumbers extensions; aiortc's createOffer does that."""
    client = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    relay = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        client.addTransceiver("audio", direction="sendrecv")
        client.addTransceiver("video", direction="sendrecv")
        offer = await client.createOffer()
        browser_like = (
            offer.sdp.replace("a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid",
                              "a=extmap:7 urn:ietf:params:rtp-hdrext:sdes:mid")
            .replace("a=extmap:2 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
                     "a=extmap:5 urn:ietf:params:rtp-hdrext:ssrc-audio-level")
            .replace("a=extmap:3 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
                     "a=extmap:9 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time")
        )
        assert browser_like != offer.sdp
        await relay.setRemoteDescription(type(offer)(sdp=browser_like, type="offer"))
        await relay.setLocalDescription(await relay.createAnswer())
        relay.addTransceiver("video", direction="sendonly")
        reoffer = await aiortc_seam.create_offer(relay)
        extmaps = {line for line in reoffer.sdp.splitlines() if line.startswith("a=extmap:")}
        assert extmaps == {
            "a=extmap:7 urn:ietf:params:rtp-hdrext:sdes:mid",
            "a=extmap:5 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
            "a=extmap:9 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
        }
        plain = await relay.createOffer()
        assert "a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid" in plain.sdp, (
            "stock aiortc still renumbers: if this fails, the seam may be unnecessary"
        )
    finally:
        await client.close()
        await relay.close()


async def test_malformed_extension_does_not_end_the_receive_loop() -> None:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        transport = pc.addTransceiver("audio").receiver.transport
        ext = RTCRtpHeaderExtensionParameters(
            id=2, uri="http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time")
        transport._rtp_header_extensions_map.configure(
            RTCRtpReceiveParameters(headerExtensions=[ext]))
        packet = RtpPacket(payload_type=111, sequence_number=1, timestamp=1, ssrc=5)
        raw = bytearray(packet.serialize())
        raw[0] |= 0x10  # extension bit, then a one-byte-header extension block
        bad = bytes(raw[:12]) + bytes([0xBE, 0xDE, 0x00, 0x01, 0x20, 0x01, 0x00, 0x00])
        sink = _Sink(0)
        opus = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, payloadType=111,
                                     channels=2)
        aiortc_seam.register_rtp_receiver(transport, sink,
                                          RTCRtpReceiveParameters(codecs=[opus]))
        aiortc_seam.guard_rtp_parsing(transport)
        aiortc_seam.guard_rtp_parsing(transport)  # idempotent
        await transport._handle_rtp_data(bad, arrival_time_ms=0)
        good = RtpPacket(payload_type=111, sequence_number=2, timestamp=2, ssrc=5, payload=b"x")
        await transport._handle_rtp_data(good.serialize(), arrival_time_ms=0)
        assert [p.sequence_number for p in sink.rtp] == [2], "the bad one dropped, the next kept"
    finally:
        await pc.close()


async def test_reoffer_adds_a_kind_without_colliding_with_the_remote_ids() -> None:
    """An audio-only browser: video sections added later must reuse its id space (BUNDLE)."""
    client = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    relay = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        client.addTransceiver("audio", direction="sendrecv")
        offer = await client.createOffer()
        chrome_like = (
            offer.sdp.replace("a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid",
                              "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid")
            .replace("a=extmap:2 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
                     "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level")
        )
        await relay.setRemoteDescription(type(offer)(sdp=chrome_like, type="offer"))
        await relay.setLocalDescription(await relay.createAnswer())
        relay.addTransceiver("video", direction="sendonly")
        reoffer = await aiortc_seam.create_offer(relay)
        ids: dict[str, set[str]] = {}
        for line in reoffer.sdp.splitlines():
            if line.startswith("a=extmap:"):
                number, uri = line[len("a=extmap:"):].split(" ", 1)
                ids.setdefault(number, set()).add(uri)
        assert all(len(uris) == 1 for uris in ids.values()), f"id collision: {ids}"
        assert ids["4"] == {"urn:ietf:params:rtp-hdrext:sdes:mid"}
        assert ids["1"] == {"urn:ietf:params:rtp-hdrext:ssrc-audio-level"}
    finally:
        await client.close()
        await relay.close()
