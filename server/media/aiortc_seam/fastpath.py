"""The per-packet paths: synchronous SRTP egress (`SendPath`) and SRTP/SRTCP unprotected
where the datagram is read (`receive_rtp_directly`); see the package docstring."""

from __future__ import annotations

import asyncio
import asyncio.selector_events as _asyncio_selector_events
import logging
import struct
import time
from collections.abc import Coroutine
from typing import Any

import pylibsrtp
from aioice.ice import StunProtocol
from aiortc import (
    RTCDtlsTransport,
)
from aiortc.rtcdtlstransport import State as _DtlsState
from pylibsrtp import _binding as _srtp_binding

from server.media.rewrite import RtpParser

logger = logging.getLogger(__name__)


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
        nominated = self._nominated
        if nominated is None:
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
        self._sendto(nominated, view[0 : length[0]])

    def rtcp(self, data: bytes) -> None:
        """Protect and send one serialized RTCP packet (rare: PLI, NACK)."""
        dtls = self._dtls
        nominated = self._nominated
        if nominated is None:
            run_now(dtls._send_rtp(data))
            return
        if dtls._state is not _DtlsState.CONNECTED:
            raise ConnectionError("Cannot send encrypted RTCP, not connected")
        self._sendto(nominated, dtls._tx_srtp.protect_rtcp(data))

    def _use(self, session: pylibsrtp.Session) -> None:
        self._session = session
        self._srtp = session._srtp[0]
        self._cdata = session._cdata
        self._buffer = session._buffer
        self._view = memoryview(session._buffer)
        self._limit = len(session._cdata) - _SRTP_MAX_TRAILER_LEN

    def _sendto(self, nominated: dict[int, Any], data: bytes | memoryview) -> None:
        """Send on the nominated pair. `data` may view the SRTP buffer: only asyncio's own
        datagram transport gets it as is (it sends at once, or copies what it must queue).
        `nominated` is `self._nominated`, passed in by the callers that found it set."""
        pair = nominated.get(1)
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


WARN_EVERY_S = 10.0
"""A failure on the per-packet path is logged at most this often per kind (no flood)."""
_warned_at: dict[tuple[str, str], float] = {}


def warn_throttled(what: str, exc: Exception) -> None:
    """Log a per-packet failure by exception type only (its text could quote packet data),
    at most once per `WARN_EVERY_S` for each (what, type)."""
    key = (what, type(exc).__name__)
    now = time.monotonic()
    last = _warned_at.get(key)
    if last is not None and now - last < WARN_EVERY_S:
        return
    _warned_at[key] = now
    logger.warning("%s failed (%s); the same failure is not logged again for %g s",
                   what, key[1], WARN_EVERY_S)


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
            or not isinstance(data, bytes)
            or len(data) < 8
            or not 127 < data[0] < 192
            or dtls._state is not connected
        ):
            stock(data, addr)
            return
        dtls._RTCDtlsTransport__rx_bytes += len(data)  # type: ignore[attr-defined]
        dtls._RTCDtlsTransport__rx_packets += 1  # type: ignore[attr-defined]
        if 191 < data[1] < 209:  # SRTCP (aiortc's `is_rtcp`)
            try:
                run_now(dtls._handle_rtcp_data(session.unprotect_rtcp(data)))
            except (pylibsrtp.Error, struct.error):
                return
            except Exception as exc:
                warn_throttled("handling RTCP", exc)
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
            warn_throttled("forwarding a packet", exc)

    protocol.datagram_received = datagram_received  # type: ignore[method-assign]
