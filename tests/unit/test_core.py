"""The session core: every command, every refusal, and the waiting-room rules."""

from __future__ import annotations

from datetime import timedelta

from signaling.core import commands as c
from signaling.core import events as e
from signaling.core.model import MAIN_ROOM
from signaling.core.session import ABANDONED_AFTER, next_deadline, replay

from .core_helpers import STAFF, T0, Session, client, therapist


def test_create_session_twice_is_a_conflict() -> None:
    s = Session.created()
    again = c.CreateSession("s1", "x", "group", "IOP", T0, 90, 60)
    assert s.refused(STAFF, again).code == "conflict"


def test_a_session_whose_end_has_passed_is_refused_at_creation() -> None:
    s = Session()
    s.now = T0 + timedelta(minutes=90)
    stale = c.CreateSession("s1", "x", "group", "IOP", T0, 90, 60)
    refused = s.refused(STAFF, stale)
    assert refused.code == "invalid"
    assert refused.message == (
        "starts_at: this session would end at 2026-11-02T16:30:00Z, which has passed "
        "(the server's time is 2026-11-02T16:30:00Z); schedule it for a time to come"
    )


def test_a_session_that_started_but_has_not_ended_is_accepted() -> None:
    s = Session()
    s.now = T0 + timedelta(minutes=89)
    s.ok(STAFF, c.CreateSession("s1", "x", "group", "IOP", T0, 90, 60))
    assert s.state.exists and not s.state.ended


def test_commands_on_unknown_session_are_not_found() -> None:
    s = Session()
    assert s.refused(therapist(), c.Connect("t1", "T", "therapist", "x")).code == "not_found"


def test_only_staff_create_sessions_and_invites() -> None:
    s = Session()
    create = c.CreateSession("s1", "x", "group", "IOP", T0, 90, 60)
    assert s.refused(therapist(), create).code == "forbidden"
    s = Session.created()
    invite = c.IssueInvite("c1", "Ann Lee", "client", "j1", T0)
    assert s.refused(client("c1"), invite).code == "forbidden"
    s.ok(STAFF, invite)
    assert s.state.invitees["c1"].name == "Ann Lee"


def test_client_waits_and_therapist_enters_directly() -> None:
    s = Session.created()
    s.at(-10).join("c1")
    s.at(-9).join("t1", "therapist")
    assert s.status("c1") == "waiting"
    assert s.state.participants["c1"].waiting_since == T0 - timedelta(minutes=10)
    assert s.status("t1") == "admitted"
    assert s.state.participants["t1"].room == MAIN_ROOM


def test_waiting_room_keeps_arrival_order() -> None:
    s = Session.created()
    for pid in ["c3", "c1", "c2"]:
        s.join(pid)
    assert [p.id for p in s.state.waiting()] == ["c3", "c1", "c2"]


def test_admit_moves_a_waiting_client_to_the_main_room() -> None:
    s = Session.created()
    s.join("t1", "therapist")
    s.join("c1")
    s.ok(therapist(), c.Admit("c1"))
    p = s.state.participants["c1"]
    assert (p.status, p.room, p.waiting_since) == ("admitted", MAIN_ROOM, None)


def test_admit_all_admits_everyone_waiting_in_order() -> None:
    s = Session.created()
    s.join("t1", "therapist")
    for pid in ["c2", "c1", "c3"]:
        s.join(pid)
    events = s.ok(therapist(), c.AdmitAll())
    assert [ev.participant_id for ev in events if isinstance(ev, e.Admitted)] == ["c2", "c1", "c3"]
    assert s.state.waiting() == []


def test_admit_unknown_or_not_waiting_is_not_found() -> None:
    s = Session.created()
    s.join("t1", "therapist")
    assert s.refused(therapist(), c.Admit("ghost")).code == "not_found"
    assert s.refused(therapist(), c.Admit("t1")).code == "not_found"


def test_clients_cannot_use_therapist_controls() -> None:
    s = Session.created()
    s.join("t1", "therapist")
    s.join("c1")
    s.join("c2")
    s.ok(therapist(), c.Admit("c1"))
    for command in [c.Admit("c2"), c.AdmitAll(), c.Deny("c2", "no"), c.Remove("c2"),
                    c.Mute("t1", "audio", True), c.Lock(True), c.End()]:
        assert s.refused(client("c1"), command).code == "forbidden"


