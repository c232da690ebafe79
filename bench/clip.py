"""A pre-encoded media clip, so bench clients spend no CPU on encoding while measuring.

The clip is encoded once with aiortc's own VP8 and Opus encoders (the same bitstreams a
Python client would send) and cached on disk; clients replay its RTP payloads with the
right timing. Frame 0 is a keyframe, so a client answers a PLI by restarting the clip.
"""

from __future__ import annotations

import base64
import fractions
import json
import math
import os
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path

from aiortc.codecs.opus import OpusEncoder
from aiortc.codecs.vpx import Vp8Encoder
from av import AudioFrame, VideoFrame

AUDIO_RATE = 48000
AUDIO_PTIME = 0.020
VIDEO_CLOCK = 90000


@dataclass(frozen=True)
class Clip:
    """Per frame: the RTP payloads of that frame (one frame per period)."""

    fps: int
    video: list[list[bytes]]
    audio: list[bytes]

    @property
    def video_packets_per_s(self) -> float:
        return sum(len(f) for f in self.video) / len(self.video) * self.fps

    @property
    def video_bitrate(self) -> float:
        return sum(len(p) for f in self.video for p in f) * 8 / len(self.video) * self.fps


def _video_frame(width: int, height: int, index: int, rng: random.Random) -> VideoFrame:
    """A moving bar over a gradient plus a noisy block, so VP8 reaches its target bitrate."""
    frame = VideoFrame(width, height, "yuv420p")
    luma = bytearray(width * height)
    shift = index * 4
    row = bytes((x + shift) % 256 for x in range(width))
    for y in range(height):
        luma[y * width : (y + 1) * width] = row
    block = height // 4
    for y in range(block):
        start = (height // 2 + y) * width + width // 4
        luma[start : start + width // 4] = rng.randbytes(width // 4)
    frame.planes[0].update(bytes(luma))
    chroma = bytes([128]) * ((width // 2) * (height // 2))
    frame.planes[1].update(chroma)
    frame.planes[2].update(chroma)
    frame.pts = index * (VIDEO_CLOCK // 15)
    frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
    return frame


def encode_clip(width: int, height: int, fps: int, seconds: float, bitrate: int) -> Clip:
    rng = random.Random(7)  # noqa: S311 (seeded: the same clip every time)
    encoder = Vp8Encoder()
    encoder.target_bitrate = bitrate
    video: list[list[bytes]] = []
    for i in range(int(seconds * fps)):
        payloads, _ = encoder.encode(_video_frame(width, height, i, rng), force_keyframe=i == 0)
        video.append(list(payloads))
    opus = OpusEncoder()
    samples = int(AUDIO_RATE * AUDIO_PTIME)
    audio: list[bytes] = []
    for i in range(int(seconds / AUDIO_PTIME)):
        pcm = b"".join(
            int(3000 * math.sin(2 * math.pi * 440 * (i * samples + k) / AUDIO_RATE)).to_bytes(
                2, "little", signed=True
            )
            for k in range(samples)
        )
        frame = AudioFrame(format="s16", layout="mono", samples=samples)
        frame.planes[0].update(pcm)
        frame.sample_rate = AUDIO_RATE
        frame.pts = i * samples
        frame.time_base = fractions.Fraction(1, AUDIO_RATE)
        payloads, _ = opus.encode(frame)
        audio.extend(payloads)
    return Clip(fps=fps, video=video, audio=audio)


def load_clip(width: int, height: int, fps: int, seconds: float, bitrate: int) -> Path:
    """Encode (once) and cache the clip; returns its path for worker processes."""
    name = f"circle-bench-clip-{width}x{height}-{fps}-{seconds}-{bitrate}.json"
    path = Path(tempfile.gettempdir()) / name
    if not path.exists():
        clip = encode_clip(width, height, fps, seconds, bitrate)
        tmp = path.with_suffix(f".{os.getpid()}")
        tmp.write_text(json.dumps({
            "fps": clip.fps,
            "video": [[_b64(p) for p in frame] for frame in clip.video],
            "audio": [_b64(p) for p in clip.audio],
        }))
        tmp.replace(path)
    return path


def read_clip(path: str | Path) -> Clip:
    """The clip `load_clip` cached. JSON, not pickle: the cache sits in the shared temp
    directory under a name anyone can guess, so reading it must never run code."""
    data = json.loads(Path(path).read_text())
    return Clip(
        fps=int(data["fps"]),
        video=[[base64.b64decode(p) for p in frame] for frame in data["video"]],
        audio=[base64.b64decode(p) for p in data["audio"]],
    )


def _b64(payload: bytes) -> str:
    return base64.b64encode(payload).decode("ascii")
