"""Minutes of media per participant, and the `modality` that follows from them.

Pure, a part of the projection. The relay reports when each kind of a participant's media
starts and stops reaching it allowed (not muted, so forwarded): `MediaFlowChanged`, dated
by its `since`. The core ends a flow at once when its grant stops allowing the kind (a
mute, a drop, leaving, a listen-only role: `signaling.core.mutes.end_flows`); the
projection replays the core and follows the same state, so the two never disagree.

* `minutes_video` / `minutes_audio`: the flow intervals of that kind intersected with the
  participant's presence intervals, exactly, rounded once like every minute column.
* `modality`: `audio-video` when video flowed for at least `video_share` (a clinic
  setting, default half) of the time present, `audio-only` when audio flowed at all,
  else `none` (compared on exact durations, before rounding).
* A participant whose media a relay saw before flows were measured (`MediaPublished`
  without `flows`, and no flow record): the old rule, from the kinds seen (video makes it
  `audio-video`), and `None` for both minute columns: not measured is not zero.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from server.attendance.rows import Modality
from signaling.core import events as e

Interval = tuple[datetime, datetime]
ZERO = timedelta(0)
VIDEO_SHARE = Decimal("0.5")


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass
class MediaAccount:
    """One participant's media while the events are folded."""

    kinds: set[str] = field(default_factory=set)
    """Kinds the relay saw at all (`MediaPublished`), muted or not."""
    measured: bool = False
    """A relay that measures flows saw this participant's media."""
    open: dict[str, datetime] = field(default_factory=dict)
    """Kind -> since when it flows, for flows not yet ended."""
    flows: dict[str, list[Interval]] = field(default_factory=dict)

    def published(self, event: e.MediaPublished) -> None:
        self.kinds.update(event.kinds)
        self.measured = self.measured or event.flows

    def changed(self, event: e.MediaFlowChanged, at: datetime) -> None:
        """A flow record; `at` is the event's own time, `since` never later."""
        self.measured = True
        since = min(_utc(event.since), at)
        if event.flowing:
            earlier = self.flows.get(event.kind)
            if earlier:  # never overlapping the flow before
                since = max(since, earlier[-1][1])
            self.open.setdefault(event.kind, since)
        else:
            self.end(event.kind, since)

    def follow(self, flowing: Iterable[str], at: datetime) -> None:
        """End, at `at`, every open flow the core no longer has (it ended it implicitly)."""
        still = set(flowing)
        for kind in [k for k in self.open if k not in still]:
            self.end(kind, at)

    def end(self, kind: str, at: datetime) -> None:
        start = self.open.pop(kind, None)
        if start is not None:
            self.flows.setdefault(kind, []).append((start, max(start, at)))

    def within(self, kind: str, presence: Sequence[Interval], as_of: datetime) -> timedelta:
        """How long `kind` flowed inside `presence` (flows still open end at `as_of`)."""
        flows = list(self.flows.get(kind, ()))
        if kind in self.open:
            flows.append((self.open[kind], max(self.open[kind], as_of)))
        return overlap(flows, presence)


def overlap(a: Sequence[Interval], b: Sequence[Interval]) -> timedelta:
    """Total time covered by both `a` and `b` (each a list of non-overlapping intervals)."""
    total = ZERO
    for start_a, end_a in a:
        for start_b, end_b in b:
            start, end = max(start_a, start_b), min(end_a, end_b)
            if end > start:
                total += end - start
    return total


def modality(account: MediaAccount, present: timedelta, video: timedelta, audio: timedelta,
             video_share: Decimal = VIDEO_SHARE) -> Modality:
    """What the participant's media was, by the rule above (old records: kinds seen)."""
    if not account.measured:
        if "video" in account.kinds:
            return "audio-video"
        return "audio-only" if "audio" in account.kinds else "none"
    if video > ZERO and Decimal(video // timedelta(microseconds=1)) >= (
        video_share * Decimal(present // timedelta(microseconds=1))
    ):
        return "audio-video"
    return "audio-only" if audio > ZERO else "none"
