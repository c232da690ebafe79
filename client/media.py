"""The media half of the Python client: publish synthetic media, receive the relay's tracks.

The client makes the first offer; afterwards the relay offers whenever what the client
receives changes. Signaling messages reach the client in tasks of their own, so every SDP
operation is applied one at a time in arrival order, and a relay offer that overtakes the
answer to the client's own offer waits for that answer instead of failing.
Received tracks are attributed to publishers by their stream id (msid).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, replace
from typing import Any

from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc import sdp as aiortc_sdp
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcconfiguration import RTCBundlePolicy, RTCIceTransportPolicy

from client.ice import enable_loopback_gathering
from client.sources import PatternVideoTrack, ToneAudioTrack


@dataclass
class ReceivedStats:
    """What one client received from one publisher."""

    audio_packets: int = 0
    video_packets: int = 0
    audio_frames: int = 0
    video_frames: int = 0
    first_audio_frame_at: float | None = None
    """`time.monotonic()` when the first decoded audio frame arrived."""
    first_video_frame_at: float | None = None
    """`time.monotonic()` when the first decoded video frame arrived."""


def mark_screen(sdp: str, mid: str) -> str:
    """`sdp` with the section of `mid` marked as a screen share (`a=content:slides`, RFC
    4796): how the relay tells a screen from a camera (docs/media.md). Only the text sent
    to the relay carries it; the local description stays as aiortc (or a browser) made it."""
    sections = sdp.split("\r\nm=")
    for i, section in enumerate(sections):
        if i and f"\r\na=mid:{mid}\r\n" in section + "\r\n":
            sections[i] = section.replace(f"\r\na=mid:{mid}",
                                          f"\r\na=mid:{mid}\r\na=content:slides", 1)
    return "\r\nm=".join(sections)


class MediaPeer:
    """One client's peer connection to the relay."""

    def __init__(
        self,
        publish_audio: bool = True,
        publish_video: bool = True,
        loopback: bool = False,
        video_size: tuple[int, int] = (320, 240),
        video_fps: int = 15,
        ice_servers: list[dict[str, Any]] | None = None,
        video_codec: str = "VP8",
        relay_only: bool = False,
        publish_screen: bool = False,
        audio_amplitude: int = 800,
    ) -> None:
        """`publish_screen`: also send a second video track as a screen share (its section
        is marked `a=content:slides` in the offer; the relay forwards it only while the
        participant's share holds). `audio_amplitude`: the tone's level (client.sources)."""
        if loopback:
            enable_loopback_gathering()
        self._pc = RTCPeerConnection(
            RTCConfiguration(
                # Always explicit: aiortc falls back to a public STUN server without it.
                iceServers=[RTCIceServer(**server) for server in ice_servers or []],
                bundlePolicy=RTCBundlePolicy.MAX_BUNDLE,
                # iceTransportPolicy "relay": offer only TURN-relayed candidates.
                iceTransportPolicy=(RTCIceTransportPolicy.RELAY if relay_only
                                    else RTCIceTransportPolicy.ALL),
            )
        )
        self._lock = asyncio.Lock()
        self._stable = asyncio.Event()
        self._stable.set()
        self._stats: dict[str, ReceivedStats] = {}
        self._stream_of_track: dict[str, str] = {}
        self._receivers: dict[RTCRtpReceiver, tuple[str, str]] = {}
        self._consumers: set[asyncio.Task[None]] = set()
        self._pc.on("track", self._on_track)
        self._screen: RTCRtpTransceiver | None = None
        if publish_audio:
            self._pc.addTransceiver(ToneAudioTrack(audio_amplitude), direction="sendonly")
        if publish_video:
            width, height = video_size
            video = self._pc.addTransceiver(
                PatternVideoTrack(width, height, video_fps), "sendonly"
            )
            # Offer one codec only, as a browser that prefers it would (e.g. H.264 on iOS).
            preferred = [
                codec
                for codec in RTCRtpSender.getCapabilities("video").codecs
                if codec.mimeType.lower() == f"video/{video_codec.lower()}"
            ]
            if not preferred:
                raise ValueError(f"aiortc cannot send {video_codec}")
            video.setCodecPreferences(preferred)
        if publish_screen:
            width, height = video_size
            self._screen = self._pc.addTransceiver(
                PatternVideoTrack(width, height, video_fps), "sendonly")
            self._screen.setCodecPreferences([
                codec for codec in RTCRtpSender.getCapabilities("video").codecs
                if codec.mimeType.lower() == f"video/{video_codec.lower()}"])
        if not publish_audio and not publish_video and not publish_screen:
            # One m-section is needed to carry the transport; the relay adds the rest.
            self._pc.addTransceiver("audio", direction="recvonly")

    @property
    def peer_connection(self) -> RTCPeerConnection:
        return self._pc

    async def create_offer(self) -> str:
        """The client's first offer (its own tracks), candidates included."""
        async with self._lock:
            self._stable.clear()
            await self._pc.setLocalDescription(await self._pc.createOffer())
            sdp = str(self._pc.localDescription.sdp)
            if self._screen is not None and self._screen.mid is not None:
                sdp = mark_screen(sdp, self._screen.mid)
            return sdp

    async def apply_answer(self, sdp: str) -> None:
        """Apply the relay's answer to `create_offer`."""
        async with self._lock:
            await self._pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
            self._stable.set()

    async def handle_offer(self, sdp: str) -> str:
        """Apply a relay offer and return the answer (waits for our own offer's answer)."""
        await self._stable.wait()
        async with self._lock:
            self._learn_streams(sdp)
            await self._pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            await self._pc.setLocalDescription(await self._pc.createAnswer())
            return str(self._pc.localDescription.sdp)

    async def stats(self) -> dict[str, ReceivedStats]:
        """Per publisher id: packets received (from RTP stats) and frames decoded."""
        for receiver, (publisher, kind) in self._receivers.items():
            report = await receiver.getStats()
            packets = sum(
                getattr(s, "packetsReceived", 0)
                for s in report.values()
                if getattr(s, "type", "") == "inbound-rtp"
            )
            entry = self._stats.setdefault(publisher, ReceivedStats())
            if kind == "audio":
                entry.audio_packets = packets
            else:
                entry.video_packets = packets
        # Copies: a caller comparing two readings must not hold live, still-counting objects.
        return {publisher: replace(entry) for publisher, entry in self._stats.items()}

    async def close(self) -> None:
        for task in self._consumers:
            task.cancel()
        await self._pc.close()
        for task in list(self._consumers):
            with contextlib.suppress(asyncio.CancelledError, MediaStreamError):
                await task

    def _learn_streams(self, sdp: str) -> None:
        """Remember which stream (publisher) each offered track id belongs to."""
        for media in aiortc_sdp.SessionDescription.parse(sdp).media:
            if media.msid and " " in media.msid:
                stream, track = media.msid.split()[:2]
                self._stream_of_track[track] = stream

    def _on_track(self, track: MediaStreamTrack) -> None:
        publisher = self._stream_of_track.get(track.id)
        if publisher is None:
            return
        for transceiver in self._pc.getTransceivers():
            if transceiver.receiver.track is track:
                self._receivers[transceiver.receiver] = (publisher, track.kind)
        task = asyncio.get_running_loop().create_task(self._consume(track, publisher))
        self._consumers.add(task)

    async def _consume(self, track: MediaStreamTrack, publisher: str) -> None:
        entry = self._stats.setdefault(publisher, ReceivedStats())
        while True:
            try:
                await track.recv()
            except MediaStreamError:
                return
            now = time.monotonic()
            if track.kind == "audio":
                entry.audio_frames += 1
                if entry.first_audio_frame_at is None:
                    entry.first_audio_frame_at = now
            else:
                entry.video_frames += 1
                if entry.first_video_frame_at is None:
                    entry.first_video_frame_at = now
