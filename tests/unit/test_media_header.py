"""HeaderWriter: byte-level headers must parse exactly like aiortc's own serialization."""

from __future__ import annotations

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
