"""Recognise the first packet of a keyframe in VP8 and H.264 RTP payloads.

A subscriber that starts mid-stream is held back until a keyframe begins: delta frames
before it only make the decoder fail and ask for a keyframe anyway, later.
"""

from __future__ import annotations


def starts_keyframe(mime_type: str, payload: bytes) -> bool:
    """Whether `payload` is the first packet of a keyframe (True for codecs not inspected)."""
    mime = mime_type.lower()
    if mime == "video/vp8":
        return _vp8_starts_keyframe(payload)
    if mime == "video/h264":
        return _h264_starts_keyframe(payload)
    return True


def _vp8_starts_keyframe(payload: bytes) -> bool:
    """RFC 7741: start of partition 0, with the inverse key-frame bit P clear."""
    if not payload:
        return False
    first = payload[0]
    start_of_partition = bool(first & 0x10)
    partition_id = first & 0x0F
    if not start_of_partition or partition_id != 0:
        return False
    pos = 1
    if first & 0x80:  # X: extension byte follows
        if len(payload) <= pos:
            return False
        ext = payload[pos]
        pos += 1
        if ext & 0x80:  # I: picture id, 7 or 15 bits
            if len(payload) <= pos:
                return False
            pos += 2 if payload[pos] & 0x80 else 1
        if ext & 0x40:  # L: TL0PICIDX
            pos += 1
        if ext & 0x30:  # T or K: TID/Y/KEYIDX
            pos += 1
    if len(payload) <= pos:
        return False
    return payload[pos] & 0x01 == 0


def _h264_starts_keyframe(payload: bytes) -> bool:
    """RFC 6184: an SPS or IDR NAL unit, alone, in a STAP-A, or starting an FU-A."""
    if not payload:
        return False
    nal_type = payload[0] & 0x1F
    if nal_type in (5, 7):
        return True
    if nal_type == 24:  # STAP-A: 16-bit size before each NAL unit
        pos = 1
        while pos + 2 < len(payload):
            size = int.from_bytes(payload[pos : pos + 2], "big")
            if payload[pos + 2] & 0x1F in (5, 7):
                return True
            pos += 2 + size
        return False
    if nal_type == 28 and len(payload) > 1:  # FU-A: start bit and original type
        return bool(payload[1] & 0x80) and payload[1] & 0x1F in (5, 7)
    return False
