"""Fails loudly when an aiortc (or aioice) upgrade moves a hook the relay depends on."""

from __future__ import annotations

import asyncio
import inspect
import socket
from typing import Any

import aioice.ice
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.rtcrtpparameters import (
    RTCRtpCodecParameters,
    RTCRtpHeaderExtensionParameters,
    RTCRtpReceiveParameters,
    RTCRtpSendParameters,
)
from aiortc.rtp import AnyRtcpPacket, RtcpPacket, RtcpPsfbPacket, RtpPacket

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


# -- the per-packet paths (SendPath, receive_rtp_directly) on real aiortc/aioice objects --

def _srtp_pair() -> tuple[Any, Any]:
    from aiortc.rtcdtlstransport import SRTP_PROFILES
    from pylibsrtp import Policy, Session

    profile = SRTP_PROFILES[0]
    key = bytes(range(profile.key_length + profile.salt_length))
    sessions = []
    for ssrc_type in (Policy.SSRC_ANY_OUTBOUND, Policy.SSRC_ANY_INBOUND):
        policy = Policy(key=key, ssrc_type=ssrc_type, srtp_profile=profile.libsrtp_profile)
        policy.allow_repeat_tx = True
        sessions.append(Session(policy))
    return sessions[0], sessions[1]


async def _connected_transport(remote: tuple[str, int]) -> tuple[Any, Any]:
    """An RTCDtlsTransport past its handshake: real SRTP, a nominated pair to `remote`."""
    from aioice import Candidate
    from aioice.ice import CandidatePair, StunProtocol
    from aiortc.rtcdtlstransport import State

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    dtls = pc.addTransceiver("video").receiver.transport
    tx, rx = _srtp_pair()
    dtls._tx_srtp, dtls._rx_srtp, dtls._state = tx, rx, State.CONNECTED
    connection = dtls.transport._connection
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_datagram_endpoint(
        lambda: StunProtocol(connection), local_addr=("127.0.0.1", 0))
    connection._protocols.append(protocol)
    protocol.local_candidate = Candidate(foundation="l", component=1, transport="udp",
                                         priority=1, host="127.0.0.1", port=0, type="host")
    candidate = Candidate(foundation="x", component=1, transport="udp", priority=1,
                          host=remote[0], port=remote[1], type="host")
    connection._nominated[1] = CandidatePair(protocol, candidate)
    return pc, dtls


async def test_send_path_protects_and_sends_synchronously() -> None:
    from aiortc.rtcdtlstransport import State

    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.settimeout(2)
    pc, dtls = await _connected_transport(sink.getsockname())
    try:
        _, rx = _srtp_pair()
        path = aiortc_seam.SendPath(dtls)
        packet = RtpPacket(payload_type=97, sequence_number=5, ssrc=77, payload=b"\x10\x00abc")
        data = packet.serialize()
        path.rtp(bytearray(data[:12]), data[12:])  # returns with the datagram sent
        assert rx.unprotect(sink.recv(2048)) == data
        path.rtcp(bytes(RtcpPsfbPacket(fmt=1, ssrc=9, media_ssrc=77)))
        assert RtcpPacket.parse(rx.unprotect_rtcp(sink.recv(2048)))[0].media_ssrc == 77
        dtls._state = State.CLOSED
        with pytest.raises(ConnectionError):
            path.rtp(bytearray(data[:12]), data[12:])
    finally:
        sink.close()
        await pc.close()


async def test_srtp_and_srtcp_are_routed_where_the_datagram_is_read() -> None:
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    pc, dtls = await _connected_transport(sink.getsockname())
    try:
        vp8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=97)
        ingress = _Sink(0)
        aiortc_seam.register_rtp_receiver(dtls, ingress, RTCRtpReceiveParameters(codecs=[vp8]))
        aiortc_seam.receive_rtp_directly(dtls)
        aiortc_seam.receive_rtp_directly(dtls)  # idempotent
        tx, _ = _srtp_pair()
        connection = dtls.transport._connection
        protocol = connection._protocols[-1]
        packet = RtpPacket(payload_type=97, sequence_number=3, ssrc=42, payload=b"\x10\x00")
        protocol.datagram_received(tx.protect(packet.serialize()), ("127.0.0.1", 9))
        assert [p.sequence_number for p in ingress.rtp] == [3]  # no event-loop turn needed
        protocol.datagram_received(b"\x80\x61garbage-not-srtp", ("127.0.0.1", 9))  # dropped
        egress = _Sink(1234)
        aiortc_seam.register_rtp_sender(dtls, egress, RTCRtpSendParameters(codecs=[vp8]))
        rtcp = tx.protect_rtcp(bytes(RtcpPsfbPacket(fmt=1, ssrc=9, media_ssrc=1234)))
        protocol.datagram_received(rtcp, ("127.0.0.1", 9))
        assert len(egress.rtcp) == 1  # the subscriber's PLI reached its sender at once
        protocol.datagram_received(b"\x17\xfe\xfd" + bytes(20), ("127.0.0.1", 9))  # DTLS
        assert connection._queue.qsize() == 1, "DTLS (and STUN) still take aioice's path"
        assert [p.sequence_number for p in ingress.rtp] == [3]
    finally:
        sink.close()
        await pc.close()


async def test_run_now_finishes_what_suspends_in_a_task() -> None:
    done: list[str] = []

    async def quick() -> None:
        done.append("quick")

    async def slow() -> None:
        await asyncio.sleep(0)
        fut = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(0.01, fut.set_result, None)
        await fut
        done.append("slow")

    aiortc_seam.run_now(quick())
    assert done == ["quick"]
    aiortc_seam.run_now(slow())
    assert done == ["quick"]
    await asyncio.sleep(0.1)
    assert done == ["quick", "slow"]


def test_check_seam_names_a_moved_per_packet_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aiortc_seam.fastpath, "_ASYNCIO_UDP", type(None))
    with pytest.raises(RuntimeError, match="_SelectorDatagramTransport"):
        aiortc_seam.check_seam()


async def test_receivers_build_their_bitrate_estimator_only_when_they_use_it() -> None:
    """The relay's sendonly m-sections' receivers never receive: no estimator up front."""
    from aiortc import rate, rtcrtpreceiver

    built: list[object] = []
    original = rate.RemoteBitrateEstimator.__init__

    def counting_init(self: rate.RemoteBitrateEstimator) -> None:
        built.append(self)
        original(self)

    rate.RemoteBitrateEstimator.__init__ = counting_init  # type: ignore[method-assign]
    try:
        aiortc_seam.defer_bitrate_estimators()
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        try:
            for _ in range(3):
                pc.addTransceiver("video", direction="sendonly")
            assert built == [], "no estimator until a packet needs one"
            lazy = rtcrtpreceiver.RemoteBitrateEstimator()  # type: ignore[attr-defined]
            assert lazy.add(0, 0, 100, 1234) is None and len(built) == 1
        finally:
            await pc.close()
    finally:
        rate.RemoteBitrateEstimator.__init__ = original  # type: ignore[method-assign]


def test_per_packet_failures_are_logged_once_per_interval_by_type_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from server.media.aiortc_seam import fastpath

    fastpath._warned_at.clear()
    with caplog.at_level("WARNING", logger=fastpath.logger.name):
        for _ in range(500):
            fastpath.warn_throttled("forwarding a packet", ValueError("payload 0xdeadbeef"))
        fastpath.warn_throttled("forwarding a packet", KeyError("x"))
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2, messages
    assert "ValueError" in messages[0] and "deadbeef" not in " ".join(messages)
    assert all(r.exc_info is None for r in caplog.records)
