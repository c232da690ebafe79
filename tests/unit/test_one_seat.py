"""One seat per person, in the pure core: a second live connection with the same join link
waits for a therapist instead of taking the seat (issue 12, part 3).

Devices are the hashes of resume secrets; here they are plain names (`d1`, `d2`), since
the core only ever compares them.
"""

from __future__ import annotations

from datetime import timedelta

from server.attendance.projection import project
from signaling.core import commands as c
from signaling.core import events as e
from signaling.core.events import from_record, to_record
from signaling.core.notices import notices_for, waiting_device_notices
from signaling.core.session import replay
from signaling.core.views import second_device_view, view_for

from .core_helpers import T0, Session, client, therapist

NEW_INVITE = "tok-new"
"""The id of a second invite of c1's (a token id, not a secret)."""


def connect(s: Session, pid: str, device: str, resume: str = "",
            role: str = "client") -> tuple[e.Event, ...]:
    actor = c.Actor.participant(pid, role)  # type: ignore[arg-type]
    return s.ok(actor, c.Connect(pid, f"Name {pid}", role, f"tok-{pid}",  # type: ignore[arg-type]
                                 resume=resume, device=device))


def seated(grace_s: int = 60) -> Session:
    """A session with therapist t1 (device dt) and client c1 admitted on device d1."""
    s = Session.created(grace_s=grace_s)
    connect(s, "t1", "dt", role="therapist")
    connect(s, "c1", "d1")
    s.ok(therapist(), c.Admit("c1"))
    return s


def test_a_second_device_waits_and_the_first_keeps_its_seat() -> None:
    s = seated()
    before = s.state.participants["c1"]
    (waits,) = connect(s.at(5), "c1", "d2")
    assert isinstance(waits, e.SecondDeviceArrived)
    assert (waits.device, waits.since) == ("d2", s.now)
    c1 = s.state.participants["c1"]
    assert (c1.status, c1.room, c1.connected, c1.device) == ("admitted", "main", True, "d1")
    assert (c1.pending_device, c1.pending_since) == ("d2", s.now)
    assert c1.arrival_no == before.arrival_no and not any(
        isinstance(ev, e.Admitted | e.Disconnected) for ev in s.events[-1:])

    seat = view_for(s.state, "c1")
    assert "second_device" not in seat["you"] and seat["participants"], "the seat sees as before"
    waiting = second_device_view(s.state, "c1")
    assert waiting["you"]["second_device"] == "waiting"
    assert waiting["you"]["status"] == "admitted", "the seat's status, flagged"
    assert waiting["participants"] == [] and waiting["session"]["title"] == ""
    assert waiting["breakouts"]["rooms"] == [] and "name" not in waiting["you"]
    assert "waiting" not in waiting and "second_devices" not in waiting

    t_view = view_for(s.state, "t1")
    assert t_view["second_devices"] == [{"id": "c1", "name": "Name c1", "role": "client",
                                          "status": "admitted", "since": s.now.isoformat()}]
    told = notices_for(s.state, [waits])
    assert [(pid, n["kind"]) for pid, n in told] == [("t1", "second_device"),
                                                     ("c1", "another_device")]
    assert told[0][1]["participant_id"] == "c1"
    # The first connection keeps every right it had.
    s.ok(client("c1"), c.RaiseHand(True))
    assert s.state.participants["c1"].hand


def test_the_same_browser_presenting_its_resume_secret_resumes_at_once() -> None:
    s = seated()
    (back,) = connect(s.at(5), "c1", "d2", resume="d1")
    assert isinstance(back, e.Reconnected) and back.device == "d2"
    c1 = s.state.participants["c1"]
    assert (c1.status, c1.room, c1.device, c1.pending_device) == ("admitted", "main", "d2", "")
    # The old secret is spent: presenting it again while connected waits.
    (again,) = connect(s.at(6), "c1", "d3", resume="d1")
    assert isinstance(again, e.SecondDeviceArrived)


def test_a_wrong_or_absent_secret_while_connected_waits() -> None:
    s = seated()
    (wrong,) = connect(s.at(1), "c1", "d2", resume="not-the-seat")
    assert isinstance(wrong, e.SecondDeviceArrived)
    (absent,) = connect(s.at(2), "c1", "d3")
    assert isinstance(absent, e.SecondDeviceArrived) and absent.since == s.now
    c1 = s.state.participants["c1"]
    assert (c1.device, c1.pending_device) == ("d1", "d3"), "a third device replaces the second"


