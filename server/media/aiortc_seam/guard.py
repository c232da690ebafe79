"""`check_seam`: fail loudly when an aiortc, aioice, pylibsrtp or asyncio upgrade moves a
hook the relay relies on."""

from __future__ import annotations

import pylibsrtp
from aioice.ice import Connection as _IceConnection
from aioice.ice import StunProtocol
from aiortc import (
    RTCDtlsTransport,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCRtpTransceiver,
)
from aiortc import rtcpeerconnection as _aiortc_pc
from aiortc import rtcrtpreceiver as _aiortc_receiver
from aiortc.rtcdtlstransport import State as _DtlsState
from aiortc.rtp import HeaderExtensionsMap
from pylibsrtp import _binding as _srtp_binding

from server.media.aiortc_seam import fastpath


def _init_names(cls: type) -> set[str]:
    """Names the `__init__`s of `cls` and its bases use (the attributes they set, and more)."""
    names: set[str] = set()
    for klass in cls.__mro__:
        code = getattr(vars(klass).get("__init__"), "__code__", None)
        if code is not None:
            names.update(code.co_names)
    return names


def _check_srtp() -> list[str]:
    """pylibsrtp internals `SendPath` protects with (a session without streams is cheap)."""
    missing = [f"pylibsrtp lib.{n}" for n in ("srtp_protect", "srtp_err_status_ok")
               if not hasattr(_srtp_binding.lib, n)]
    session = pylibsrtp.Session()
    missing += [f"pylibsrtp Session.{a}" for a in ("_srtp", "_cdata", "_buffer")
                if not hasattr(session, a)]
    if not hasattr(_DtlsState, "CONNECTED"):
        missing.append("aiortc.rtcdtlstransport.State.CONNECTED")
    return missing


def check_seam(transceiver: RTCRtpTransceiver | None = None) -> None:
    """Raise `RuntimeError` naming every hook this aiortc no longer has.

    Without `transceiver` only class attributes are checked (cheap, done when the relay is
    built); with one, the instance attributes of its sender and transport are checked too.
    """
    missing: list[str] = []
    for owner, names in (
        (
            RTCDtlsTransport,
            (
                "_register_rtp_receiver",
                "_unregister_rtp_receiver",
                "_register_rtp_sender",
                "_unregister_rtp_sender",
                "_send_rtp",
                "_handle_rtp_data",
                "_handle_rtcp_data",
            ),
        ),
        (RTCRtpReceiver, ("receive",)),
        (RTCRtpSender, ("send",)),
    ):
        missing += [f"{owner.__name__}.{n}" for n in names if not hasattr(owner, n)]
    missing += [
        f"StunProtocol.{n}" for n in ("datagram_received", "send_data")
        if not callable(getattr(StunProtocol, n, None))
    ]
    missing += [
        f"aioice Connection.{n}" for n in ("_nominated", "_protocols")
        if n not in _init_names(_IceConnection)
    ]
    missing += _check_srtp()
    udp = fastpath._ASYNCIO_UDP
    if udp is type(None) or not {"_buffer", "_sock"} <= _init_names(udp):
        missing.append("asyncio.selector_events._SelectorDatagramTransport(_buffer, _sock)")
    estimator = vars(_aiortc_receiver).get("RemoteBitrateEstimator")
    if estimator is None or not callable(getattr(estimator, "add", None)):
        missing.append("aiortc.rtcrtpreceiver.RemoteBitrateEstimator(.add)")
    if "HEADER_EXTENSIONS" not in vars(_aiortc_pc):
        missing.append("aiortc.rtcpeerconnection.HEADER_EXTENSIONS")
    if transceiver is not None:
        if not hasattr(transceiver, "_headerExtensions"):
            missing.append("RTCRtpTransceiver._headerExtensions")
        sender = transceiver.sender
        missing += [
            f"RTCRtpSender.{a}"
            for a in ("_ssrc", "_stream_id", "_track_id")
            if not hasattr(sender, a)
        ]
        dtls = sender.transport
        extensions = getattr(dtls, "_rtp_header_extensions_map", None)
        if not isinstance(extensions, HeaderExtensionsMap):
            missing.append("RTCDtlsTransport._rtp_header_extensions_map")
        missing += [
            f"RTCDtlsTransport.{a}"
            for a in ("_state", "_tx_srtp", "_rx_srtp", "_rtp_router",
                      "_RTCDtlsTransport__tx_bytes", "_RTCDtlsTransport__tx_packets",
                      "_RTCDtlsTransport__rx_bytes", "_RTCDtlsTransport__rx_packets")
            if not hasattr(dtls, a)
        ]
        connection = getattr(getattr(dtls, "transport", None), "_connection", None)
        if not isinstance(connection, _IceConnection):
            missing.append("RTCIceTransport._connection")
        else:
            missing += [
                f"aioice Connection.{a}" for a in ("_nominated", "_protocols")
                if not hasattr(connection, a)
            ]
    if missing:
        raise RuntimeError("aiortc seam moved: " + ", ".join(missing))
