"""Project one session's ledger events into attendance rows.

Pure: no I/O and no clock (`as_of` is passed in), so the same ledger always yields the same
rows, a finished session's export never changes, and every rule below is unit-tested with
hand-built events.

Rules (the v1 contract, `docs` in DOMAIN.md "What the attendance record must carry"):

* One row per participant per session: everyone invited (`InviteIssued`) or who arrived.
* Presence runs from `Admitted` until `Left` / `Removed` / `GraceExpired.left_at` /
  `SessionEnded`. Time in the waiting room is not presence; it is `minutes_waiting`
  (from `Arrived` until `Admitted` / `Denied` / `Left` / `Removed` / `GraceExpired` /
  `SessionEnded`).
* A drop (`Disconnected`) answered by `Reconnected` within the session's
  `reconnect_grace_s` is merged: no gap. A drop that ends in `GraceExpired` is a gap from
  the disconnect time. A `Reconnected` that comes *after* the grace period (the core's
  tick had not yet fired) is a gap from the drop to the reconnect: the participant was
  away longer than the clinic allows for a blip, so that time is not billed.
* A participant whose connection is down when the presence ends (removed, or the session
  ended, while dropped) is counted until the drop, not until the ending event: the last
  moment they actually held a connection. `GraceExpired.left_at` is the same rule.
* `SentToWaiting` (a clinician sent them back to the waiting room) ends the presence
  interval and starts waiting time, until the next `Admitted` opens a new interval.
* A rejoin (`Arrived` again, waits, `Admitted` again) opens a new interval;
  `minutes_present` is the sum of all intervals. `time_in` is the first admission,
  `time_out` the end of the last interval.
* Intervals still open at `as_of` (session not ended) end at `as_of`, except an
  unresolved drop older than the grace period, which ends at the drop. Events later than
  `as_of` are ignored, so `as_of` means "the record as it stood then".
* Minutes are `Decimal`, summed exactly from the event times and rounded once, half-up,
  to two places (so an export shows 45.50, and 45.505 is 45.51).
* `service` is the session's (its kind's default in records from before services);
  `billable` is true for clients only (family members and clinicians are not billed).
* `place_of_service` ("10" home, "02" elsewhere), `patient_region` and
  `telehealth_consent` come from the participant's last `CheckedIn` at or before the end of
  their presence (`time_out`); without presence, from the last one; "", "" and None
  without a check-in.
* `minutes_video`, `minutes_audio` and `modality`: the media that flowed within the
  presence (`attendance.media`).
* `minutes_speaking`: the sum of the participant's `TalkTime` seconds (the relay's
  audio-level measure, docs/records.md) until the session ended.

Status, one value, first match wins:

1. ``removed``: the participant was removed at any point (even after minutes present).
2. ``denied``: the participant was denied admission at any point.
3. ``no_show``: never admitted (not arrived, or waited but was never let in).
4. ``late``: first admission more than `late_after` after the scheduled start.
5. ``left_early``: the last presence ended (not still open at `as_of`) more than
   `early_by` before the earlier of the session's end and its scheduled end.
6. ``present``.

Late outranks left early because the late start is what a payer queries first; the
minutes and times on the row show the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Any

from server.attendance.media import VIDEO_SHARE, MediaAccount, modality
from server.attendance.rows import (
    AttendanceRow,
    AttendanceStatus,
    PlaceOfService,
    minutes,
    row_order,
)
from signaling.core import events as e
from signaling.core.model import (
    DEFAULT_SERVICE,
    Role,
    SessionState,
    is_aside_room,
    is_billable,
)
from signaling.core.mutes import may_end_flows
from signaling.core.session import apply

ZERO = timedelta(0)


def _utc(moment: datetime) -> datetime:
    """Aware UTC; a naive time is taken to be UTC already (the ledger stores UTC)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _seconds(span: timedelta) -> Decimal:
    """Exact seconds of `span` (microsecond precision, no float rounding)."""
    return Decimal(span // timedelta(microseconds=1)) / Decimal(1_000_000)


@dataclass
class _Track:
    """One participant's running account while the events are folded."""

    participant_id: str
    invited_name: str | None = None
    invited_role: Role | None = None
    arrived_name: str | None = None
    arrived_role: Role | None = None
    waiting_since: datetime | None = None
    present_since: datetime | None = None
    dropped_at: datetime | None = None
    """Start of an unresolved drop; the participant's connection is down since then."""
    waited: timedelta = ZERO
    intervals: list[tuple[datetime, datetime]] = field(default_factory=list)
    first_admit: datetime | None = None
    disconnects: int = 0
    media: MediaAccount = field(default_factory=MediaAccount)
    removed: bool = False
    denied: bool = False
    breakout_rooms: list[str] = field(default_factory=list)
    breakout_roles: list[str] = field(default_factory=list)
    checkins: list[e.CheckedIn] = field(default_factory=list)
    spoke: Decimal = Decimal(0)
    """Seconds of speech the relay measured (`TalkTime`)."""

    @property
    def listed(self) -> bool:
        """Gets a row: invited, or at least arrived."""
        return self.invited_name is not None or self.arrived_name is not None

    def held_until(self, at: datetime) -> datetime:
        """The last moment the participant had a connection, if the presence ended at `at`."""
        return self.dropped_at if self.dropped_at is not None and self.dropped_at < at else at

    def end_waiting(self, end: datetime) -> None:
        if self.waiting_since is not None:
            self.waited += max(end - self.waiting_since, ZERO)
            self.waiting_since = None

    def end_presence(self, end: datetime) -> None:
        if self.present_since is not None:
            self.intervals.append((self.present_since, max(end, self.present_since)))
            self.present_since = None

    def close(self, end: datetime) -> None:
        """End whatever phase is open (waiting or present) at `end`; the drop is settled."""
        self.end_waiting(end)
        self.end_presence(end)
        self.dropped_at = None

    def resume(self, at: datetime, grace: timedelta) -> None:
        """The connection came back at `at`: merge a short drop, split a long one."""
        if self.dropped_at is None:
            return
        if at - self.dropped_at > grace:
            if self.waiting_since is not None:
                self.end_waiting(self.dropped_at)
                self.waiting_since = at
            if self.present_since is not None:
                self.end_presence(self.dropped_at)
                self.present_since = at
        self.dropped_at = None

    def note_breakout(self, room: str, role: str | None) -> None:
        """Record a breakout room (and role) held, once each, in the order first held."""
        if room not in self.breakout_rooms:
            self.breakout_rooms.append(room)
        if role is not None and role not in self.breakout_roles:
            self.breakout_roles.append(role)


ASIDE_ROOM_NAME = "Aside"
"""How an aside appears among a row's `breakout_rooms`."""


def _note_breakouts(tracks: dict[str, _Track], state: SessionState) -> None:
    """Record, for everyone now in a breakout room, the room's name and their role.

    The rooms come from replaying the core itself (`signaling.core.session.apply`), so where a
    participant was is decided by the same rules as in the live session: planned rooms,
    late arrivals placed by the plan, moves, visits and rotations. Breakout time stays
    presence time (a breakout is inside the session), so nothing else changes. An aside
    (a clinician and one client in a room of their own) is listed the same way, as the
    room `ASIDE_ROOM_NAME`: its time is presence too.
    """
    if state.asides:
        for p in state.admitted():
            if is_aside_room(p.room) and p.id in tracks:
                tracks[p.id].note_breakout(ASIDE_ROOM_NAME, None)
    if not state.breakouts.open:
        return
    for p in state.admitted():
        room = state.breakouts.room(p.room or "")
        if room is not None and p.id in tracks:
            tracks[p.id].note_breakout(room.name, p.breakout_role)


def _last_checkin(checkins: Sequence[e.CheckedIn],
                  time_out: datetime | None) -> e.CheckedIn | None:
    """The check-in that describes the visit: the last one made before the presence ended
    (a later one, in a later wait, is about another stretch); without presence, the last."""
    if time_out is not None:
        checkins = [ev for ev in checkins if _utc(ev.at) <= time_out]
    return checkins[-1] if checkins else None


_PLACE_OF_SERVICE: dict[str, PlaceOfService] = {"home": "10", "other": "02"}


def _checkin_columns(checkin: e.CheckedIn | None) -> dict[str, Any]:
    """place_of_service, patient_region, telehealth_consent ("", "", None without one)."""
    if checkin is None:
        return {"place_of_service": "", "patient_region": "", "telehealth_consent": None}
    return {"place_of_service": _PLACE_OF_SERVICE[checkin.location],
            "patient_region": checkin.region, "telehealth_consent": checkin.consent}


def _media_minutes(media: MediaAccount, span: timedelta) -> Decimal | None:
    """minutes_video or minutes_audio: None where a relay saw media but did not measure it."""
    return None if not media.measured and media.kinds else minutes(_seconds(span))


def _add_talk(tracks: dict[str, _Track], event: e.TalkTime) -> None:
    for pid, seconds in event.seconds.items():
        if pid in tracks:
            tracks[pid].spoke += Decimal(str(seconds))


def project(
    events: Sequence[e.Event],
    as_of: datetime,
    tz: tzinfo = UTC,
    late_after: timedelta = timedelta(minutes=10),
    early_by: timedelta = timedelta(minutes=10),
    video_share: Decimal = VIDEO_SHARE,
) -> list[AttendanceRow]:
    """Attendance rows of the session whose ledger is `events` (in ledger order).

    `tz` is the clinic's timezone: it decides the service date (a 6 pm Pacific group is
    billed on its own day, not on tomorrow's UTC date). Raises ValueError when the events
    hold no `SessionCreated`, since without it there is no session to bill.
    """
    as_of = _utc(as_of)
    created = next((ev for ev in events if isinstance(ev, e.SessionCreated)), None)
    if created is None:
        raise ValueError("the events hold no SessionCreated")
    grace = timedelta(seconds=created.reconnect_grace_s)
    starts_at = _utc(created.starts_at)
    scheduled_end = starts_at + timedelta(minutes=created.minutes)
    ended_at: datetime | None = None
    tracks: dict[str, _Track] = {}

    def track(pid: str) -> _Track:
        if pid not in tracks:
            tracks[pid] = _Track(pid)
        return tracks[pid]

    state = SessionState()
    for event in events:
        at = _utc(event.at)
        if at > as_of:
            continue
        state = apply(state, event)
        if ended_at is not None:
            # Nothing changes attendance after the end, except late reports of what the
            # relay saw before it: media published (modality is about what was sent, not
            # when it was filed) and the last talk report, made when the relay closes.
            if isinstance(event, e.MediaPublished):
                track(event.participant_id).media.published(event)
            elif isinstance(event, e.TalkTime):
                _add_talk(tracks, event)
            continue
        match event:
            case e.InviteIssued():
                t = track(event.participant_id)
                t.invited_name = event.display_name
                t.invited_role = event.role
            case e.Arrived():
                t = track(event.participant_id)
                t.arrived_name = event.name
                t.arrived_role = event.role
                t.resume(at, grace)
                if t.waiting_since is None and t.present_since is None:
                    t.waiting_since = at
            case e.Admitted():
                t = track(event.participant_id)
                t.end_waiting(t.held_until(at))
                if t.present_since is None:
                    t.present_since = at
                    if t.first_admit is None:
                        t.first_admit = at
            case e.Denied():
                t = track(event.participant_id)
                t.denied = True
                t.close(t.held_until(at))
            case e.Removed():
                t = track(event.participant_id)
                t.removed = True
                t.close(t.held_until(at))
            case e.SentToWaiting():
                # Presence ends here; the time back in the waiting room is waiting time,
                # until the next Admitted opens a new interval.
                t = track(event.participant_id)
                end = t.held_until(at)
                t.end_presence(end)
                if t.waiting_since is None:
                    t.waiting_since = end
            case e.Left():
                t = track(event.participant_id)
                t.close(t.held_until(at))
            case e.GraceExpired():
                t = track(event.participant_id)
                t.close(min(_utc(event.left_at), at))
            case e.Disconnected():
                t = track(event.participant_id)
                t.disconnects += 1
                if t.dropped_at is None and (
                    t.waiting_since is not None or t.present_since is not None
                ):
                    t.dropped_at = at
            case e.Reconnected():
                track(event.participant_id).resume(at, grace)
            case e.MediaPublished():
                track(event.participant_id).media.published(event)
            case e.MediaFlowChanged():
                track(event.participant_id).media.changed(event, at)
            case e.CheckedIn():
                track(event.participant_id).checkins.append(event)
            case e.TalkTime():
                _add_talk(tracks, event)
            case e.SessionEnded():
                ended_at = at
                for t in tracks.values():
                    t.close(t.held_until(at))
        if may_end_flows(event):  # the core may have ended flows (mutes.py)
            for t in tracks.values():
                if t.media.open:
                    p = state.participants.get(t.participant_id)
                    t.media.follow(p.flowing if p is not None else (), at)
        _note_breakouts(tracks, state)

    still_open: set[str] = set()
    for t in tracks.values():
        if t.waiting_since is None and t.present_since is None:
            continue
        if t.dropped_at is not None and as_of >= t.dropped_at + grace:
            t.close(t.dropped_at)
        else:
            if t.present_since is not None:
                still_open.add(t.participant_id)
            t.close(as_of)

    service_date = starts_at.astimezone(tz).date()
    reference_end = min(ended_at, scheduled_end) if ended_at is not None else scheduled_end
    rows = []
    for t in tracks.values():
        if not t.listed:
            continue
        present = sum((end - start for start, end in t.intervals), ZERO)
        video = t.media.within("video", t.intervals, as_of)
        audio = t.media.within("audio", t.intervals, as_of)
        time_out = t.intervals[-1][1] if t.intervals else None
        status: AttendanceStatus
        if t.removed:
            status = "removed"
        elif t.denied:
            status = "denied"
        elif t.first_admit is None:
            status = "no_show"
        elif t.first_admit - starts_at > late_after:
            status = "late"
        elif (
            t.participant_id not in still_open
            and time_out is not None
            and reference_end - time_out > early_by
        ):
            status = "left_early"
        else:
            status = "present"
        rows.append(
            AttendanceRow(
                session_id=created.session_id,
                service_date=service_date,
                program=created.program,
                kind=created.kind,
                participant_id=t.participant_id,
                display_name=t.invited_name or t.arrived_name or "",
                role=t.invited_role or t.arrived_role or "client",
                time_in=t.first_admit,
                time_out=time_out,
                minutes_present=minutes(_seconds(present)),
                minutes_waiting=minutes(_seconds(t.waited)),
                disconnects=t.disconnects,
                modality=modality(t.media, present, video, audio, video_share),
                breakout_rooms=tuple(t.breakout_rooms),
                breakout_roles=tuple(t.breakout_roles),
                status=status,
                service=created.service or DEFAULT_SERVICE[created.kind],
                billable=is_billable(t.invited_role or t.arrived_role or "client"),
                **_checkin_columns(_last_checkin(t.checkins, time_out)),
                minutes_video=_media_minutes(t.media, video),
                minutes_audio=_media_minutes(t.media, audio),
                minutes_speaking=minutes(t.spoke),
            )
        )
    rows.sort(key=row_order)
    return rows