def test_a_waiting_device_that_comes_back_keeps_its_place_in_line() -> None:
    s = seated()
    connect(s.at(1), "c1", "d2")
    (back,) = connect(s.at(3), "c1", "d3", resume="d2")
    assert isinstance(back, e.SecondDeviceArrived) and back.since == T0 + timedelta(minutes=1)
    assert notices_for(s.state, [back]) == [], "nobody is told twice"
    (placed_again,) = connect(s.at(4), "c1", "d3")
    assert isinstance(placed_again, e.SecondDeviceArrived)
    assert s.state.participants["c1"].pending_since == T0 + timedelta(minutes=1)


def test_a_connection_placing_itself_again_is_a_reconnect() -> None:
    """A resync: the very connection that holds the seat connects again (same device)."""
    s = seated()
    (again,) = connect(s.at(1), "c1", "d1")
    assert isinstance(again, e.Reconnected)
    assert s.state.participants["c1"].pending_device == ""


def test_a_participant_whose_connection_is_gone_resumes_without_a_new_admit() -> None:
    s = seated()
    s.at(5).ok(client("c1"), c.Disconnect("c1", "d1"))
    (back,) = connect(s.at(5.5), "c1", "d2")  # no secret: the drop was seen
    assert isinstance(back, e.Reconnected)
    c1 = s.state.participants["c1"]
    assert (c1.status, c1.room, c1.connected, c1.device) == ("admitted", "main", True, "d2")
    # After a restart every connection is gone: the same, with no secret at all.
    s.at(6).ok(c.SYSTEM, c.Recover())
    assert s.state.participants["c1"].connected is False
    (after_restart,) = connect(s.at(6.5), "c1", "d3")
    assert isinstance(after_restart, e.Reconnected)
    assert not any(isinstance(ev, e.Admitted) and ev.participant_id == "c1"
                   for ev in s.events[s.events.index(back):])


def test_the_therapist_allows_the_second_device() -> None:
    s = seated()
    connect(s.at(1), "c1", "d2")
    (allowed,) = s.at(2).ok(therapist(), c.DecideSecondDevice("c1", allow=True))
    assert isinstance(allowed, e.SecondDeviceAllowed)
    assert (allowed.device, allowed.by) == ("d2", "t1")
    c1 = s.state.participants["c1"]
    assert (c1.status, c1.room, c1.connected, c1.device, c1.pending_device) == (
        "admitted", "main", True, "d2", "")
    assert notices_for(s.state, [allowed]) == [("c1", {
        "kind": "continued_elsewhere", "text": "This session continued on another device."})]
    assert view_for(s.state, "t1")["second_devices"] == []
    # The first connection, closed by the server, reports its disconnect: it is stale.
    assert s.at(2.1).ok(client("c1"), c.Disconnect("c1", "d1")) == ()
    assert s.state.participants["c1"].connected
    (dropped,) = s.at(3).ok(client("c1"), c.Disconnect("c1", "d2"))
    assert isinstance(dropped, e.Disconnected)


def test_the_therapist_keeps_the_first_device() -> None:
    s = seated()
    connect(s.at(1), "c1", "d2")
    (refused,) = s.at(2).ok(therapist(), c.DecideSecondDevice("c1", allow=False))
    assert isinstance(refused, e.SecondDeviceRefused) and refused.device == "d2"
    c1 = s.state.participants["c1"]
    assert (c1.device, c1.pending_device, c1.pending_since) == ("d1", "", None)
    assert waiting_device_notices([refused]) == [("c1", {
        "kind": "second_device_refused",
        "text": "The therapist kept your place on your other device."})]
    nothing = s.refused(therapist(), c.DecideSecondDevice("c1", allow=True))
    assert nothing.code == "not_found"


def test_a_waiting_device_that_goes_away_withdraws() -> None:
    s = seated()
    connect(s.at(1), "c1", "d2")
    (gone,) = s.at(2).ok(client("c1"), c.Disconnect("c1", "d2"))
    assert isinstance(gone, e.SecondDeviceWithdrawn)
    c1 = s.state.participants["c1"]
    assert (c1.connected, c1.device, c1.pending_device) == (True, "d1", "")


