"""Attendance projection: every billing rule, on hand-built events at fixed times.

No clock and no sleeps: each test states the session's events and the `as_of` it is
projected at, so a failure names the rule that broke.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.attendance import AttendanceRow, project
from signaling.core import commands as c
from signaling.core import events as e
from signaling.core import session as core
from signaling.core.model import MuteKind, Role

T0 = datetime(2024, 5, 6, 17, 0, tzinfo=UTC)  # a Monday, 10:00 in California
GRACE_S = 120
SID = "s1"


def m(minutes: float) -> datetime:
    """The time `minutes` after the scheduled start."""
    return T0 + timedelta(minutes=minutes)


def created(
    starts_at: datetime = T0, minutes: int = 60, grace_s: int = GRACE_S
) -> e.SessionCreated:
    return e.SessionCreated(
        at=starts_at - timedelta(days=1),
        session_id=SID,
        title="Monday group",
        kind="group",
        program="IOP",
        starts_at=starts_at,
        minutes=minutes,
        reconnect_grace_s=grace_s,
        created_by="key1",
    )


def invite(pid: str = "c1", name: str = "Ana Lopez", role: Role = "client") -> e.InviteIssued:
    return e.InviteIssued(
        at=m(-60),
        participant_id=pid,
        display_name=name,
        role=role,
        token_id=f"tok-{pid}",
        expires_at=m(600),
        issued_by="key1",
    )


def arrive(t: float, pid: str = "c1", name: str = "Ana", role: Role = "client") -> e.Arrived:
    return e.Arrived(at=m(t), participant_id=pid, name=name, role=role)


def admit(t: float, pid: str = "c1") -> e.Admitted:
    return e.Admitted(at=m(t), participant_id=pid, by="t1")


def drop(t: float, pid: str = "c1") -> e.Disconnected:
    return e.Disconnected(at=m(t), participant_id=pid)


def back(t: float, pid: str = "c1") -> e.Reconnected:
    return e.Reconnected(at=m(t), participant_id=pid)


def expire(t: float, left_at: float, pid: str = "c1") -> e.GraceExpired:
    return e.GraceExpired(at=m(t), participant_id=pid, left_at=m(left_at))


def leave(t: float, pid: str = "c1") -> e.Left:
    return e.Left(at=m(t), participant_id=pid)


def remove(t: float, pid: str = "c1") -> e.Removed:
    return e.Removed(at=m(t), participant_id=pid, by="t1")


def deny(t: float, pid: str = "c1") -> e.Denied:
    return e.Denied(at=m(t), participant_id=pid, by="t1", reason="not enrolled")


def media(t: float, *kinds: MuteKind, pid: str = "c1") -> e.MediaPublished:
    return e.MediaPublished(at=m(t), participant_id=pid, kinds=frozenset(kinds))


def end(t: float) -> e.SessionEnded:
    return e.SessionEnded(at=m(t), by="t1")


def only(events: Sequence[e.Event], as_of: datetime | None = None, **kw: object) -> AttendanceRow:
    """The single row of a one-participant session."""
    rows = project(events, as_of or m(24 * 60), **kw)  # type: ignore[arg-type]
    assert len(rows) == 1
    return rows[0]


def session(*events: e.Event) -> list[e.Event]:
    return [created(), invite(), *events]


# --- presence and waiting ---------------------------------------------------------------


def test_waiting_room_time_is_not_presence() -> None:
    row = only(session(arrive(-10), admit(0), end(60)))
    assert row.minutes_present == Decimal("60.00")
    assert row.minutes_waiting == Decimal("10.00")
    assert row.time_in == m(0)
    assert row.time_out == m(60)
    assert row.status == "present"


def test_short_drop_reconnected_within_grace_is_merged() -> None:
    row = only(session(arrive(-1), admit(0), drop(20), back(21.5), end(60)))
    assert row.minutes_present == Decimal("60.00")
    assert row.disconnects == 1
    assert row.status == "present"


def test_drop_ending_in_grace_expired_is_a_gap_from_the_disconnect() -> None:
    row = only(
        session(
            arrive(-1),
            admit(0),
            drop(20),
            expire(22, left_at=20),
            arrive(30),
            admit(35),
            end(60),
        )
    )
    assert row.minutes_present == Decimal("45.00")  # 0-20 and 35-60
    assert row.minutes_waiting == Decimal("6.00")  # 1 before start, 5 on rejoin
    assert row.time_in == m(0)
    assert row.time_out == m(60)
    assert row.disconnects == 1


def test_reconnect_after_the_grace_period_is_a_gap_until_the_reconnect() -> None:
    # The core's tick had not fired yet, so the core merged it; billing must not.
    row = only(session(arrive(0), admit(0), drop(20), back(25), end(60)))
    assert row.minutes_present == Decimal("55.00")


def test_reconnect_exactly_at_the_grace_limit_is_still_merged() -> None:
    row = only(session(arrive(0), admit(0), drop(20), back(22), end(60)))
    assert row.minutes_present == Decimal("60.00")


def test_join_leave_rejoin_sums_the_intervals() -> None:
    row = only(session(arrive(-2), admit(0), leave(10), arrive(20), admit(22), end(60)))
    assert row.minutes_present == Decimal("48.00")
    assert row.minutes_waiting == Decimal("4.00")
    assert (row.time_in, row.time_out) == (m(0), m(60))


def test_several_drops_are_all_counted() -> None:
    row = only(session(arrive(0), admit(0), drop(5), back(5.5), drop(30), back(31), end(60)))
    assert row.disconnects == 2
    assert row.minutes_present == Decimal("60.00")


def test_session_ended_during_a_drop_counts_until_the_drop() -> None:
    row = only(session(arrive(0), admit(0), drop(59), end(60)))
    assert row.minutes_present == Decimal("59.00")
    assert row.time_out == m(59)


def test_removed_while_dropped_counts_until_the_drop() -> None:
    row = only(session(arrive(0), admit(0), drop(30), remove(31), end(60)))
    assert row.minutes_present == Decimal("30.00")
    assert row.status == "removed"


def test_a_drop_in_the_waiting_room_then_admitted_within_grace() -> None:
    row = only(session(arrive(-5), drop(-1), admit(0), back(0.5), end(60)))
    assert row.minutes_waiting == Decimal("4.00")
    assert row.minutes_present == Decimal("60.00")


def test_therapist_enters_directly_with_no_waiting() -> None:
    rows = project(
        [
            created(),
            invite("c1"),
            invite("t1", "Dr. Rivera", "therapist"),
            arrive(-5, "c1"),
            arrive(-3, "t1", "Dr. Rivera", "therapist"),
            admit(-3, "t1"),
            admit(0, "c1"),
            end(60),
        ],
        m(90),
    )
    assert [r.participant_id for r in rows] == ["t1", "c1"]  # therapists lead
    therapist = rows[0]
    assert therapist.role == "therapist"
    assert therapist.minutes_waiting == Decimal("0.00")
    assert therapist.minutes_present == Decimal("63.00")


def test_minutes_are_rounded_half_up_to_two_places() -> None:
    # 20 minutes 0.3 seconds is 20.005 minutes: half-up gives 20.01 (half-even would not).
    events = session(arrive(0), admit(0), leave(20 + 0.3 / 60))
    assert only(events).minutes_present == Decimal("20.01")
    events = session(arrive(0), admit(0), leave(45.5))
    assert str(only(events).minutes_present) == "45.50"


# --- open intervals at as_of ------------------------------------------------------------


def test_open_presence_ends_at_as_of_and_is_not_left_early() -> None:
    row = only(session(arrive(-1), admit(0)), as_of=m(30))
    assert row.minutes_present == Decimal("30.00")
    assert row.time_out == m(30)
    assert row.status == "present"


def test_open_waiting_ends_at_as_of() -> None:
    row = only(session(arrive(25)), as_of=m(30))
    assert row.minutes_waiting == Decimal("5.00")
    assert row.status == "no_show"


def test_unresolved_drop_within_grace_is_still_present_at_as_of() -> None:
    row = only(session(arrive(0), admit(0), drop(20)), as_of=m(21))
    assert row.minutes_present == Decimal("21.00")
    assert row.status == "present"


def test_unresolved_drop_past_grace_ends_at_the_drop() -> None:
    row = only(session(arrive(0), admit(0), drop(20)), as_of=m(30))
    assert row.minutes_present == Decimal("20.00")
    assert row.time_out == m(20)
    assert row.status == "left_early"


def test_events_after_as_of_are_ignored() -> None:
    events = session(arrive(0), admit(0), leave(40), arrive(45), admit(46), end(60))
    row = only(events, as_of=m(42))
    assert row.minutes_present == Decimal("40.00")
    assert row.time_out == m(40)


# --- status -----------------------------------------------------------------------------


def test_removed_outranks_everything() -> None:
    row = only(session(arrive(15), admit(15), remove(20), end(60)))
    assert row.status == "removed"
    assert row.minutes_present == Decimal("5.00")
    assert row.time_out == m(20)


def test_removed_from_the_waiting_room() -> None:
    row = only(session(arrive(-5), remove(-1), end(60)))
    assert row.status == "removed"
    assert row.minutes_waiting == Decimal("4.00")
    assert row.time_in is None


def test_denied() -> None:
    row = only(session(arrive(-5), deny(-2), end(60)))
    assert row.status == "denied"
    assert row.minutes_present == Decimal("0.00")
    assert row.minutes_waiting == Decimal("3.00")
    assert (row.time_in, row.time_out) == (None, None)


def test_invited_but_never_arrived_is_a_no_show() -> None:
    row = only(session(end(60)))
    assert row.status == "no_show"
    assert row.display_name == "Ana Lopez"  # the staff-entered name, not a join-screen one
    assert (row.minutes_present, row.minutes_waiting) == (Decimal("0.00"), Decimal("0.00"))
    assert row.modality == "none"
    assert row.disconnects == 0


def test_waited_but_never_admitted_is_a_no_show() -> None:
    row = only(session(arrive(-5), end(60)))
    assert row.status == "no_show"
    assert row.minutes_waiting == Decimal("65.00")


def test_waited_then_left_is_a_no_show() -> None:
    row = only(session(arrive(-5), leave(3), end(60)))
    assert row.status == "no_show"
    assert row.minutes_waiting == Decimal("8.00")


@pytest.mark.parametrize(("admitted_at", "status"), [(10, "present"), (10.5, "late")])
def test_late_is_more_than_late_after_past_the_start(admitted_at: float, status: str) -> None:
    assert only(session(arrive(0), admit(admitted_at), end(60))).status == status


def test_late_after_is_configurable() -> None:
    row = only(session(arrive(0), admit(6), end(60)), late_after=timedelta(minutes=5))
    assert row.status == "late"


@pytest.mark.parametrize(("left_at", "status"), [(50, "present"), (49.5, "left_early")])
def test_left_early_against_the_scheduled_end(left_at: float, status: str) -> None:
    assert only(session(arrive(0), admit(0), leave(left_at), end(60))).status == status


def test_left_early_against_a_session_that_ended_early() -> None:
    assert only(session(arrive(0), admit(0), leave(35), end(40))).status == "present"
    assert only(session(arrive(0), admit(0), leave(29), end(40))).status == "left_early"


def test_left_early_judges_the_last_interval() -> None:
    row = only(session(arrive(0), admit(0), leave(10), arrive(20), admit(20), end(60)))
    assert row.status == "present"


def test_late_outranks_left_early() -> None:
    assert only(session(arrive(20), admit(20), leave(30), end(60))).status == "late"


# --- modality, identity, service date ---------------------------------------------------


@pytest.mark.parametrize(
    ("published", "modality"),
    [
        ([("audio",), ("video",)], "audio-video"),
        ([("audio", "video")], "audio-video"),
        ([("video",)], "audio-video"),
        ([("audio",)], "audio-only"),
        ([], "none"),
    ],
)
def test_modality_from_what_was_published(
    published: list[tuple[MuteKind, ...]], modality: str
) -> None:
    events = session(arrive(0), admit(0), *(media(1 + i, *k) for i, k in enumerate(published)))
    assert only([*events, end(60)]).modality == modality


def test_media_reported_after_the_end_still_counts() -> None:
    assert only(session(arrive(0), admit(0), end(60), media(60, "video"))).modality == (
        "audio-video"
    )


def test_an_uninvited_arrival_gets_a_row_with_its_join_name() -> None:
    rows = project([created(), arrive(0, "x9", "Sam"), admit(0, "x9"), end(60)], m(90))
    assert [(r.participant_id, r.display_name, r.role) for r in rows] == [("x9", "Sam", "client")]


def test_session_columns_and_empty_breakouts() -> None:
    row = only(session(arrive(0), admit(0), end(60)))
    assert (row.session_id, row.program, row.kind) == (SID, "IOP", "group")
    assert (row.breakout_rooms, row.breakout_roles) == ((), ())


def test_service_date_is_the_clinic_date_of_the_start() -> None:
    # 6 pm Pacific on Monday 6 May is 01:00 UTC on Tuesday 7 May: billed on the 6th.
    starts = datetime(2024, 5, 7, 1, 0, tzinfo=UTC)
    events = [created(starts_at=starts), invite()]
    pacific = ZoneInfo("America/Los_Angeles")
    assert only(events, as_of=starts)
    assert only(events, as_of=starts, tz=pacific).service_date == date(2024, 5, 6)
    assert only(events, as_of=starts, tz=UTC).service_date == date(2024, 5, 7)
    assert only(events, as_of=starts, tz=timezone(timedelta(hours=9))).service_date == date(
        2024, 5, 7
    )


def test_times_are_utc_even_from_offset_events() -> None:
    plus2 = timezone(timedelta(hours=2))
    admitted = e.Admitted(at=m(0).astimezone(plus2), participant_id="c1", by="t1")
    row = only(session(arrive(0), admitted, end(60)))
    assert row.time_in is not None
    assert row.time_in.utcoffset() == timedelta(0)
    assert row.time_in == m(0)


def test_no_session_created_is_an_error() -> None:
    with pytest.raises(ValueError, match="SessionCreated"):
        project([invite()], m(0))


def test_events_from_the_real_core_project_as_expected() -> None:
    """The projection agrees with the events the core actually emits for a group."""
    state = core.replay([])
    events: list[e.Event] = []

    def do(command: c.Command, actor: c.Actor, at: float) -> None:
        nonlocal state
        decision = core.decide(state, command, actor, m(at))
        assert isinstance(decision, core.Accepted), decision
        for event in decision.events:
            state = core.apply(state, event)
            events.append(event)

    staff = c.Actor.staff("key1")
    t1 = c.Actor.participant("t1", "therapist")
    c1 = c.Actor.participant("c1", "client")
    do(c.CreateSession(SID, "Monday group", "group", "IOP", T0, 60, GRACE_S), staff, -1440)
    do(c.IssueInvite("t1", "Dr. Rivera", "therapist", "tt", m(600)), staff, -60)
    do(c.IssueInvite("c1", "Ana Lopez", "client", "tc", m(600)), staff, -60)
    do(c.Connect("c1", "Ana", "client", "tc"), c1, -8)
    do(c.Connect("t1", "Dr. Rivera", "therapist", "tt"), t1, -5)
    do(c.Admit("c1"), t1, 0)
    do(c.ReportMedia("c1", frozenset({"audio"})), c.SYSTEM, 1)
    do(c.Disconnect("c1"), c1, 10)
    do(c.Connect("c1", "Ana", "client", "tc"), c1, 11)
    do(c.Disconnect("c1"), c1, 30)
    do(c.Tick(), c.SYSTEM, 33)
    do(c.Connect("c1", "Ana", "client", "tc"), c1, 40)
    do(c.Admit("c1"), t1, 41)
    do(c.End(), t1, 60)

    therapist, client = project(events, m(120))
    assert (therapist.participant_id, therapist.minutes_present) == ("t1", Decimal("65.00"))
    assert client.minutes_present == Decimal("49.00")  # 0-30 and 41-60
    assert client.minutes_waiting == Decimal("9.00")  # 8 before start, 1 on rejoin
    assert client.disconnects == 2
    assert client.modality == "audio-only"
    assert client.status == "present"


# --- property: presence and waiting are bounded by the participant's own span -----------

_ACTIONS = ("arrive", "admit", "deny", "leave", "remove", "drop", "back", "expire", "media", "end")


@st.composite
def one_participant(draw: st.DrawFn) -> tuple[list[e.Event], datetime]:
    """A valid ledger of one client, as the core could emit it, and its as_of."""
    grace_s = draw(st.integers(0, 300))
    events: list[e.Event] = [created(grace_s=grace_s), invite()]
    now = m(-30)
    status = "absent"  # absent | waiting | admitted | left | final
    dropped: datetime | None = None
    steps = draw(st.lists(st.tuples(st.sampled_from(_ACTIONS), st.integers(0, 1200)), max_size=30))
    for action, gap_s in steps:
        if status == "final":
            break
        at = now + timedelta(seconds=gap_s)
        event: e.Event | None = None
        if action == "arrive" and status in ("absent", "left"):
            event, status = (
                e.Arrived(at=at, participant_id="c1", name="A", role="client"),
                "waiting",
            )
        elif action == "admit" and status == "waiting":
            event, status = e.Admitted(at=at, participant_id="c1", by="t1"), "admitted"
        elif action == "deny" and status == "waiting":
            event, status = e.Denied(at=at, participant_id="c1", by="t1", reason="x"), "final"
        elif action == "leave" and status in ("waiting", "admitted") and dropped is None:
            event, status = e.Left(at=at, participant_id="c1"), "left"
        elif action == "remove" and status in ("waiting", "admitted"):
            event, status = e.Removed(at=at, participant_id="c1", by="t1"), "final"
        elif action == "drop" and status in ("waiting", "admitted") and dropped is None:
            event, dropped = e.Disconnected(at=at, participant_id="c1"), at
        elif action == "back" and dropped is not None:
            event, dropped = e.Reconnected(at=at, participant_id="c1"), None
        elif (
            action == "expire"
            and dropped is not None
            and at >= dropped + timedelta(seconds=grace_s)
        ):
            event = e.GraceExpired(at=at, participant_id="c1", left_at=dropped)
            status, dropped = "left", None
        elif action == "media":
            event = e.MediaPublished(at=at, participant_id="c1", kinds=frozenset({"audio"}))
        elif action == "end":
            event, status = e.SessionEnded(at=at, by="t1"), "final"
        if event is not None:
            events.append(event)
            now = at
    return events, now


def _two_places(span: timedelta) -> Decimal:
    seconds = Decimal(span // timedelta(microseconds=1)) / Decimal(1_000_000)
    return (seconds / 60).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


@settings(max_examples=400, deadline=None)
@given(one_participant())
def test_presence_is_bounded_by_first_admit_to_last_presence_end(
    ledger: tuple[list[e.Event], datetime],
) -> None:
    events, as_of = ledger
    row = only(events, as_of=as_of)
    assert row.minutes_present >= 0
    assert row.minutes_waiting >= 0
    if row.time_in is None:
        assert row.minutes_present == 0
    else:
        assert row.time_out is not None
        assert row.time_out >= row.time_in
        assert row.minutes_present <= _two_places(row.time_out - row.time_in)


@settings(max_examples=400, deadline=None)
@given(one_participant())
def test_presence_plus_waiting_is_bounded_by_first_arrival_to_last_event(
    ledger: tuple[list[e.Event], datetime],
) -> None:
    events, as_of = ledger
    row = only(events, as_of=as_of)
    arrivals = [ev.at for ev in events if isinstance(ev, e.Arrived)]
    if not arrivals:
        assert row.minutes_present == row.minutes_waiting == 0
        return
    last = max(ev.at for ev in events)
    bound = _two_places(last - arrivals[0])
    # Each value is rounded on its own, so their sum may exceed the rounded bound by 0.01.
    assert row.minutes_present + row.minutes_waiting <= bound + Decimal("0.01")
