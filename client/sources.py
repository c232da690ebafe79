"""Synthetic media for the Python client: a moving test pattern and a quiet tone.

Small on purpose (320x240 at 15 fps by default) so that a dozen clients fit on one
machine next to the relay; the picture changes every frame so VP8 has real work.
"""

from __future__ import annotations

import asyncio
import fractions
import math
import time

from aiortc.mediastreams import MediaStreamTrack
from av import AudioFrame, VideoFrame

VIDEO_CLOCK_RATE = 90000
AUDIO_RATE = 48000
AUDIO_PTIME = 0.020


class PatternVideoTrack(MediaStreamTrack):
    """A moving bar over a flat background, at a fixed frame rate."""

    kind = "video"

    def __init__(self, width: int = 320, height: int = 240, fps: int = 15) -> None:
        super().__init__()
        self._width = width
        self._height = height
        self._fps = fps
        self._count = 0
        self._start: float | None = None
        self._chroma = bytes([128]) * ((width // 2) * (height // 2))

    async def recv(self) -> VideoFrame:
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self._count / self._fps
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        frame = VideoFrame(self._width, self._height, "yuv420p")
        bar = (self._count * 8) % self._width
        row = bytearray([60]) * self._width
        row[bar : bar + 16] = bytes([230]) * len(row[bar : bar + 16])
        frame.planes[0].update(bytes(row) * self._height)
        frame.planes[1].update(self._chroma)
        frame.planes[2].update(self._chroma)
        frame.pts = self._count * (VIDEO_CLOCK_RATE // self._fps)
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK_RATE)
        self._count += 1
        return frame


class ToneAudioTrack(MediaStreamTrack):
    """A quiet 440 Hz tone in 20 ms mono frames (silence would let Opus send almost nothing).

    `amplitude` (of 32767) sets the level aiortc writes in the RFC 6464 audio-level
    extension (RMS of the frame): 800 is about -35 dBov (counts as speech at the relay,
    threshold -50 dBov), 8000 about -15 dBov (speech), 5 about -79 dBov (near silence)."""

    kind = "audio"

    def __init__(self, amplitude: int = 800) -> None:
        super().__init__()
        self._count = 0
        self._start: float | None = None
        samples = int(AUDIO_RATE * AUDIO_PTIME)
        period = [
            int(amplitude * math.sin(2 * math.pi * 440 * i / AUDIO_RATE))
            for i in range(samples)
        ]
        self._pcm = b"".join(v.to_bytes(2, "little", signed=True) for v in period)
        self._samples = samples

    async def recv(self) -> AudioFrame:
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self._count * AUDIO_PTIME
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        frame = AudioFrame(format="s16", layout="mono", samples=self._samples)
        frame.planes[0].update(self._pcm)
        frame.sample_rate = AUDIO_RATE
        frame.pts = self._count * self._samples
        frame.time_base = fractions.Fraction(1, AUDIO_RATE)
        self._count += 1
        return frame