def test_waiting_client_cannot_chat_signal_or_raise_hand() -> None:
    s = Session.created()
    s.join("c1")
    for command in [c.Chat("hi"), c.Signal("offer", "v=0"), c.RaiseHand(True)]:
        assert s.refused(client("c1"), command).code == "forbidden"


def test_participant_cannot_speak_for_another_connection() -> None:
    s = Session.created()
    assert s.refused(client("c1"), c.Connect("c2", "X", "client", "j")).code == "forbidden"


def test_deny_with_reason_is_final_for_the_session() -> None:
    s = Session.created()
    s.join("t1", "therapist")
    s.join("c1")
    (event,) = s.ok(therapist(), c.Deny("c1", "please use your own link"))
    assert isinstance(event, e.Denied) and event.reason == "please use your own link"
    assert s.status("c1") == "denied"
    assert s.refused(client("c1"), c.Connect("c1", "X", "client", "j")).code == "forbidden"


def test_removed_client_cannot_rejoin() -> None:
    s = Session.created()
    s.join("t1", "therapist")
    s.join("c1")
    s.ok(therapist(), c.Admit("c1"))
    s.ok(therapist(), c.Remove("c1"))
    assert s.status("c1") == "removed"
    assert s.state.participants["c1"].room is None
    refusal = s.refused(client("c1"), c.Connect("c1", "X", "client", "tok-c1"))
    assert refusal.code == "forbidden" and "removed" in refusal.message


def test_therapist_cannot_remove_self() -> None:
    s = Session.created()
    s.join("t1", "therapist")
    assert s.refused(therapist(), c.Remove("t1")).code == "invalid"


def test_lock_refuses_new_client_arrivals_but_not_reconnects_or_therapists() -> None:
    s = Session.created()
    s.join("t1", "therapist")
    s.join("c1")
    s.ok(therapist(), c.Admit("c1"))
    s.ok(therapist(), c.Lock(True))
    refusal = s.refused(client("c2"), c.Connect("c2", "X", "client", "j2"))
    assert refusal.code == "conflict" and "locked" in refusal.message
    s.ok(client("c1"), c.Disconnect("c1"))
    s.ok(client("c1"), c.Connect("c1", "X", "client", "tok-c1"))
    assert s.status("c1") == "admitted"
    s.join("t2", "therapist")
    assert s.status("t2") == "admitted"
    s.ok(therapist(), c.Lock(False))
    s.join("c2")
    assert s.status("c2") == "waiting"


def test_lock_twice_changes_nothing() -> None:
    s = Session.created()
    s.join("t1", "therapist")
    s.ok(therapist(), c.Lock(True))
    assert s.ok(therapist(), c.Lock(True)) == ()


def test_end_tells_everyone_and_refuses_later_joins() -> None:
    s = Session.created()
    s.join("t1", "therapist")
    s.join("c1")
    s.join("c2")
    s.ok(therapist(), c.Admit("c1"))
    s.at(60).ok(therapist(), c.End())
    assert s.state.ended and s.state.ended_at == T0 + timedelta(minutes=60)
    assert {p.status for p in s.state.participants.values()} == {"left"}
    late = s.refused(client("c3"), c.Connect("c3", "X", "client", "j"))
    assert late.code == "conflict"
    assert late.message == "session s1 ended at 2026-11-02T16:00:00Z (the therapist ended it)"
    assert s.refused(client("c1"), c.Connect("c1", "X", "client", "tok-c1")).code == "conflict"
    invite = s.refused(STAFF, c.IssueInvite("c4", "Dee Ray", "client", "j4", T0))
    assert invite.message == late.message


def test_short_drop_keeps_place_and_room() -> None:
    s = Session.created(grace_s=60)
    s.join("t1", "therapist")
    s.join("c1")
    s.ok(therapist(), c.Admit("c1"))
    s.at(10).ok(client("c1"), c.Disconnect("c1"))
    assert s.state.participants["c1"].connected is False
    assert next_deadline(s.state) == T0 + timedelta(minutes=10, seconds=60)
    s.at(10.5).ok(client("c1"), c.Connect("c1", "X", "client", "tok-c1"))
    p = s.state.participants["c1"]
    assert (p.status, p.room, p.connected) == ("admitted", MAIN_ROOM, True)
    assert isinstance(s.events[-1], e.Reconnected)


