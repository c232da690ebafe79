"""HeaderWriter: byte-level headers must parse exactly like aiortc's own serialization."""

from __future__ import annotations

from typing import Any

from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensions, HeaderExtensionsMap, RtpPacket

from server.media.rewrite import ExtensionIds, HeaderWriter

MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
ABS = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
TWCC = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"


def _map(**ids: int) -> HeaderExtensionsMap:
    uris = {"mid": MID, "abs": ABS, "level": LEVEL, "twcc": TWCC}
    extensions_map = HeaderExtensionsMap()
    extensions_map.configure(
        RTCRtpParameters(
            headerExtensions=[
                RTCRtpHeaderExtensionParameters(id=i, uri=uris[k]) for k, i in ids.items()
            ]
        )
    )
    return extensions_map


def test_ids_are_read_from_the_map() -> None:
    assert ExtensionIds.from_map(_map(mid=4, abs=9, level=2)) == ExtensionIds(4, 9, 2)
    assert ExtensionIds.from_map(_map()) == ExtensionIds(0, 0, 0)


def test_video_header_matches_aiortc_and_is_patched_per_packet() -> None:
    extensions_map = _map(mid=3, abs=5, twcc=7)
    writer = HeaderWriter(0xDEADBEEF, "12", ExtensionIds.from_map(extensions_map))
    for seq, ts, marker, abs_time in ((65535, 2**32 - 1, 1, 0xABCDEF), (0, 7, 0, 1)):
        data = bytes(writer.header(100, marker, seq, ts, abs_time, None)) + b"payload"
        parsed = RtpPacket.parse(data, extensions_map)
        assert (parsed.payload_type, parsed.marker) == (100, marker)
        assert (parsed.sequence_number, parsed.timestamp) == (seq, ts)
        assert parsed.ssrc == 0xDEADBEEF and parsed.payload == b"payload"
        assert parsed.extensions == HeaderExtensions(mid="12", abs_send_time=abs_time)


def test_audio_level_and_missing_abs_send_time() -> None:
    extensions_map = _map(mid=1, abs=2, level=3)
    writer = HeaderWriter(1, "0", ExtensionIds.from_map(extensions_map))
    data = bytes(writer.header(111, 0, 5, 6, None, (True, 42))) + b"x"
    parsed = RtpPacket.parse(data, extensions_map)
    assert parsed.extensions == HeaderExtensions(mid="0", audio_level=(True, 42))
    data = bytes(writer.header(111, 1, 6, 7, 99, (False, 127))) + b"y"
    parsed = RtpPacket.parse(data, extensions_map)
    assert parsed.extensions == HeaderExtensions(
        mid="0", abs_send_time=99, audio_level=(False, 127)
    )


def test_no_extensions_negotiated_gives_a_plain_12_byte_header() -> None:
    writer = HeaderWriter(9, "0", ExtensionIds.from_map(_map()))
    header = writer.header(96, 1, 1, 2, 123, (True, 1))
    assert len(header) == 12 and header[0] == 0x80
    parsed = RtpPacket.parse(bytes(header) + b"z", _map())
    assert parsed.extensions == HeaderExtensions() and parsed.payload == b"z"


def test_long_mid_uses_the_two_byte_form() -> None:
    extensions_map = _map(mid=1, abs=2)
    writer = HeaderWriter(9, "m" * 20, ExtensionIds.from_map(extensions_map))
    data = bytes(writer.header(96, 0, 1, 2, 77, None)) + b"p"
    assert data[12:14] == b"\x10\x00"
    parsed = RtpPacket.parse(data, extensions_map)
    assert parsed.extensions == HeaderExtensions(mid="m" * 20, abs_send_time=77)


def _parsed(parse: Any, data: bytes) -> Any:
    try:
        p = parse(data)
    except Exception as exc:  # the same failure, whatever it is
        return type(exc).__name__
    return (p.version, p.marker, p.payload_type, p.sequence_number, p.timestamp, p.ssrc,
            p.csrc, p.extensions, p.payload, p.padding_size)


def test_parser_matches_aiortc_on_common_and_odd_packets() -> None:
    import random

    from server.media.rewrite import RtpParser

    rng = random.Random(7)
    maps = [_map(mid=1, abs=2, twcc=3), _map(mid=4, level=9), _map(), _map(mid=12, abs=3)]
    for extensions_map in maps:
        parser = RtpParser(extensions_map)
        for _ in range(3000):
            packet = RtpPacket(payload_type=rng.choice((96, 111)), marker=rng.randrange(2),
                               sequence_number=rng.randrange(65536),
                               timestamp=rng.randrange(1 << 32), ssrc=rng.randrange(1 << 32),
                               payload=rng.randbytes(rng.randrange(0, 40)))
            packet.extensions = HeaderExtensions(
                mid=rng.choice((None, "0", "12")),
                abs_send_time=rng.choice((None, rng.randrange(1 << 24))),
                audio_level=rng.choice((None, (True, 5), (False, 127))),
                transport_sequence_number=rng.choice((None, rng.randrange(65536))),
            )
            if rng.random() < 0.1:
                packet.csrc = [1, 2]
            if rng.random() < 0.1:
                packet.padding_size = 3
            data = bytearray(packet.serialize(extensions_map))
            if rng.random() < 0.3:  # corrupt a header or extension byte, or truncate
                at = rng.randrange(min(len(data), 24))
                data[at] = rng.randrange(256)
            if rng.random() < 0.1:
                data = data[: rng.randrange(len(data) + 1)]
            raw = bytes(data)
            assert _parsed(parser.parse, raw) == _parsed(
                lambda d, m=extensions_map: RtpPacket.parse(d, m), raw), raw.hex()


def test_parser_defers_to_aiortc_when_ids_it_does_not_decode_are_negotiated() -> None:
    from server.media.rewrite import RtpParser

    rid = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
    extensions_map = HeaderExtensionsMap()
    extensions_map.configure(RTCRtpParameters(headerExtensions=[
        RTCRtpHeaderExtensionParameters(id=1, uri=MID),
        RTCRtpHeaderExtensionParameters(id=5, uri=rid)]))
    packet = RtpPacket(payload_type=96, payload=b"x")
    packet.extensions = HeaderExtensions(mid="1", rtp_stream_id="h")
    assert RtpParser(extensions_map).parse(packet.serialize(extensions_map)).extensions == (
        HeaderExtensions(mid="1", rtp_stream_id="h"))
