"""Whether each published track's media flows, from counters sampled now and then.

Attendance bills minutes of audio and of video that reached the relay allowed (not muted,
so forwarded). Nothing is added to the per-packet path for it: the ingress already counts
the packets it receives and those its grant drops, and the allowed ones are the
difference. Sampling that every `interval` (2 s) per publisher and kind tells a flow
from a silence; only changes are reported:

* a start is dated at the first sample that saw packets, a stop at the last sample that
  saw packets, so a flow is never counted longer than it lasted (and at most one interval
  shorter at each end);
* a mute, or the publisher's connection closing or being replaced, ends a flow at once
  (`stop`, `keep`): dated now if packets arrived since the last sample, else at that
  sample;
* `reassert` repeats every track's state; the control plane records only what changes
  what it knows, so a report it missed (a plan it never sent, a command refused while a
  session restarted) heals at the next one.

Pure: the clock is passed in, and sources are anything `count` reads a number from.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

S = TypeVar("S")
K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class FlowChange(Generic[K]):
    key: K
    flowing: bool
    at: float
    """When it changed, on the sampler's clock."""


@dataclass
class _Track(Generic[S]):
    source: S
    count: int
    """The source's count at the last sample (or forced stop)."""
    flowing: bool = False
    seen_at: float | None = None
    """The last sample that saw the count move."""


class FlowSampler(Generic[K, S]):
    """Flow state of tracks `K`, each read from its current source `S`."""

    def __init__(self, count: Callable[[S], int]) -> None:
        self._count = count
        self._tracks: dict[K, _Track[S]] = {}

    def flowing(self, key: K) -> bool:
        track = self._tracks.get(key)
        return track is not None and track.flowing

    def sample(self, key: K, source: S, now: float) -> FlowChange[K] | None:
        """Read `source`'s count: a start when it moved after a pause, a stop when it
        stood still since the last sample. A new source (a new connection's ingress,
        counting from 0) is a new track: call `keep` first, which ends the one replaced."""
        track = self._tracks.get(key)
        if track is None or track.source is not source:
            track = self._tracks[key] = _Track(source, 0)
        count = self._count(source)
        moved = count > track.count
        track.count = count
        if moved:
            track.seen_at = now
            if not track.flowing:
                track.flowing = True
                return FlowChange(key, True, now)
            return None
        if track.flowing:
            return self._end(key, track, now)
        return None

    def stop(self, key: K, now: float) -> FlowChange[K] | None:
        """End `key`'s flow at once (its grant stopped allowing it). Packets that arrived
        since the last sample count up to now; none are counted after."""
        track = self._tracks.get(key)
        if track is None:
            return None
        count = self._count(track.source)
        if count > track.count:
            track.count, track.seen_at = count, now
        return self._end(key, track, now) if track.flowing else None

    def keep(self, live: Mapping[K, S], now: float) -> list[FlowChange[K]]:
        """Forget the tracks whose source is gone or replaced (a connection closed or
        renewed), ending their flows at once."""
        changes: list[FlowChange[K]] = []
        for key in [k for k, t in self._tracks.items() if live.get(k) is not t.source]:
            change = self.stop(key, now)
            if change is not None:
                changes.append(change)
            del self._tracks[key]
        return changes

    def reassert(self, now: float) -> list[FlowChange[K]]:
        """Every track's state again: a start as of now, a stop as of its last packets."""
        return [
            FlowChange(key, t.flowing, now if t.flowing else (t.seen_at or now))
            for key, t in self._tracks.items()
        ]

    def _end(self, key: K, track: _Track[S], now: float) -> FlowChange[K]:
        track.flowing = False
        return FlowChange(key, False, track.seen_at if track.seen_at is not None else now)