def test_long_drop_expires_and_a_return_is_a_new_arrival() -> None:
    s = Session.created(grace_s=60)
    s.join("t1", "therapist")
    s.join("c1")
    s.ok(therapist(), c.Admit("c1"))
    s.at(10).ok(client("c1"), c.Disconnect("c1"))
    assert s.at(10.5).ok(c.SYSTEM, c.Tick()) == ()
    (expired,) = s.at(11).ok(c.SYSTEM, c.Tick())
    assert isinstance(expired, e.GraceExpired)
    assert expired.left_at == T0 + timedelta(minutes=10)
    assert s.status("c1") == "left"
    s.at(20).join("c1")
    assert s.status("c1") == "waiting"


def test_waiting_client_reconnect_keeps_position() -> None:
    s = Session.created()
    s.join("c1")
    s.join("c2")
    s.ok(client("c1"), c.Disconnect("c1"))
    s.ok(client("c1"), c.Connect("c1", "X", "client", "tok-c1"))
    assert [p.id for p in s.state.waiting()] == ["c1", "c2"]


def test_leave_is_immediate() -> None:
    s = Session.created()
    s.join("t1", "therapist")
    s.join("c1")
    s.ok(therapist(), c.Admit("c1"))
    s.ok(client("c1"), c.Leave())
    assert s.status("c1") == "left"
    assert s.refused(client("c1"), c.Leave()).code == "conflict"


def test_mute_and_hand() -> None:
    s = Session.created()
    s.join("t1", "therapist")
    s.join("c1")
    s.ok(therapist(), c.Admit("c1"))
    s.ok(therapist(), c.Mute("c1", "audio", True))
    assert s.state.participants["c1"].muted_audio is True
    assert s.ok(therapist(), c.Mute("c1", "audio", True)) == ()
    s.ok(therapist(), c.Mute("c1", "video", True))
    s.ok(therapist(), c.Mute("c1", "audio", False))
    p = s.state.participants["c1"]
    assert (p.muted_audio, p.muted_video) == (False, True)
    s.ok(client("c1"), c.RaiseHand(True))
    assert s.state.participants["c1"].hand is True
    assert s.refused(therapist(), c.Mute("ghost", "audio", True)).code == "not_found"


def test_chat_is_checked_but_not_recorded() -> None:
    s = Session.created()
    s.join("t1", "therapist")
    before = s.state
    assert s.ok(therapist(), c.Chat("hello")) == ()
    assert s.state == before


def test_media_reports_are_recorded_once_per_kind() -> None:
    s = Session.created()
    s.join("t1", "therapist")
    (event,) = s.ok(c.SYSTEM, c.ReportMedia("t1", frozenset({"audio"})))
    assert isinstance(event, e.MediaPublished)
    assert s.ok(c.SYSTEM, c.ReportMedia("t1", frozenset({"audio"}))) == ()
    s.ok(c.SYSTEM, c.ReportMedia("t1", frozenset({"audio", "video"})))
    assert s.state.participants["t1"].published == {"audio", "video"}
    assert s.refused(therapist(), c.ReportMedia("t1", frozenset())).code == "forbidden"


def test_recover_marks_every_connection_dropped_as_of_now() -> None:
    s = Session.created()
    s.join("t1", "therapist")
    s.join("c1")
    s.join("c2")
    s.ok(therapist(), c.Admit("c1"))
    events = s.at(30).ok(c.SYSTEM, c.Recover())
    assert {ev.participant_id for ev in events if isinstance(ev, e.Disconnected)} == {
        "t1", "c1", "c2"
    }
    s.at(30.5).ok(client("c1"), c.Connect("c1", "X", "client", "tok-c1"))
    assert s.status("c1") == "admitted"


def test_recover_keeps_the_participants_whose_sockets_another_node_still_holds() -> None:
    s = Session.created()
    s.join("t1", "therapist")
    s.join("c1")
    s.join("c2")
    events = s.at(30).ok(c.SYSTEM, c.Recover(keep=frozenset({"t1", "c2"})))
    assert [ev.participant_id for ev in events if isinstance(ev, e.Disconnected)] == ["c1"]
    assert s.state.participants["t1"].connected and s.state.participants["c2"].connected