def test_the_waiting_device_takes_the_seat_when_the_first_goes_away() -> None:
    s = seated()
    connect(s.at(1), "c1", "d2")
    (moved,) = s.at(2).ok(client("c1"), c.Disconnect("c1", "d1"))
    assert isinstance(moved, e.SecondDeviceAllowed) and moved.by is None
    c1 = s.state.participants["c1"]
    assert (c1.status, c1.connected, c1.disconnected_at, c1.device) == (
        "admitted", True, None, "d2")
    told = notices_for(s.state, [moved])
    assert [(pid, n["kind"]) for pid, n in told] == [("t1", "second_device_moved")], (
        "the first connection is gone: only the therapists are told")


def test_a_disconnect_racing_the_promotion_counts_for_the_promoted_device() -> None:
    """Allowed first, then the waiting socket's own disconnect (sent before it learnt it
    was promoted): the seat is recorded as dropped, not left 'connected' for ever."""
    s = seated()
    connect(s.at(1), "c1", "d2")
    s.at(2).ok(therapist(), c.DecideSecondDevice("c1", allow=True))
    (dropped,) = s.at(2.1).ok(client("c1"), c.Disconnect("c1", "d2"))
    assert isinstance(dropped, e.Disconnected)


def test_only_therapists_decide_and_a_therapist_decides_for_their_own_second_device() -> None:
    s = seated()
    connect(s, "c2", "e1")
    s.ok(therapist(), c.Admit("c2"))
    connect(s.at(1), "c1", "d2")
    refusal = s.refused(client("c2"), c.DecideSecondDevice("c1", allow=True))
    assert (refusal.code, refusal.message) == ("forbidden", "therapists only")
    assert s.refused(client("c1"), c.DecideSecondDevice("c1", allow=True)).code == "forbidden"
    assert s.refused(therapist(), c.DecideSecondDevice("c2", allow=True)).code == "not_found"
    (own,) = connect(s.at(2), "t1", "dt2", role="therapist")
    assert isinstance(own, e.SecondDeviceArrived)
    assert [d["id"] for d in view_for(s.state, "t1")["second_devices"]] == ["c1", "t1"]
    (allowed,) = s.at(3).ok(therapist(), c.DecideSecondDevice("t1", allow=True))
    assert isinstance(allowed, e.SecondDeviceAllowed)
    assert s.state.participants["t1"].device == "dt2"


def test_a_waiting_clients_second_device_waits_too() -> None:
    s = Session.created()
    connect(s, "c1", "d1")
    (waits,) = connect(s.at(1), "c1", "d2")
    assert isinstance(waits, e.SecondDeviceArrived)
    assert s.state.participants["c1"].status == "waiting"
    connect(s, "t1", "dt", role="therapist")
    assert [d["status"] for d in view_for(s.state, "t1")["second_devices"]] == ["waiting"]
    s.at(2).ok(therapist(), c.Deny("c1", "not today"))
    c1 = s.state.participants["c1"]
    assert (c1.status, c1.pending_device) == ("denied", "")
    assert waiting_device_notices(s.events[-1:]) == [
        ("c1", {"kind": "denied", "text": "not today"})]


def test_removal_leaving_and_the_end_close_the_waiting_device_too() -> None:
    for ending in (c.Remove("c1"), c.End()):
        s = seated()
        connect(s.at(1), "c1", "d2")
        s.at(2).ok(therapist(), ending)
        assert s.state.participants["c1"].pending_device == ""
    s = seated()
    connect(s.at(1), "c1", "d2")
    (left,) = s.at(2).ok(client("c1"), c.Leave())
    assert s.state.participants["c1"].pending_device == ""
    assert [n["kind"] for _, n in waiting_device_notices([left])] == ["second_device_closed"]


def test_revoking_the_waiting_devices_invite_withdraws_only_that_device() -> None:
    s = seated()
    s.ok(c.Actor.staff("key1"), c.IssueInvite("c1", "Name c1", "client", "tok-new", T0))
    s.ok(client("c1"), c.Connect("c1", "Name c1", "client", "tok-new", device="d2"))
    assert s.state.participants["c1"].pending_token_id == NEW_INVITE
    events = s.ok(c.Actor.staff("key1"), c.RevokeInvite("tok-new"))
    assert [ev.type_name for ev in events] == ["invite_revoked", "second_device_withdrawn"]
    c1 = s.state.participants["c1"]
    assert (c1.status, c1.device, c1.pending_device) == ("admitted", "d1", "")


