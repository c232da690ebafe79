"""Micro-benchmark of the relay's own per-packet work, without clients.

    .venv/bin/python -m bench.hotpath [--fanout 11] [--packets 20000] [--transport real]
                                      [--kind audio]

Feeds parsed RTP packets (with mid, abs-send-time and transport-cc extensions, as
browsers send; `--kind audio`: Opus-sized packets that also carry an audio level, half
of them speech) to one `Ingress` with `fanout` bound `Egress`es. Measures CPU time per
forwarded packet: a noise-resistant ratio between versions of the hot path (run it in two
checkouts, or under `valgrind --tool=callgrind` for instruction counts).

`--transport null` (default): each egress transport only records the bytes (forwarder +
rewrite code alone, no SRTP, no sockets). `--transport real`: each egress gets a real
`RTCDtlsTransport` marked connected, with a real SRTP session (the profile aiortc
negotiates first, AES-256-GCM here) and a nominated aioice candidate pair whose UDP socket
sends to a local sink socket: the whole per-subscriber send path, aiortc's and aioice's
layers, pylibsrtp and the `sendto` syscall included (the sink is drained between batches
and not counted). Receive-side costs (SRTP unprotect, parsing, aioice) are not included:
the packets enter at `Ingress._handle_rtp_packet`.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import time
from typing import Any

from aioice import Candidate
from aioice.ice import CandidatePair, StunProtocol
from aiortc import RTCCertificate, RTCDtlsTransport, RTCIceGatherer, RTCIceTransport
from aiortc.rtcdtlstransport import SRTP_PROFILES, State
from aiortc.rtcrtpparameters import (
    RTCRtpCodecParameters,
    RTCRtpHeaderExtensionParameters,
    RTCRtpParameters,
    RTCRtpReceiveParameters,
    RTCRtpSendParameters,
)
from aiortc.rtp import HeaderExtensions, HeaderExtensionsMap, RtpPacket
from pylibsrtp import Policy, Session

from server.media.forwarder import Egress, Ingress

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
OPUS = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2,
                             payloadType=111)
EXTENSIONS = [
    RTCRtpHeaderExtensionParameters(id=1, uri="urn:ietf:params:rtp-hdrext:sdes:mid"),
    RTCRtpHeaderExtensionParameters(
        id=2, uri="http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
    ),
    RTCRtpHeaderExtensionParameters(
        id=3, uri="http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
    ),
    RTCRtpHeaderExtensionParameters(id=4, uri="urn:ietf:params:rtp-hdrext:ssrc-audio-level"),
]


class NullTransport:
    def __init__(self) -> None:
        self.sent = 0
        self._rtp_header_extensions_map = HeaderExtensionsMap()
        self._rtp_header_extensions_map.configure(RTCRtpParameters(headerExtensions=EXTENSIONS))

    def _register_rtp_receiver(self, *args: Any) -> None: ...
    def _register_rtp_sender(self, *args: Any) -> None: ...
    def _unregister_rtp_receiver(self, *args: Any) -> None: ...
    def _unregister_rtp_sender(self, *args: Any) -> None: ...

    async def _send_rtp(self, data: bytes) -> None:
        self.sent += 1


_CERTIFICATE: RTCCertificate | None = None


async def real_transport(sink: socket.socket) -> RTCDtlsTransport:
    """A connected-looking RTCDtlsTransport whose SRTP and UDP paths are the real ones."""
    global _CERTIFICATE
    if _CERTIFICATE is None:
        _CERTIFICATE = RTCCertificate.generateCertificate()
    ice = RTCIceTransport(RTCIceGatherer(iceServers=[]))
    dtls = RTCDtlsTransport(ice, [_CERTIFICATE])
    profile = SRTP_PROFILES[0]
    policy = Policy(key=bytes(range(profile.key_length + profile.salt_length)),
                    ssrc_type=Policy.SSRC_ANY_OUTBOUND, srtp_profile=profile.libsrtp_profile)
    policy.allow_repeat_tx = True
    dtls._tx_srtp = Session(policy)
    dtls._state = State.CONNECTED
    dtls._rtp_header_extensions_map.configure(RTCRtpParameters(headerExtensions=EXTENSIONS))
    connection = ice._connection
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_datagram_endpoint(
        lambda: StunProtocol(connection), local_addr=("127.0.0.1", 0))
    host, port = sink.getsockname()
    remote = Candidate(foundation="sink", component=1, transport="udp", priority=1,
                       host=host, port=port, type="host")
    connection._nominated[1] = CandidatePair(protocol, remote)
    return dtls


def drain(sink: socket.socket | None) -> None:
    while sink is not None:
        try:
            sink.recv(2048)
        except BlockingIOError:
            return


async def measure(fanout: int, packets: int, transport: str, kind: str = "video") -> float:
    sink: socket.socket | None = None
    if transport == "real":
        sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        sink.bind(("127.0.0.1", 0))
        sink.setblocking(False)
    codec = OPUS if kind == "audio" else VP8
    ingress = Ingress(kind, rtcp_ssrc=1, on_first_packet=lambda kind: None)
    await ingress.bind(NullTransport(), RTCRtpReceiveParameters(codecs=[codec]))  # type: ignore[arg-type]
    for i in range(fanout):
        egress = Egress(ingress, ssrc=1000 + i)
        egress_transport: Any = (NullTransport() if sink is None
                                 else await real_transport(sink))
        await egress.bind(egress_transport, RTCRtpSendParameters(codecs=[codec], muxId=str(i)))
        egress.start(ingress)
    payload = bytes([0x10, 0x00]) + bytes(1100)  # VP8 keyframe start, then filler
    if kind == "audio":
        payload = bytes(80)  # an Opus frame's size
    batch = []
    for seq in range(packets):
        packet = RtpPacket(payload_type=codec.payloadType or 0, sequence_number=seq & 0xFFFF,
                           timestamp=seq * (960 if kind == "audio" else 3000), ssrc=42,
                           payload=payload)
        packet.extensions = HeaderExtensions(mid="0", abs_send_time=seq,
                                             transport_sequence_number=seq & 0xFFFF)
        if kind == "audio":  # speech and silence alternating in runs of 50 (one second)
            packet.extensions.audio_level = (False, 30 if seq // 50 % 2 else 90)
        batch.append(packet)
    spent = 0.0
    for chunk in range(0, packets, 200):
        drain(sink)
        start = time.process_time()
        for packet in batch[chunk:chunk + 200]:
            await ingress._handle_rtp_packet(packet, 0)
        spent += time.process_time() - start
    drain(sink)
    if sink is not None:
        sink.close()
    return spent / (packets * fanout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fanout", type=int, default=11)
    parser.add_argument("--packets", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--transport", choices=("null", "real"), default="null")
    parser.add_argument("--kind", choices=("video", "audio"), default="video",
                        help="audio: Opus-sized packets with an audio-level extension")
    args = parser.parse_args()
    best = min(asyncio.run(measure(args.fanout, args.packets, args.transport, args.kind))
               for _ in range(args.repeat))
    print(f"relay CPU per forwarded packet (fan-out {args.fanout}, {args.transport} "
          f"transport, {args.kind}): {best * 1e6:.2f} us (best of {args.repeat})")


if __name__ == "__main__":
    main()
