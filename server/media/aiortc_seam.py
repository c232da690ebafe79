"""Every use of aiortc's private API by the relay, in one place.

aiortc has no supported way to forward encoded RTP without decoding it (aiortc#449, #627),
so the relay hooks its transport layer. aiortc is pinned exactly (pyproject.toml), and
`tests/unit/test_aiortc_seam.py` calls `check_seam()` so an upgrade that moves a hook
fails loudly instead of silently decoding again. No other module of `server/media` may
touch an underscore attribute of an aiortc object.

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

from __future__ import annotations

import asyncio
import asyncio.selector_events as _asyncio_selector_events
import logging
import struct
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

import pylibsrtp
from aioice.ice import Connection as _IceConnection
from aioice.ice import StunProtocol
from aiortc import (
    RTCDtlsTransport,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc import rtcpeerconnection as _aiortc_pc
from aiortc.rtcdtlstransport import State as _DtlsState
from aiortc.rtcrtpparameters import (
    RTCRtpHeaderExtensionParameters,
    RTCRtpReceiveParameters,
    RTCRtpSendParameters,
)
from aiortc.rtp import AnyRtcpPacket, HeaderExtensionsMap, RtpPacket
from pylibsrtp import _binding as _srtp_binding

from server.media.rewrite import RtpParser

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


async def send_rtp(transport: RTCDtlsTransport, data: bytes) -> None:
    """SRTP-protect and send one serialized RTP or RTCP packet (aiortc's own path).

    Raises `ConnectionError` while the transport is not connected.
    """
    await transport._send_rtp(data)


# -- per-packet paths -------------------------------------------------------------------

_tasks: set[asyncio.Task[Any]] = set()


def run_now(coro: Coroutine[Any, Any, Any]) -> None:
    """Run `coro` to completion right here if it never suspends (the relay's never do).

    Costs one coroutine object instead of a task and an event-loop turn. Exceptions raised
    before the first suspension propagate to the caller. If it does suspend, the rest runs
    in a task of its own once what it waits for is done, so nothing is lost.
    """
    try:
        waited = coro.send(None)
    except StopIteration:
        return
    loop = asyncio.get_running_loop()

    def resume(_: object = None) -> None:
        task = loop.create_task(coro)
        _tasks.add(task)
        task.add_done_callback(_tasks.discard)

    if isinstance(waited, asyncio.Future):
        waited.add_done_callback(resume)  # a task resumes it with the future's result
    else:
        loop.call_soon(resume)  # a bare yield (asyncio.sleep(0))


SEND_ERRORS: tuple[type[Exception], ...] = (ConnectionError, pylibsrtp.Error)
"""What a send may raise: not connected (yet, or any more), or libsrtp refused the packet."""

_srtp_protect = _srtp_binding.lib.srtp_protect
_SRTP_OK = _srtp_binding.lib.srtp_err_status_ok
_SRTP_MAX_TRAILER_LEN = 16 + 128  # as pylibsrtp: SRTP_MAX_TAG_LEN + SRTP_MAX_MKI_LEN
_STUN_SEND_DATA = StunProtocol.send_data
_NO_PAIR = object()
_ASYNCIO_UDP: type = getattr(_asyncio_selector_events, "_SelectorDatagramTransport", type(None))
"""asyncio's UDP transport: `sendto` sends at once or queues `bytes(data)`, never the view.
While its `_buffer` is empty, `SendPath` calls its `_sock.sendto` itself (what `sendto`
would do, minus its checks: the address is the pair's, the data never empty)."""


class SendPath:
    """One connection's SRTP egress, synchronous: protect, then `sendto` on the nominated pair.

    What `RTCDtlsTransport._send_rtp` does, without its five coroutine layers, without
    pylibsrtp's per-call allocation, and without joining header and payload first: both
    are copied straight into the SRTP session's buffer. Raises `ConnectionError` while the
    transport is not connected, `pylibsrtp.Error` if libsrtp refuses the packet. A
    transport that is not an `RTCDtlsTransport` (tests, benches) gets aiortc's `_send_rtp`.
    """

    __slots__ = ("_addr", "_buffer", "_cdata", "_direct", "_dtls", "_length", "_limit",
                 "_nominated", "_pair", "_session", "_srtp", "_udp", "_view", "_zero_copy")

    def __init__(self, transport: RTCDtlsTransport) -> None:
        self._dtls = transport
        self._session: pylibsrtp.Session | None = None
        self._nominated: dict[int, Any] | None = None
        if isinstance(transport, RTCDtlsTransport):
            connection = transport.transport._connection
            self._nominated = connection._nominated
        self._length = _srtp_binding.ffi.new("int *")
        self._srtp: Any = None
        self._cdata: Any = None
        self._buffer: Any = None
        self._limit = 0
        self._pair: Any = _NO_PAIR
        self._addr: tuple[str, int] = ("", 0)
        self._udp: Any = None
        self._direct = False
        self._zero_copy = False
        self._view: memoryview = memoryview(b"")

    def rtp(self, header: bytes | bytearray, payload: bytes) -> None:
        """Protect and send one RTP packet given as header bytes + payload."""
        dtls = self._dtls
        if self._nominated is None:
            run_now(dtls._send_rtp(b"".join((header, payload))))
            return
        if dtls._state is not _DtlsState.CONNECTED:
            raise ConnectionError("Cannot send encrypted RTP, not connected")
        if dtls._tx_srtp is not self._session:
            self._use(dtls._tx_srtp)
        size = len(header)
        end = size + len(payload)
        if end > self._limit:
            raise pylibsrtp.Error("packet is too long")
        view = self._view
        view[0:size] = header
        view[size:end] = payload
        length = self._length
        length[0] = end
        if _srtp_protect(self._srtp, self._cdata, length) != _SRTP_OK:
            raise pylibsrtp.Error("srtp_protect failed")
        self._sendto(view[0 : length[0]])

    def rtcp(self, data: bytes) -> None:
        """Protect and send one serialized RTCP packet (rare: PLI, NACK)."""
        dtls = self._dtls
        if self._nominated is None:
            run_now(dtls._send_rtp(data))
            return
        if dtls._state is not _DtlsState.CONNECTED:
            raise ConnectionError("Cannot send encrypted RTCP, not connected")
        self._sendto(dtls._tx_srtp.protect_rtcp(data))

    def _use(self, session: pylibsrtp.Session) -> None:
        self._session = session
        self._srtp = session._srtp[0]
        self._cdata = session._cdata
        self._buffer = session._buffer
        self._view = memoryview(session._buffer)
        self._limit = len(session._cdata) - _SRTP_MAX_TRAILER_LEN

    def _sendto(self, data: bytes | memoryview) -> None:
        """Send on the nominated pair. `data` may view the SRTP buffer: only asyncio's own
        datagram transport gets it as is (it sends at once, or copies what it must queue)."""
        assert self._nominated is not None
        pair = self._nominated.get(1)
        if pair is not self._pair:
            if pair is None:
                raise ConnectionError("Cannot send data, not connected")
            self._pair = pair
            self._addr = pair.remote_addr
            protocol = pair.protocol
            self._direct = type(protocol).send_data is _STUN_SEND_DATA
            self._udp = protocol.transport if self._direct else protocol
            self._zero_copy = self._direct and isinstance(self._udp, _ASYNCIO_UDP)
        if self._zero_copy:
            udp = self._udp
            if udp._buffer:  # earlier datagrams wait for the socket: queue behind them
                udp.sendto(data, self._addr)
            else:
                try:
                    udp._sock.sendto(data, self._addr)
                except OSError:  # EAGAIN and the rest: asyncio queues or reports it
                    udp.sendto(data, self._addr)
        elif self._direct:
            self._udp.sendto(bytes(data), self._addr)  # e.g. aioice's TurnTransport
        else:
            run_now(self._udp.send_data(bytes(data), self._addr))
        dtls = self._dtls
        dtls._RTCDtlsTransport__tx_bytes += len(data)  # type: ignore[attr-defined]
        dtls._RTCDtlsTransport__tx_packets += 1  # type: ignore[attr-defined]


_NTP_EPOCH_OFFSET_MS = 2208988800 * 1000
"""aiortc's `clock.current_ms()` counts from 1900 (NTP); `time.time()` from 1970."""


def receive_rtp_directly(transport: RTCDtlsTransport) -> None:
    """Unprotect, parse and route this connection's SRTP where each datagram is read.

    Replaces `datagram_received` on the connection's protocols: SRTP packets (first byte
    128-191) reach the registered receiver's `_handle_rtp_packet`, and SRTCP aiortc's own
    `_handle_rtcp_data` (which routes it to the registered senders and receivers), without
    the STUN parse, the connection's queue, the DTLS transport's receive task and its
    event-loop turn; everything else (STUN, DTLS, SRTP before the DTLS handshake completed)
    takes aioice's path as before. A packet that fails to unprotect or to parse is dropped,
    as aiortc does (and `guard_rtp_parsing` for `struct.error`); an exception in a receiver
    is logged, not allowed to close the socket. Idempotent; a no-op for a transport that
    is not an `RTCDtlsTransport`.
    """
    if not isinstance(transport, RTCDtlsTransport):
        return
    connection = transport.transport._connection
    if getattr(connection, "_circle_direct_rtp", False):
        return
    connection._circle_direct_rtp = True  # type: ignore[attr-defined]
    parser = RtpParser(transport._rtp_header_extensions_map)
    transport._circle_rtp_parser = parser  # type: ignore[attr-defined]
    for protocol in connection._protocols:
        _receive_directly(protocol, transport, parser)


def _receive_directly(protocol: StunProtocol, dtls: RTCDtlsTransport, parser: RtpParser) -> None:
    stock = protocol.datagram_received
    router = dtls._rtp_router
    connected = _DtlsState.CONNECTED
    parse = parser.parse
    wall = time.time

    def datagram_received(data: bytes | str, addr: tuple[Any, ...]) -> None:
        session = dtls._rx_srtp
        if (
            session is None
            or len(data) < 8
            or not 127 < data[0] < 192  # type: ignore[operator]
            or dtls._state is not connected
        ):
            stock(data, addr)
            return
        assert isinstance(data, bytes)
        dtls._RTCDtlsTransport__rx_bytes += len(data)  # type: ignore[attr-defined]
        dtls._RTCDtlsTransport__rx_packets += 1  # type: ignore[attr-defined]
        if 191 < data[1] < 209:  # SRTCP (aiortc's `is_rtcp`)
            try:
                run_now(dtls._handle_rtcp_data(session.unprotect_rtcp(data)))
            except (pylibsrtp.Error, struct.error):
                return
            except Exception as exc:
                logger.warning("handling RTCP failed (%s)", type(exc).__name__, exc_info=True)
            return
        try:
            packet = parse(session.unprotect(data))
        except (pylibsrtp.Error, ValueError, IndexError, struct.error):
            return
        receiver = router.route_rtp(packet)
        if receiver is None:
            return
        try:
            run_now(receiver._handle_rtp_packet(
                packet, arrival_time_ms=int(wall() * 1000) + _NTP_EPOCH_OFFSET_MS))
        except Exception as exc:
            logger.warning("forwarding a packet failed (%s)", type(exc).__name__, exc_info=True)

    protocol.datagram_received = datagram_received  # type: ignore[method-assign]


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
    if _ASYNCIO_UDP is type(None) or not {"_buffer", "_sock"} <= _init_names(_ASYNCIO_UDP):
        missing.append("asyncio.selector_events._SelectorDatagramTransport(_buffer, _sock)")
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