def test_revoked_invite_is_refused_at_connect() -> None:
    s = Session.created()
    s.ok(STAFF, c.IssueInvite("c1", "Ann", "client", "j1", T0))
    s.ok(STAFF, c.RevokeInvite("j1"))
    assert s.refused(client("c1"), c.Connect("c1", "Ann", "client", "j1")).code == "forbidden"


def test_abandoned_session_is_closed_by_the_server() -> None:
    s = Session.created()
    s.join("t1", "therapist")
    s.ok(therapist(), c.Disconnect("t1"))
    s.at(2).ok(c.SYSTEM, c.Tick())
    end = T0 + timedelta(minutes=90) + ABANDONED_AFTER
    assert next_deadline(s.state) == end
    s.now = end
    events = s.ok(c.SYSTEM, c.Tick())
    assert isinstance(events[-1], e.SessionEnded) and events[-1].by is None
    assert next_deadline(s.state) is None
    invite = s.refused(STAFF, c.IssueInvite("c1", "Ann Lee", "client", "j1", end))
    assert invite.code == "conflict"
    assert invite.message == (
        "session s1 ended at 2026-11-02T20:30:00Z (the server closed it: nobody was connected "
        "4 hours after its scheduled end at 2026-11-02T16:30:00Z)"
    )


def test_individual_session_behaves_the_same() -> None:
    s = Session.created(kind="individual")
    s.join("t1", "therapist")
    s.join("c1")
    s.ok(therapist(), c.Admit("c1"))
    assert s.status("c1") == "admitted"


def test_replay_rebuilds_the_live_state() -> None:
    s = Session.created()
    s.join("t1", "therapist")
    s.join("c1")
    s.ok(therapist(), c.Admit("c1"))
    s.ok(therapist(), c.Mute("c1", "video", True))
    s.ok(client("c1"), c.Disconnect("c1"))
    assert replay(s.events) == s.state
    assert s.state.seq == len(s.events)


def test_message_to_the_waiting_room_is_checked_but_not_recorded() -> None:
    s = Session.created()
    s.join("t1", "therapist")
    s.join("c1")
    assert s.ok(therapist(), c.MessageWaiting("A few more minutes", None)) == ()
    assert s.ok(therapist(), c.MessageWaiting("Hi Ann", "c1")) == ()
    assert s.refused(therapist(), c.MessageWaiting("x", "t1")).code == "not_found"
    assert s.refused(client("c1"), c.MessageWaiting("x", None)).code == "forbidden"


def test_revoking_an_invite_removes_the_participant_holding_it_now() -> None:
    s = Session.created()
    s.join("t1", "therapist")
    s.ok(STAFF, c.IssueInvite("c1", "Ann", "client", "j1", T0))
    s.ok(client("c1"), c.Connect("c1", "Ann", "client", "j1"))
    s.ok(therapist(), c.Admit("c1"))
    events = s.ok(STAFF, c.RevokeInvite("j1"))
    assert [type(ev).__name__ for ev in events] == ["InviteRevoked", "Removed"]
    assert s.status("c1") == "removed"
    assert s.refused(client("c1"), c.Connect("c1", "Ann", "client", "j1")).code == "forbidden"


def test_revoking_an_old_invite_leaves_a_participant_who_came_with_a_newer_one() -> None:
    s = Session.created()
    s.ok(STAFF, c.IssueInvite("c1", "Ann", "client", "j1", T0))
    s.ok(STAFF, c.IssueInvite("c1", "Ann", "client", "j2", T0))
    s.ok(client("c1"), c.Connect("c1", "Ann", "client", "j2"))
    events = s.ok(STAFF, c.RevokeInvite("j1"))
    assert [type(ev).__name__ for ev in events] == ["InviteRevoked"]
    assert s.status("c1") == "waiting"


def test_revoking_an_invite_this_session_never_issued_is_not_found() -> None:
    s = Session.created()
    assert s.refused(STAFF, c.RevokeInvite("never-issued")).code == "not_found"
