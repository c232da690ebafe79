"""Per-subscriber rewriting of sequence numbers and timestamps.

A subscriber sees one continuous stream per forwarded track even when forwarding pauses
(mute, keyframe wait) and resumes: after a pause the next packet continues the sequence
(no gap to NACK) and the timestamp advances by the wall-clock time that passed.
Within one forwarding run the mapping is a fixed offset, so a retransmitted packet maps
to the same outgoing number as the original and NACKs can be mapped back.
"""

from __future__ import annotations

import secrets
import struct
from dataclasses import dataclass

from aiortc.rtp import HeaderExtensions, HeaderExtensionsMap, RtpPacket

SEQ_MOD = 1 << 16
TS_MOD = 1 << 32


class StreamRewriter:
    """Maps a publisher's (seq, timestamp) to a subscriber's."""

    def __init__(self, clock_rate: int) -> None:
        self._clock_rate = clock_rate
        self._seq_offset = 0
        self._ts_offset = 0
        # Unpredictable starting points, as RFC 3550 5.1 asks (known-plaintext attacks on SRTP).
        self._last_out_seq = secrets.randbelow(SEQ_MOD // 2)
        self._last_out_ts = secrets.randbelow(TS_MOD)
        self._last_sent_at: float | None = None
        self._run_start_out_seq: int | None = None
        self._run_start_in_seq = 0
        self._highest_in_seq = 0

    def pause(self) -> None:
        """Forwarding stops; the next packet starts a new run."""
        self._run_start_out_seq = None

    @property
    def running(self) -> bool:
        return self._run_start_out_seq is not None

    def map(self, seq: int, timestamp: int, now: float) -> tuple[int, int] | None:
        """The outgoing (seq, timestamp) for a packet forwarded at `now` (seconds).

        None for a packet older than the current run (it would reuse an old number).
        """
        if self._run_start_out_seq is None:
            elapsed = 0.0 if self._last_sent_at is None else now - self._last_sent_at
            ticks = max(1, int(elapsed * self._clock_rate))
            out_seq = (self._last_out_seq + 1) % SEQ_MOD
            out_ts = (self._last_out_ts + ticks) % TS_MOD
            self._seq_offset = (out_seq - seq) % SEQ_MOD
            self._ts_offset = (out_ts - timestamp) % TS_MOD
            self._run_start_out_seq = out_seq
            self._run_start_in_seq = seq
            self._highest_in_seq = seq
        elif 0 < (self._run_start_in_seq - seq) & 0xFFFF < 0x8000:
            return None  # older than the run (inlined `_seq_newer`: this runs per packet)
        out_seq = (seq + self._seq_offset) & 0xFFFF
        out_ts = (timestamp + self._ts_offset) & 0xFFFFFFFF
        if 0 < (seq - self._highest_in_seq) & 0xFFFF < 0x8000 or out_seq == self._run_start_out_seq:
            self._highest_in_seq = seq
            self._last_out_seq = out_seq
            self._last_out_ts = out_ts
            self._last_sent_at = now
        return out_seq, out_ts

    def unmap(self, out_seq: int) -> int | None:
        """The publisher's sequence number for `out_seq`, if it was sent in this run."""
        start = self._run_start_out_seq
        if start is None:
            return None
        if (out_seq - start) % SEQ_MOD > (self._last_out_seq - start) % SEQ_MOD:
            return None
        return (out_seq - self._seq_offset) % SEQ_MOD


def _seq_newer(a: int, b: int) -> bool:
    """Whether sequence number `a` comes after `b`, modulo wrap-around."""
    return a != b and (a - b) % SEQ_MOD < SEQ_MOD // 2


class HeaderWriter:
    """Writes one subscriber's RTP header bytes in place, instead of serializing a packet.

    The header of every packet sent on one egress is the same 12 bytes plus the same
    extension block except for a few fields, so it is built once per egress (per variant:
    with or without abs-send-time / audio level) with the subscriber connection's own
    extension ids, and only marker/payload type, sequence number, timestamp and the
    extension values are patched per packet with `struct.pack_into` into a reused
    bytearray. Extensions kept: mid (the subscriber's, constant), abs-send-time and audio
    level (values copied from the publisher). Everything else the publisher sent
    (transport-wide sequence numbers, RID, unknown ids) is stripped: it describes the
    publisher's connection, and its ids mean nothing on the subscriber's.
    """

    __slots__ = ("_ids", "_mid", "_ssrc", "_variants")

    def __init__(self, ssrc: int, mid: str | None, ids: ExtensionIds) -> None:
        self._ssrc = ssrc
        self._mid = mid.encode("utf8") if mid else b""
        self._ids = ids
        self._variants: dict[tuple[bool, bool], tuple[bytearray, int, int]] = {}

    def header(
        self,
        payload_type: int,
        marker: int,
        seq: int,
        timestamp: int,
        abs_send_time: int | None,
        audio_level: tuple[bool, int] | None,
    ) -> bytearray:
        """The header for one packet; valid until the next call (the buffer is reused)."""
        key = (abs_send_time is not None, audio_level is not None)
        variant = self._variants.get(key)
        if variant is None:
            variant = self._variants[key] = self._build(*key)
        buf, abs_at, level_at = variant
        _PACK_HEAD(buf, 1, (marker << 7) | payload_type, seq, timestamp)
        if abs_at and abs_send_time is not None:
            _PACK_ABS(buf, abs_at, abs_send_time >> 8 & 0xFFFF, abs_send_time & 0xFF)
        if level_at and audio_level is not None:
            buf[level_at] = (0x80 if audio_level[0] else 0) | (audio_level[1] & 0x7F)
        return buf

    def _build(self, with_abs: bool, with_level: bool) -> tuple[bytearray, int, int]:
        """Header template and offsets of the abs-send-time and audio-level values (0: none)."""
        elements: list[tuple[int, bytes]] = []
        if self._mid and self._ids.mid:
            elements.append((self._ids.mid, self._mid))
        if with_abs and self._ids.abs_send_time:
            elements.append((self._ids.abs_send_time, b"\x00\x00\x00"))
        if with_level and self._ids.audio_level:
            elements.append((self._ids.audio_level, b"\x00"))
        one_byte = all(0 < i <= 14 and 0 < len(v) <= 16 for i, v in elements)
        block = bytearray()
        offsets: dict[int, int] = {}
        for x_id, value in elements:
            if one_byte:
                block.append((x_id << 4) | (len(value) - 1))
            else:
                block += bytes([x_id, len(value)])
            offsets[x_id] = len(block)
            block += value
        block += b"\x00" * (-len(block) % 4)
        head = bytearray(12)
        struct.pack_into("!BBHII", head, 0, 0x90 if block else 0x80, 0, 0, 0, self._ssrc)
        if block:
            head += struct.pack("!HH", 0xBEDE if one_byte else 0x1000, len(block) // 4) + block
        base = 16 if block else 12
        abs_at = offsets.get(self._ids.abs_send_time) if with_abs else None
        level_at = offsets.get(self._ids.audio_level) if with_level else None
        return (
            head,
            0 if abs_at is None else base + abs_at,
            0 if level_at is None else base + level_at,
        )


@dataclass(frozen=True)
class ExtensionIds:
    """The header-extension ids one connection negotiated (0: not negotiated)."""

    mid: int = 0
    abs_send_time: int = 0
    audio_level: int = 0

    @classmethod
    def from_map(cls, extensions_map: HeaderExtensionsMap) -> ExtensionIds:
        """Read the ids through the map's public `set` (aiortc keeps them private)."""
        return cls(
            mid=_id_of(extensions_map, HeaderExtensions(mid="0")),
            abs_send_time=_id_of(extensions_map, HeaderExtensions(abs_send_time=0)),
            audio_level=_id_of(extensions_map, HeaderExtensions(audio_level=(False, 0))),
        )


def _id_of(extensions_map: HeaderExtensionsMap, values: HeaderExtensions) -> int:
    """The id `extensions_map` writes the one extension set in `values` with (0: none)."""
    profile, block = extensions_map.set(values)
    if not block:
        return 0
    return block[0] >> 4 if profile == 0xBEDE else block[0]


class RtpParser:
    """`RtpPacket.parse(data, extensions_map)`, with the same result, for the common case.

    Every packet the relay receives is parsed once; aiortc's parser builds the extension
    list, slices and `struct`-unpacks every value. Here a packet without CSRCs or padding
    whose extensions are one-byte mid / abs-send-time / audio-level / transport-wide
    sequence number (or unknown ids, which aiortc ignores too) is parsed inline; anything
    else (CSRCs, padding, two-byte extensions, RID, transmission offset, odd lengths) is
    handed to aiortc's parser. Call `refresh` after the map is configured again (the ids
    are read through its public `set`).
    """

    __slots__ = ("_abs", "_level", "_map", "_mid", "_stock", "_twcc")

    def __init__(self, extensions_map: HeaderExtensionsMap) -> None:
        self._map = extensions_map
        self._mid = self._abs = self._level = self._twcc = -1
        self._stock = True
        self.refresh()

    def refresh(self) -> None:
        m = self._map
        ids = ExtensionIds.from_map(m)
        twcc = _id_of(m, HeaderExtensions(transport_sequence_number=0))
        others = {
            _id_of(m, HeaderExtensions(rtp_stream_id="0")),
            _id_of(m, HeaderExtensions(repaired_rtp_stream_id="0")),
            _id_of(m, HeaderExtensions(transmission_offset=0)),
        } - {0}
        known = [ids.mid, ids.abs_send_time, ids.audio_level, twcc]
        # ids this parser does not decode: aiortc's parser for every packet
        self._stock = bool(others) or any(i > 14 for i in known)
        # -1 never matches a one-byte id (0, not negotiated, would match padding)
        self._mid, self._abs, self._level, self._twcc = (i or -1 for i in known)

    def parse(self, data: bytes) -> RtpPacket:
        if self._stock or len(data) < 16:
            return RtpPacket.parse(data, self._map)
        first = data[0]
        if first == 0x90 and data[12] == 0xBE and data[13] == 0xDE:
            pos = 16
            end = 16 + 4 * ((data[14] << 8) | data[15])
            if len(data) < end:
                return RtpPacket.parse(data, self._map)  # raises: truncated
        elif first == 0x80:
            pos = end = 12
        else:
            return RtpPacket.parse(data, self._map)
        marker_pt, seq, timestamp, ssrc = _UNPACK_HEAD(data, 1)
        packet = RtpPacket(marker_pt & 0x7F, marker_pt >> 7, seq, timestamp, ssrc, data[end:])
        values = packet.extensions
        while pos < end:
            head = data[pos]
            if head == 0:
                pos += 1
                continue
            x_id = head >> 4
            size = (head & 0x0F) + 1
            pos += 1
            if pos + size > end:
                return RtpPacket.parse(data, self._map)  # raises: truncated
            if x_id == self._mid:
                values.mid = data[pos : pos + size].decode("utf8")
            elif x_id == self._abs:
                if size != 3:
                    return RtpPacket.parse(data, self._map)  # raises, as aiortc does
                values.abs_send_time = (data[pos] << 16) | (data[pos + 1] << 8) | data[pos + 2]
            elif x_id == self._level:
                if size != 1:
                    return RtpPacket.parse(data, self._map)
                level = data[pos]
                values.audio_level = (level & 0x80 == 0x80, level & 0x7F)
            elif x_id == self._twcc:
                if size != 2:
                    return RtpPacket.parse(data, self._map)
                values.transport_sequence_number = (data[pos] << 8) | data[pos + 1]
            pos += size
        return packet


_PACK_HEAD = struct.Struct("!BHI").pack_into
_UNPACK_HEAD = struct.Struct("!BHII").unpack_from
_PACK_ABS = struct.Struct("!HB").pack_into
