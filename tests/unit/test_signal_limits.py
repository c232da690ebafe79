"""An offer may name a browser's handful of ICE candidates and media sections, not
thousands."""

from __future__ import annotations

import pytest

from signaling.protocol import (
    MAX_ICE_CANDIDATES,
    MAX_MEDIA_SECTIONS,
    ProtocolError,
    SignalPayload,
    parse_client_event,
)


def offer(candidates: int) -> dict[str, str]:
    lines = ["v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", "t=0 0", "m=audio 9 UDP/TLS/RTP/SAVPF 111"]
    lines += [f"a=candidate:{i} 1 udp 2122260223 127.0.0.1 {10000 + i} typ host"
              for i in range(candidates)]
    return {"type": "offer", "sdp": "\r\n".join(lines) + "\r\n"}


def test_an_offer_with_a_browsers_candidates_is_taken() -> None:
    for count in (8, MAX_ICE_CANDIDATES):
        parsed = parse_client_event("signal", offer(count))
        assert isinstance(parsed, SignalPayload)
        assert parsed.sdp.count("a=candidate:") == count


def test_an_offer_with_too_many_candidates_is_invalid() -> None:
    with pytest.raises(ProtocolError) as refused:
        parse_client_event("signal", offer(MAX_ICE_CANDIDATES + 1))
    assert refused.value.code == "invalid" and "ICE candidates" in refused.value.message


def with_sections(count: int) -> dict[str, str]:
    lines = ["v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", "t=0 0"]
    for mid in range(count):
        lines += ["m=audio 9 UDP/TLS/RTP/SAVPF 111", f"a=mid:{mid}"]
    return {"type": "answer", "sdp": "\r\n".join(lines) + "\r\n"}


def test_an_sdp_with_too_many_media_sections_is_invalid() -> None:
    assert isinstance(parse_client_event("signal", with_sections(MAX_MEDIA_SECTIONS)),
                      SignalPayload)
    with pytest.raises(ProtocolError) as refused:
        parse_client_event("signal", with_sections(MAX_MEDIA_SECTIONS + 1))
    assert refused.value.code == "invalid" and "media sections" in refused.value.message
