"""The relay's hooks into aiortc's transport layer, SDP and sender/receiver internals
(see the package docstring for each hook and why)."""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from aiortc import (
    RTCDtlsTransport,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc import rate as _aiortc_rate
from aiortc import rtcpeerconnection as _aiortc_pc
from aiortc import rtcrtpreceiver as _aiortc_receiver
from aiortc.rtcrtpparameters import (
    RTCRtpHeaderExtensionParameters,
    RTCRtpReceiveParameters,
    RTCRtpSendParameters,
)
from aiortc.rtp import AnyRtcpPacket, HeaderExtensionsMap, RtpPacket

logger = logging.getLogger(__name__)

ReceiveHook = Callable[[RTCRtpReceiveParameters], Coroutine[Any, Any, None]]
SendHook = Callable[[RTCRtpSendParameters], Coroutine[Any, Any, None]]


class RtpSink(Protocol):
    """What aiortc's RTP router delivers incoming RTP (and the publisher's RTCP) to."""

    def _handle_disconnect(self) -> None: ...
    async def _handle_rtcp_packet(self, packet: AnyRtcpPacket) -> None: ...
    async def _handle_rtp_packet(self, packet: RtpPacket, arrival_time_ms: int) -> None: ...


class RtcpSink(Protocol):
    """What aiortc's RTP router delivers a subscriber's feedback (PLI, FIR, NACK, RR) to."""

    _ssrc: int

    async def _handle_rtcp_packet(self, packet: AnyRtcpPacket) -> None: ...


async def _never_receive(parameters: RTCRtpReceiveParameters) -> None:
    """Stands in for `RTCRtpReceiver.receive` where the relay receives nothing."""


async def _never_send(parameters: RTCRtpSendParameters) -> None:
    """Stands in for `RTCRtpSender.send` where the relay sends nothing itself."""


class _LazyBitrateEstimator:
    """aiortc's `RemoteBitrateEstimator`, built on its first `add` (if that ever comes)."""

    __slots__ = ("_real",)

    def __init__(self) -> None:
        self._real: _aiortc_rate.RemoteBitrateEstimator | None = None

    def add(self, *args: Any, **kwargs: Any) -> Any:
        if self._real is None:
            self._real = _aiortc_rate.RemoteBitrateEstimator()
        return self._real.add(*args, **kwargs)


def defer_bitrate_estimators() -> None:
    """Stop every new video `RTCRtpReceiver` from building a bitrate estimator up front.

    aiortc builds one per video receiver in `__init__` (0.66 ms, about 60 % of
    `addTransceiver`), and the relay adds a sendonly m-section, with its receiver, per
    forwarded track: 11 per participant in a 12-person group, ~0.09 s of CPU when twelve
    join at once. The relay's receivers never receive (the forwarder takes their packets),
    so they never use it; a receiver that does gets the real one on its first packet.
    Process-wide, like `ice.enable_loopback_gathering`; idempotent.
    """
    _aiortc_receiver.RemoteBitrateEstimator = _LazyBitrateEstimator  # type: ignore[attr-defined,assignment]


def disarm(transceiver: RTCRtpTransceiver) -> None:
    """Make sure aiortc never starts a decoder or an encoder for this transceiver.

    Must run before the peer connection's next `__connect` task gets to run, that is
    without an `await` between the call that created the transceiver and this one.
    """
    if "receive" not in vars(transceiver.receiver):
        hook_receiver(transceiver.receiver, _never_receive)
    if "send" not in vars(transceiver.sender):
        hook_sender(transceiver.sender, _never_send)


def hook_receiver(receiver: RTCRtpReceiver, hook: ReceiveHook) -> None:
    """Replace `receiver.receive` (which would start a decoder) with `hook`."""
    receiver.receive = hook  # type: ignore[method-assign,assignment]


def hook_sender(sender: RTCRtpSender, hook: SendHook) -> None:
    """Replace `sender.send` (which would start an encoder loop) with `hook`."""
    sender.send = hook  # type: ignore[method-assign,assignment]


def register_rtp_receiver(
    transport: RTCDtlsTransport, sink: RtpSink, parameters: RTCRtpReceiveParameters
) -> None:
    """Route the RTP of `parameters` (by SSRC, else payload type) to `sink`."""
    transport._register_rtp_receiver(sink, parameters)
    _extensions_changed(transport)


def unregister_rtp_receiver(transport: RTCDtlsTransport, sink: RtpSink) -> None:
    transport._unregister_rtp_receiver(sink)


def register_rtp_sender(
    transport: RTCDtlsTransport, sink: RtcpSink, parameters: RTCRtpSendParameters
) -> None:
    """Route feedback whose media SSRC is `sink._ssrc` to `sink`."""
    transport._register_rtp_sender(sink, parameters)
    _extensions_changed(transport)


def _extensions_changed(transport: RTCDtlsTransport) -> None:
    """Registering configures the connection's extension map again: re-read its ids."""
    parser = getattr(transport, "_circle_rtp_parser", None)
    if parser is not None:
        parser.refresh()


def unregister_rtp_sender(transport: RTCDtlsTransport, sink: RtcpSink) -> None:
    transport._unregister_rtp_sender(sink)


async def create_offer(pc: RTCPeerConnection) -> RTCSessionDescription:
    """`pc.createOffer()`, keeping the header-extension ids already negotiated.

    A BUNDLE group shares one id space, so the ids the remote chose (for any kind) are used
    for every kind, and extensions it never saw get ids it does not use. aiortc's
    createOffer has no suspension point, so swapping the module-level defaults around the
    call affects this call only.
    """
    ids: dict[str, int] = {}
    for transceiver in pc.getTransceivers():
        if transceiver.mid is not None:
            for extension in transceiver._headerExtensions or []:
                ids.setdefault(extension.uri, extension.id)
    if not ids:
        return await pc.createOffer()
    module = vars(_aiortc_pc)
    defaults: dict[str, list[RTCRtpHeaderExtensionParameters]] = module["HEADER_EXTENSIONS"]
    free = (n for n in range(1, 15) if n not in ids.values())
    table: dict[str, list[RTCRtpHeaderExtensionParameters]] = {}
    for kind, extensions in defaults.items():
        for extension in extensions:
            if extension.uri not in ids:
                ids[extension.uri] = next(free)
        table[kind] = [
            RTCRtpHeaderExtensionParameters(id=ids[e.uri], uri=e.uri) for e in extensions
        ]
    module["HEADER_EXTENSIONS"] = table
    try:
        return await pc.createOffer()
    finally:
        module["HEADER_EXTENSIONS"] = defaults


def guard_rtp_parsing(transport: RTCDtlsTransport) -> None:
    """Drop RTP packets whose header extensions do not parse, instead of dying on them.

    Idempotent: a transport shared by bundled transceivers is guarded once.
    """
    if getattr(transport, "_circle_guarded", False):
        return
    transport._circle_guarded = True  # type: ignore[attr-defined]
    handle = transport._handle_rtp_data

    async def guarded(data: bytes, arrival_time_ms: int) -> None:
        try:
            await handle(data, arrival_time_ms)
        except struct.error:
            return

    transport._handle_rtp_data = guarded  # type: ignore[method-assign]


def header_extensions(transport: RTCDtlsTransport) -> HeaderExtensionsMap:
    """This connection's negotiated header-extension ids (shared by every m-section)."""
    return transport._rtp_header_extensions_map


def sender_ssrc(sender: RTCRtpSender) -> int:
    """The SSRC aiortc advertises for this sender in SDP."""
    return sender._ssrc


def set_msid(sender: RTCRtpSender, stream_id: str, track_id: str) -> None:
    """Set the `a=msid:<stream> <track>` aiortc will write for this sender."""
    sender._stream_id = stream_id
    sender._track_id = track_id
