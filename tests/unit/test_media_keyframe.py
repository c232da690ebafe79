"""Keyframe detection for VP8 and H.264 RTP payloads."""

from __future__ import annotations

from server.media.keyframe import starts_keyframe


def test_vp8() -> None:
    assert starts_keyframe("video/VP8", bytes([0x10, 0x00]))  # S=1, PID=0, P=0
    assert not starts_keyframe("video/VP8", bytes([0x10, 0x01]))  # inter frame
    assert not starts_keyframe("video/VP8", bytes([0x00, 0x00]))  # not a partition start
    # X=1, I=1 with a 15-bit picture id, then the key-frame byte
    assert starts_keyframe("video/VP8", bytes([0x90, 0x80, 0x80, 0x01, 0x00]))
    assert not starts_keyframe("video/VP8", bytes([0x90, 0x80, 0x80, 0x01, 0x01]))
    assert not starts_keyframe("video/VP8", b"")


def test_h264() -> None:
    assert starts_keyframe("video/H264", bytes([0x65]))  # IDR
    assert starts_keyframe("video/H264", bytes([0x67]))  # SPS
    assert not starts_keyframe("video/H264", bytes([0x41]))  # non-IDR slice
    assert starts_keyframe("video/H264", bytes([0x78, 0x00, 0x01, 0x67, 0x00, 0x01, 0x68]))
    assert starts_keyframe("video/H264", bytes([0x7C, 0x85]))  # FU-A start of IDR
    assert not starts_keyframe("video/H264", bytes([0x7C, 0x05]))  # FU-A continuation


def test_other_codecs_are_not_held_back() -> None:
    assert starts_keyframe("audio/opus", b"\x01")
