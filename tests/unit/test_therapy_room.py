"""Issue 14, the therapy room: send back to waiting, the aside, help from anywhere, observers.

Pure core (decide/apply, views, notices, media plan) and the attendance projection, driven
by commands at chosen times (no clock, no sleeps).
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from server.apikeys import invite_scope
from server.attendance import project
from signaling.core import commands as c
from signaling.core import events as e
from signaling.core.media_plan import plan_for
from signaling.core.model import MAIN_ROOM, BreakoutPlan, PlannedRoom
from signaling.core.notices import help_notices, notices_for
from signaling.core.session import replay
from signaling.core.translate import command_for
from signaling.core.views import view_for
from signaling.protocol import parse_client_event

from .core_helpers import STAFF, T0, Session, client, therapist


def group(*clients: str, co: bool = False) -> Session:
    """A session with t1 (and t2, a co-therapist) and `clients` admitted, at minute 0."""
    s = Session.created()
    s.join("t1", "therapist", "Dr Kim Park")
    if co:
        s.join("t2", "co_therapist", "Dr Lee Ray")
    for pid in clients:
        s.join(pid, "client", f"Name {pid}")
        s.ok(therapist(), c.Admit(pid))
    return s


def co() -> c.Actor:
    return c.Actor.participant("t2", "co_therapist")


def observer(pid: str = "o1") -> c.Actor:
    return c.Actor.participant(pid, "observer")


def breakouts(s: Session, *rooms: tuple[str, ...]) -> None:
    plan = BreakoutPlan(minutes=30, rooms=tuple(
        PlannedRoom(name=f"Room {n}", scenario="", participant_ids=members,
                    roles={members[0]: "protagonist"})
        for n, members in enumerate(rooms, start=1)))
    s.ok(therapist(), c.OpenBreakouts(plan=plan, seed=1))


# -- policy -------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [
    c.SendToWaiting("c2"), c.OpenAside("c2"), c.CloseAside(), c.CloseAside("c2")])
def test_clients_and_observers_cannot_send_to_waiting_or_run_asides(command: c.Command) -> None:
    s = group("c1", "c2")
    s.join("o1", "observer", "Sam Trainee")
    assert s.refused(client("c1"), command).code == "forbidden"
    assert s.refused(observer(), command).code == "forbidden"


@pytest.mark.parametrize("command", [
    c.Mute("c1", "audio", True), c.Remove("c1"), c.Admit("c2"), c.Lock(True), c.End(),
    c.MoveToRoom("c1", MAIN_ROOM), c.VisitRoom(MAIN_ROOM)])
def test_observers_run_no_therapist_command(command: c.Command) -> None:
    s = group("c1")
    s.join("c2", "client")
    s.join("o1", "observer", "Sam Trainee")
    assert s.refused(observer(), command).code == "forbidden"


def test_an_observer_never_shares_even_when_clients_may() -> None:
    s = group("c1")
    s.join("o1", "observer", "Sam Trainee")
    s.ok(therapist(), c.SetSharePolicy(True))
    assert s.refused(observer(), c.StartShare()).code == "forbidden"
    s.ok(client("c1"), c.StartShare())
    assert s.refused(observer(), c.StopShare("c1")).code == "forbidden"
    assert not plan_for(s.state).grants["o1"].send_screen


# -- send back to waiting ------------------------------------------------------------------


def test_send_to_waiting_then_admit_again() -> None:
    s = group("c1")
    s.ok(therapist(), c.RaiseHand(True))
    s.ok(client("c1"), c.RaiseHand(True))
    s.at(10)
    (sent,) = s.ok(therapist(), c.SendToWaiting("c1"))
    assert isinstance(sent, e.SentToWaiting) and sent.by == "t1"
    me = s.state.participants["c1"]
    assert (me.status, me.room, me.hand, me.waiting_since) == ("waiting", None, False, s.now)
    assert me.connected, "still connected: only back in the waiting room"
    assert "c1" not in plan_for(s.state).grants, "no media path while waiting"
    view = view_for(s.state, "c1")
    assert view["participants"] == [] and view["session"]["title"] == ""
    assert [w["id"] for w in view_for(s.state, "t1")["waiting"]] == ["c1"]
    assert notices_for(s.state, [sent]) == [("c1", {
        "kind": "sent_to_waiting",
        "text": "The therapist has moved you back to the waiting room for a moment."})]
    s.at(15)
    s.ok(therapist(), c.Admit("c1"))
    assert s.status("c1") == "admitted" and s.state.participants["c1"].room == MAIN_ROOM
    assert replay(s.events) == s.state


def test_send_to_waiting_refused_for_clinicians_observers_and_the_waiting() -> None:
    s = group("c1", co=True)
    s.join("o1", "observer", "Sam Trainee")
    s.join("c2", "client")
    assert s.refused(therapist(), c.SendToWaiting("t2")).code == "invalid"
    assert s.refused(co(), c.SendToWaiting("t1")).code == "invalid"
    assert s.refused(therapist(), c.SendToWaiting("o1")).code == "invalid"
    assert s.refused(therapist(), c.SendToWaiting("c2")).code == "not_found"
    assert s.refused(therapist(), c.SendToWaiting("nobody")).code == "not_found"
    s.ok(co(), c.SendToWaiting("c1"))  # any clinician may


def test_sent_back_from_a_breakout_keeps_its_assignment_for_readmission() -> None:
    s = group("c1", "c2")
    breakouts(s, ("c1", "c2"))
    s.ok(therapist(), c.SendToWaiting("c1"))
    assert s.state.participants["c1"].room is None
    assert s.state.breakouts.rooms[0].members == ("c1", "c2"), "the assignment stays"
    s.ok(therapist(), c.Admit("c1"))
    back = s.state.participants["c1"]
    assert (back.room, back.breakout_role) == ("r1", "protagonist")
    s.ok(therapist(), c.CloseBreakouts(0))
    s.ok(therapist(), c.SendToWaiting("c1"))
    s.ok(therapist(), c.Admit("c1"))
    assert s.state.participants["c1"].room == MAIN_ROOM, "rooms closed: back to main"


def test_time_sent_back_counts_as_waiting_not_presence() -> None:
    s = group()
    s.at(-5)
    s.join("c1", "client", "Ann Lee")
    s.at(0)
    s.ok(therapist(), c.Admit("c1"))
    s.at(20)
    s.ok(therapist(), c.SendToWaiting("c1"))
    s.at(30)
    s.ok(therapist(), c.Admit("c1"))
    s.at(60)
    s.ok(therapist(), c.End())
    rows = {r.participant_id: r for r in project(s.events, as_of=T0 + timedelta(hours=3))}
    ann = rows["c1"]
    assert ann.minutes_present == Decimal("50.00")
    assert ann.minutes_waiting == Decimal("15.00")  # 5 before, 10 sent back
    assert ann.time_in == T0 and ann.time_out == T0 + timedelta(minutes=60)
    assert ann.status == "present"


def test_sent_back_and_never_readmitted_waits_until_the_end() -> None:
    s = group("c1")
    s.at(20)
    s.ok(therapist(), c.SendToWaiting("c1"))
    s.at(30)
    s.ok(therapist(), c.End())
    (ann,) = [r for r in project(s.events, as_of=T0 + timedelta(hours=3))
              if r.participant_id == "c1"]
    assert (ann.minutes_present, ann.minutes_waiting) == (Decimal("20.00"), Decimal("10.00"))
    assert ann.time_out == T0 + timedelta(minutes=20)


# -- aside --------------------------------------------------------------------------------


def test_aside_isolates_the_two_and_closing_returns_both() -> None:
    s = group("c1", "c2", co=True)
    s.at(5)
    (opened,) = s.ok(therapist(), c.OpenAside("c1"))
    assert isinstance(opened, e.AsideOpened) and opened.aside_id == "aside-1"
    rooms = {pid: g.room for pid, g in plan_for(s.state).grants.items()}
    assert rooms == {"t1": "aside-1", "c1": "aside-1", "t2": MAIN_ROOM, "c2": MAIN_ROOM}
    plan = plan_for(s.state)
    assert {g.participant_id for g in plan.sources_for("c1")} == {"t1"}
    assert {g.participant_id for g in plan.sources_for("t1")} == {"c1"}
    assert {g.participant_id for g in plan.sources_for("c2")} == {"t2"}
    (closed,) = s.ok(co(), c.CloseAside())  # any clinician, with one aside open
    assert isinstance(closed, e.AsideClosed) and closed.by == "t2"
    assert {p.id: p.room for p in s.state.admitted()} == dict.fromkeys(
        ("t1", "t2", "c1", "c2"), MAIN_ROOM)
    assert s.state.asides == ()
    (again,) = s.ok(therapist(), c.OpenAside("c2"))
    assert isinstance(again, e.AsideOpened) and again.aside_id == "aside-2"
    assert replay(s.events) == s.state


def test_aside_rules() -> None:
    s = group("c1", "c2", co=True)
    s.join("c3", "client")
    s.join("o1", "observer", "Sam Trainee")
    assert s.refused(therapist(), c.OpenAside("c3")).code == "not_found"  # waiting
    assert s.refused(therapist(), c.OpenAside("t2")).code == "invalid"
    assert s.refused(therapist(), c.OpenAside("o1")).code == "invalid"
    assert s.refused(therapist(), c.CloseAside()).code == "not_found"
    s.ok(therapist(), c.OpenAside("c1"))
    assert s.refused(therapist(), c.OpenAside("c2")).code == "conflict"  # one per clinician
    assert s.refused(co(), c.OpenAside("c1")).code == "conflict"  # one per client
    s.ok(co(), c.OpenAside("c2"))
    assert s.refused(observer(), c.CloseAside()).code == "forbidden"
    s.ok(co(), c.CloseAside())  # closes the caller's own
    assert [a.participant_id for a in s.state.asides] == ["c1"]
    s.ok(co(), c.CloseAside("c1"))  # another clinician's, named by its client
    assert s.state.asides == ()


def test_aside_during_breakouts_returns_each_to_its_room() -> None:
    s = group("c1", "c2", "c3")
    breakouts(s, ("c1", "c2"), ("c3",))
    s.ok(therapist(), c.VisitRoom("r2"))
    s.ok(therapist(), c.OpenAside("c1"))
    assert s.state.participants["c1"].breakout_role is None
    assert s.refused(therapist(), c.MoveToRoom("c1", "r2")).code == "conflict"
    assert s.refused(therapist(), c.VisitRoom("r1")).code == "conflict"
    # Others' view: a client of the room sees only that c1 stepped out.
    c2_view = view_for(s.state, "c2")
    ann = next(p for p in c2_view["participants"] if p["handle"] == "p2")
    assert ann["room"] is None and ann["stepped_out"] is True
    assert [r["id"] for r in c2_view["breakouts"]["rooms"]] == ["r1"]
    assert "aside" not in str(c2_view), "the group is not told of an aside"
    s.ok(therapist(), c.CloseAside())
    c1, t1 = s.state.participants["c1"], s.state.participants["t1"]
    assert (c1.room, c1.breakout_role, t1.room) == ("r1", "protagonist", "r2")


def test_aside_outlives_breakouts_closing_and_ends_with_either_person() -> None:
    s = group("c1", "c2")
    breakouts(s, ("c1", "c2"))
    s.ok(therapist(), c.VisitRoom("r1"))
    s.ok(therapist(), c.OpenAside("c1"))
    s.ok(therapist(), c.CloseBreakouts(0))
    assert s.state.participants["c1"].room == "aside-1", "the aside goes on"
    s.ok(therapist(), c.CloseAside())
    assert {p.id: p.room for p in s.state.admitted()} == dict.fromkeys(("t1", "c1", "c2"), "main")
    s.ok(therapist(), c.OpenAside("c2"))
    s.ok(client("c2"), c.Leave())
    assert s.state.asides == () and s.state.participants["t1"].room == MAIN_ROOM
    s.ok(therapist(), c.OpenAside("c1"))
    s.ok(therapist(), c.SendToWaiting("c1"))
    assert s.state.asides == () and s.state.participants["t1"].room == MAIN_ROOM
    assert replay(s.events) == s.state


def test_views_of_an_aside() -> None:
    s = group("c1", "c2", co=True)
    s.at(3)
    s.ok(therapist(), c.OpenAside("c1"))
    since = s.now.isoformat()
    for clinician in ("t1", "t2"):
        assert view_for(s.state, clinician)["asides"] == [
            {"id": "aside-1", "participant_id": "c1", "clinician_id": "t1", "since": since}]
    mine = view_for(s.state, "c1")
    assert mine["you"]["room"] == "aside-1"
    t1_handle = s.state.participants["t1"].handle
    assert mine["you"]["aside"] == {"id": "aside-1", "since": since, "with": t1_handle}
    dr = next(p for p in mine["participants"] if p["handle"] == t1_handle)
    assert dr["room"] == "aside-1" and "stepped_out" not in dr, "the two see each other"
    assert view_for(s.state, "t1")["you"]["aside"]["with"] == "c1"
    bob = view_for(s.state, "c2")
    stepped = {p["handle"] for p in bob["participants"] if p.get("stepped_out")}
    assert stepped == {t1_handle, s.state.participants["c1"].handle}
    assert "asides" not in bob and "aside" not in bob["you"]


def test_export_lists_the_aside_like_a_breakout_room() -> None:
    s = group("c1", "c2")
    s.at(10)
    s.ok(therapist(), c.OpenAside("c1"))
    s.at(25)
    s.ok(therapist(), c.CloseAside())
    s.at(60)
    s.ok(therapist(), c.End())
    rows = {r.participant_id: r for r in project(s.events, as_of=T0 + timedelta(hours=3))}
    assert rows["c1"].breakout_rooms == ("Aside",) and rows["t1"].breakout_rooms == ("Aside",)
    assert rows["c2"].breakout_rooms == ()
    assert rows["c1"].minutes_present == Decimal("60.00"), "aside time is presence"


# -- help from anywhere -------------------------------------------------------------------


def test_help_from_the_waiting_room_a_breakout_and_an_aside_reaches_clinicians_only() -> None:
    s = group("c1", "c2", co=True)
    s.join("c3", "client")
    s.join("o1", "observer", "Sam Trainee")
    assert s.ok(client("c3"), c.AskForHelp()) == ()
    (to_t1, waiting), (to_t2, _) = help_notices(s.state, "c3")
    assert {to_t1, to_t2} == {"t1", "t2"}
    assert waiting == {"kind": "help", "room": "waiting", "participant_id": "c3",
                       "text": "Someone in the waiting room asks for help."}
    assert help_notices(s.state, "c1")[0][1]["room"] == MAIN_ROOM
    breakouts(s, ("c1",), ("c2",))
    assert help_notices(s.state, "c2")[0][1] | {"text": ""} == {
        "kind": "help", "room": "r2", "participant_id": "c2", "text": ""}
    s.ok(therapist(), c.OpenAside("c1"))
    assert help_notices(s.state, "c1")[0][1]["room"] == "aside-1"
    # `help` and the older `breakout_help` are the same command.
    for event in ("help", "breakout_help"):
        assert isinstance(command_for(parse_client_event(event, {}), 0), c.AskForHelp)


def test_help_refused_outside_the_session() -> None:
    s = group("c1")
    s.ok(client("c1"), c.Leave())
    assert s.refused(client("c1"), c.AskForHelp()).code == "conflict"


# -- observers ----------------------------------------------------------------------------


def test_observer_enters_at_once_never_sends_and_is_disclosed() -> None:
    s = group("c1")
    s.ok(therapist(), c.Lock(True))
    s.join("o1", "observer", "Sam Trainee")  # staff: admitted at once, even when locked
    assert s.status("o1") == "admitted"
    s.ok(observer(), c.Mute("o1", "audio", False))  # own mute: harmless, still nothing sent
    grant = plan_for(s.state).grants["o1"]
    assert (grant.room, grant.send_audio, grant.send_video) == (MAIN_ROOM, False, False)
    assert {g.participant_id for g in plan_for(s.state).sources_for("o1")} == {"t1", "c1"}
    # Everyone sees the role (the group is told who observes), peers by first name.
    ann_view = view_for(s.state, "c1")
    (sam,) = [p for p in ann_view["participants"] if p["role"] == "observer"]
    assert sam["name"] == "Sam"
    # Observers see what clients see: handles, no waiting room.
    mine = view_for(s.state, "o1")
    assert "waiting" not in mine and all(p["id"].startswith("p") for p in mine["participants"])
    assert s.refused(observer(), c.CheckIn("home", "CA", True)).code == "forbidden"


def test_observer_chat_follows_the_session_flag() -> None:
    s = group("c1")
    s.join("o1", "observer", "Sam Trainee")
    assert s.refused(observer(), c.Chat("hello")).code == "forbidden"
    s.ok(client("c1"), c.Chat("hello"))
    allowed = Session()
    allowed.ok(STAFF, c.CreateSession("s2", "Group", "group", "IOP", T0, 90, 60,
                                      observers_may_chat=True))
    allowed.join("o1", "observer", "Sam Trainee")
    allowed.ok(observer(), c.Chat("hello"))
    assert view_for(allowed.state, "o1")["session"]["observers_may_chat"] is True
    assert replay(allowed.events).info == allowed.state.info


def test_observers_stay_out_of_auto_breakouts_and_keep_no_role() -> None:
    s = group("c1", "c2")
    s.join("o1", "observer", "Sam Trainee")
    s.ok(therapist(), c.OpenBreakouts(BreakoutPlan(minutes=10, auto_count=2), seed=3))
    members = {m for r in s.state.breakouts.rooms for m in r.members}
    assert members == {"c1", "c2"}
    assert s.state.participants["o1"].room == MAIN_ROOM
    (moved,) = s.ok(therapist(), c.MoveToRoom("o1", "r1"))
    assert isinstance(moved, e.Moved) and moved.role is None and moved.assign is False
    assert not plan_for(s.state).grants["o1"].send_audio


def test_observer_row_is_not_billable_and_marked_observer() -> None:
    s = group("c1")
    s.at(1)
    s.join("o1", "observer", "Sam Trainee")
    s.at(60)
    s.ok(therapist(), c.End())
    rows = {r.participant_id: r for r in project(s.events, as_of=T0 + timedelta(hours=3))}
    sam = rows["o1"]
    assert (sam.role, sam.billable) == ("observer", False)
    assert sam.minutes_present == Decimal("59.00") and sam.minutes_waiting == Decimal("0.00")
    assert rows["c1"].billable is True


def test_observer_invites_need_the_therapist_invites_scope() -> None:
    assert invite_scope("observer") == "therapist-invites"
    assert invite_scope("client") == "schedule"
