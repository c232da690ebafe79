"""Micro-benchmark of the relay's own per-packet work, without sockets, SRTP or clients.

    .venv/bin/python -m bench.hotpath [--fanout 11] [--packets 20000]

Feeds parsed RTP packets (with mid, abs-send-time and transport-cc extensions, as
browsers send) to one `Ingress` with `fanout` bound `Egress`es whose transport only
records the bytes. Measures CPU time per forwarded packet of forwarder + rewrite code:
a noise-resistant ratio between versions of the hot path (run it in two checkouts).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from aiortc.rtcrtpparameters import (
    RTCRtpCodecParameters,
    RTCRtpHeaderExtensionParameters,
    RTCRtpParameters,
    RTCRtpReceiveParameters,
    RTCRtpSendParameters,
)
from aiortc.rtp import HeaderExtensions, HeaderExtensionsMap, RtpPacket

from server.media.forwarder import Egress, Ingress

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
EXTENSIONS = [
    RTCRtpHeaderExtensionParameters(id=1, uri="urn:ietf:params:rtp-hdrext:sdes:mid"),
    RTCRtpHeaderExtensionParameters(
        id=2, uri="http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
    ),
    RTCRtpHeaderExtensionParameters(
        id=3, uri="http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
    ),
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


async def measure(fanout: int, packets: int) -> float:
    ingress = Ingress("video", rtcp_ssrc=1, on_first_packet=lambda kind: None)
    await ingress.bind(NullTransport(), RTCRtpReceiveParameters(codecs=[VP8]))  # type: ignore[arg-type]
    for i in range(fanout):
        egress = Egress(ingress, ssrc=1000 + i)
        await egress.bind(NullTransport(), RTCRtpSendParameters(codecs=[VP8], muxId=str(i)))  # type: ignore[arg-type]
        egress.start(ingress)
    payload = bytes([0x10, 0x00]) + bytes(1100)  # VP8 keyframe start, then filler
    batch = []
    for seq in range(packets):
        packet = RtpPacket(payload_type=96, sequence_number=seq & 0xFFFF,
                           timestamp=seq * 3000, ssrc=42, payload=payload)
        packet.extensions = HeaderExtensions(mid="0", abs_send_time=seq,
                                             transport_sequence_number=seq & 0xFFFF)
        batch.append(packet)
    start = time.process_time()
    for packet in batch:
        await ingress._handle_rtp_packet(packet, 0)
    return (time.process_time() - start) / (packets * fanout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fanout", type=int, default=11)
    parser.add_argument("--packets", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    best = min(asyncio.run(measure(args.fanout, args.packets)) for _ in range(args.repeat))
    print(f"forwarder+rewrite CPU per forwarded packet (fan-out {args.fanout}): "
          f"{best * 1e6:.2f} us (best of {args.repeat})")


if __name__ == "__main__":
    main()
