"""Every use of aiortc's private API by the relay, in one place.

aiortc has no supported way to forward encoded RTP without decoding it (aiortc#449, #627),
so the relay hooks its transport layer. aiortc is pinned exactly (pyproject.toml), and
`tests/unit/test_aiortc_seam.py` calls `check_seam()` so an upgrade that moves a hook
fails loudly instead of silently decoding again. No module outside this package may touch
an underscore attribute of an aiortc, aioice or pylibsrtp object. `hooks` holds the
connection-level hooks, `fastpath` the per-packet paths, `guard` the check.

The hooks:
- `RTCRtpReceiver.receive` / `RTCRtpSender.send` are replaced per instance, so the stock
  receiver never starts its decoder thread and the stock sender never starts its encoder
  loop (which would also wake 50 times a second and emit SRs from counters it never fills).
  Both hooks still receive the parameters aiortc negotiated, which is what the forwarder
  needs (payload types, header extensions, SSRCs).
- `RTCDtlsTransport._register_rtp_receiver` / `_register_rtp_sender` put our sinks in the
  transport's RTP router; `_send_rtp` is the SRTP egress; `_rtp_header_extensions_map`
  holds this connection's extension ids.
- `RTCRtpSender._ssrc`, `_stream_id`, `_track_id` name the SSRC and msid aiortc writes in SDP.
- `RTCRtpTransceiver._headerExtensions` and `aiortc.rtcpeerconnection.HEADER_EXTENSIONS`:
  aiortc's `createOffer` renumbers every header extension to its own defaults, even on a
  re-offer after the remote chose other ids. Chrome refuses that ("RTP extension ID
  reassignment not supported") and the transport would parse the browser's packets with the
  wrong ids, so `create_offer` re-offers the ids already negotiated.
- `aiortc.rtcrtpreceiver.RemoteBitrateEstimator` is replaced by a lazy stand-in
  (`defer_bitrate_estimators`): every relay m-section's receiver built one it never uses.
- `RTCDtlsTransport._handle_rtp_data`: aiortc catches ValueError from a malformed RTP packet
  but not `struct.error`, which ends the connection's receive loop; `guard_rtp_parsing`
  drops such a packet instead.
- The per-packet paths (`SendPath`, `receive_rtp_directly`): aiortc's `_send_rtp` goes
  through five coroutine layers (RTCDtlsTransport -> RTCIceTransport -> aioice
  `Connection.send` -> `sendto` -> `StunProtocol.send_data`) and pylibsrtp's `protect`
  allocates a length cell and needs one joined `bytes`; received SRTP is STUN-parsed
  (failing with an exception), queued, and picked up by the DTLS transport's receive task
  one event-loop turn later. `SendPath` protects into the pylibsrtp session's own buffer
  (`Session._srtp`, `_cdata`, `_buffer`; `lib.srtp_protect`) and hands the datagram to the
  nominated pair's asyncio transport (`Connection._nominated`, `StunProtocol.transport`),
  synchronously. `receive_rtp_directly` replaces `datagram_received` on the connection's
  `StunProtocol`s (`Connection._protocols`) so SRTP (not SRTCP, not STUN, not DTLS) is
  unprotected, parsed and routed (`RTCDtlsTransport._rx_srtp`, `_rtp_router`,
  `_rtp_header_extensions_map`, `_state`) right where the datagram is read. Both keep
  aiortc's transport counters (`_RTCDtlsTransport__tx_bytes` ...) and fall back to the
  stock path for anything else (TURN-over-TCP style protocols with their own `send_data`,
  transports that are not `RTCDtlsTransport`).
"""

from server.media.aiortc_seam.fastpath import SEND_ERRORS, SendPath, receive_rtp_directly, run_now
from server.media.aiortc_seam.guard import check_seam
from server.media.aiortc_seam.hooks import (
    RtcpSink,
    RtpSink,
    create_offer,
    defer_bitrate_estimators,
    disarm,
    guard_rtp_parsing,
    header_extensions,
    hook_receiver,
    hook_sender,
    register_rtp_receiver,
    register_rtp_sender,
    sender_ssrc,
    set_msid,
    unregister_rtp_receiver,
    unregister_rtp_sender,
)

__all__ = [
    "SEND_ERRORS",
    "RtcpSink",
    "RtpSink",
    "SendPath",
    "check_seam",
    "create_offer",
    "defer_bitrate_estimators",
    "disarm",
    "guard_rtp_parsing",
    "header_extensions",
    "hook_receiver",
    "hook_sender",
    "receive_rtp_directly",
    "register_rtp_receiver",
    "register_rtp_sender",
    "run_now",
    "sender_ssrc",
    "set_msid",
    "unregister_rtp_receiver",
    "unregister_rtp_sender",
]