def test_an_allowed_device_brings_its_invite_to_the_seat() -> None:
    s = seated()
    s.ok(c.Actor.staff("key1"), c.IssueInvite("c1", "Name c1", "client", "tok-new", T0))
    s.ok(client("c1"), c.Connect("c1", "Name c1", "client", "tok-new", device="d2"))
    s.ok(therapist(), c.DecideSecondDevice("c1", allow=True))
    assert s.state.participants["c1"].token_id == NEW_INVITE
    events = s.ok(c.Actor.staff("key1"), c.RevokeInvite("tok-new"))
    assert isinstance(events[-1], e.Removed), "revoking the seat's invite removes as before"


def test_a_takeover_keeps_whoever_is_still_there() -> None:
    s = seated()
    connect(s.at(1), "c1", "d2")
    connect(s.at(1), "t1", "dt2", role="therapist")
    # c1's first socket is gone but its waiting one is there; t1's waiting one is gone.
    events = s.at(2).ok(c.SYSTEM, c.Recover(keep=frozenset({"t1"}),
                                            keep_pending=frozenset({"c1"})))
    assert [(type(ev), ev.participant_id) for ev in events] == [  # type: ignore[attr-defined]
        (e.SecondDeviceWithdrawn, "t1"), (e.SecondDeviceAllowed, "c1")]
    c1, t1 = s.state.participants["c1"], s.state.participants["t1"]
    assert (c1.connected, c1.device, t1.connected, t1.pending_device) == (True, "d2", True, "")


def test_replay_rebuilds_the_same_state() -> None:
    s = seated()
    connect(s.at(1), "c1", "d2")
    s.at(2).ok(therapist(), c.DecideSecondDevice("c1", allow=False))
    connect(s.at(3), "c1", "d3")
    s.at(4).ok(therapist(), c.DecideSecondDevice("c1", allow=True))
    connect(s.at(5), "c1", "d4")
    s.at(6).ok(client("c1"), c.Disconnect("c1", "d4"))
    connect(s.at(7), "c1", "d5")
    s.at(8).ok(client("c1"), c.Disconnect("c1", "d3"))
    assert replay(s.events) == s.state
    assert replay(from_record(to_record(ev)) for ev in s.events) == s.state
    assert s.state.participants["c1"].device == "d5"


def test_old_records_without_devices_replay() -> None:
    """Ledgers from before seats had devices: Arrived and Reconnected without `device`."""
    s = seated()
    records = [to_record(ev) for ev in s.events]
    for record in records:
        record.pop("device", None)
    state = replay(from_record(r) for r in records)
    assert state.participants["c1"].device == "" and state.participants["c1"].status == "admitted"


def test_a_second_device_episode_changes_no_attendance_row() -> None:
    def day(episode: bool) -> Session:
        s = seated()
        s.ok(c.SYSTEM, c.ReportMedia("c1", frozenset({"audio"})))
        if episode:
            connect(s.at(10), "c1", "d2")  # refused
            s.at(11).ok(therapist(), c.DecideSecondDevice("c1", allow=False))
            connect(s.at(20), "c1", "d3")  # allowed: the seat moves
            s.at(21).ok(therapist(), c.DecideSecondDevice("c1", allow=True))
            s.at(21.1).ok(client("c1"), c.Disconnect("c1", "d1"))  # the first, closed
            connect(s.at(30), "c1", "d4")  # withdrawn
            s.at(31).ok(client("c1"), c.Disconnect("c1", "d4"))
            connect(s.at(40), "c1", "d5")  # the first goes: it takes over
            s.at(41).ok(client("c1"), c.Disconnect("c1", "d3"))
        s.at(60).ok(therapist(), c.End())
        return s

    plain, episode = day(False), day(True)
    assert any(isinstance(ev, e.SecondDeviceAllowed) for ev in episode.events)
    as_of = T0 + timedelta(hours=3)
    assert project(episode.events, as_of) == project(plain.events, as_of)
    (row,) = [r for r in project(episode.events, as_of) if r.participant_id == "c1"]
    assert row.disconnects == 0 and row.status == "present"
