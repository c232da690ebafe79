"""Shared helpers for relay tests: real aiortc clients on loopback, no mocks.

`Harness` plays the control plane: it applies plans and routes the relay's offers to
the right client's `MediaPeer`, answering them in order.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from client.media import MediaPeer, ReceivedStats
from server.media.relay import MediaRelay
from server.media.settings import RelaySettings
from signaling.ports import MediaGrant, MediaKind, MediaPlan, SignalType

SESSION = "s1"


async def wait_until(
    condition: Callable[[], Awaitable[bool]], timeout: float = 8.0, interval: float = 0.02
) -> float:
    """Poll `condition` until true; returns the seconds it took. Fails at the deadline."""
    start = time.monotonic()
    while True:
        if await condition():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


Counter = Callable[[], Awaitable[int]]
"""Reads a count that only grows, e.g. packets one viewer received from one publisher."""


async def advance(
    packets: int, *counters: Counter, timeout: float = 8.0, interval: float = 0.02
) -> None:
    """Wait until every one of `counters` has grown by `packets` from its value now.

    The clock for a check that something is *not* received: snapshot the forbidden counter,
    `advance` a flow that must keep going (the same publisher's audio, or what another
    viewer gets from it: audio is ~50 packets/s), then assert the forbidden counter did not
    move. A fixed sleep races: on a loaded machine the window shrinks to nothing and the
    check passes without having watched anything. A window measured in packets of a live
    flow always covers that much media, and if the reference flow stops too, the test fails
    at the deadline instead of passing vacuously. Also the "drain" before the snapshot: a
    few packets of the reference flow outlast anything already in flight on loopback.
    """
    start = [await counter() for counter in counters]

    async def moved() -> bool:
        now = [await counter() for counter in counters]
        return all(n >= s + packets for n, s in zip(now, start, strict=True))

    await wait_until(moved, timeout, interval)


def grant(pid: str, room: str = "main", audio: bool = True, video: bool = True) -> MediaGrant:
    return MediaGrant(participant_id=pid, room=room, send_audio=audio, send_video=video)


def plan(*grants: MediaGrant, session_id: str = SESSION) -> MediaPlan:
    return MediaPlan(session_id=session_id, grants={g.participant_id: g for g in grants})


@dataclass
class Harness:
    """A relay, its listener, and the clients it serves."""

    relay: MediaRelay = field(init=False)
    peers: dict[str, MediaPeer] = field(default_factory=dict)
    published: dict[str, frozenset[MediaKind]] = field(default_factory=dict)
    flows: list[tuple[str, MediaKind, bool]] = field(default_factory=list)
    """The relay's flow reports, in order: (participant, kind, flowing)."""
    offers_sent: int = 0
    flow_sample_s: float = 2.0
    """The relay's flow sampling interval (RelaySettings.flow_sample_s)."""
    talk_report_s: float = 5.0
    """The relay's talk-time reporting interval (RelaySettings.talk_report_s)."""
    talk: dict[str, float] = field(default_factory=dict)
    """The relay's talk-time reports, summed: seconds spoken per participant."""
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        settings = replace(RelaySettings.for_loopback(), flow_sample_s=self.flow_sample_s,
                           talk_report_s=self.talk_report_s)
        self.relay = MediaRelay(self, settings)

    # RelayListener
    async def send_signal(
        self, session_id: str, participant_id: str, kind: SignalType, sdp: str
    ) -> None:
        self.offers_sent += 1
        peer = self.peers[participant_id]

        async def answer() -> None:
            answer_sdp = await peer.handle_offer(sdp)
            await self.relay.signal(session_id, participant_id, "answer", answer_sdp)

        task = asyncio.get_running_loop().create_task(answer())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def media_published(
        self, session_id: str, participant_id: str, kinds: frozenset[MediaKind]
    ) -> None:
        self.published[participant_id] = kinds

    async def media_flow(
        self, session_id: str, participant_id: str, kind: MediaKind, flowing: bool,
        ago_s: float,
    ) -> None:
        self.flows.append((participant_id, kind, flowing))

    async def talk_time(self, session_id: str, seconds: Mapping[str, float]) -> None:
        for pid, spoke in seconds.items():
            self.talk[pid] = self.talk.get(pid, 0.0) + spoke

    # driving
    async def join(self, pid: str, audio: bool = True, video: bool = True,
                   **options: Any) -> MediaPeer:
        """Create a client and run its first offer/answer through the relay (`options`:
        more `MediaPeer` arguments, e.g. `publish_screen`, `audio_amplitude`)."""
        peer = MediaPeer(publish_audio=audio, publish_video=video, loopback=True, **options)
        self.peers[pid] = peer
        answer = await self.relay.signal(SESSION, pid, "offer", await peer.create_offer())
        assert answer is not None
        await peer.apply_answer(answer)
        return peer

    async def stats(self, pid: str) -> dict[str, ReceivedStats]:
        return await self.peers[pid].stats()

    def sees(
        self, viewer: str, *publishers: str, audio: bool = True, frames: int = 1
    ) -> Callable[[], Awaitable[bool]]:
        """Condition: `viewer` decoded `frames` video (and some audio) frames from each one."""

        async def check() -> bool:
            stats = await self.stats(viewer)
            return all(
                p in stats
                and stats[p].video_frames >= frames
                and (not audio or stats[p].audio_frames > 0)
                for p in publishers
            )

        return check

    def packets(self, viewer: str, publisher: str, kind: MediaKind = "audio") -> Counter:
        """Counter: RTP packets of `kind` that `viewer` has received from `publisher`."""

        async def count() -> int:
            stats = (await self.stats(viewer)).get(publisher)
            if stats is None:
                return 0
            return stats.audio_packets if kind == "audio" else stats.video_packets

        return count

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await self.relay.close()
        await asyncio.gather(*(p.close() for p in self.peers.values()))
