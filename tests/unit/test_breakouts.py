"""Role-play breakouts in the pure core: planning, roles, timers, moves, visits, rotation."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from signaling.core import commands as c
from signaling.core import events as e
from signaling.core.breakouts import (
    GRACE_WHEN_TIME_RUNS_OUT,
    auto_rooms,
    rotate_roles,
    swap_roles,
)
from signaling.core.media_plan import plan_for
from signaling.core.model import MAIN_ROOM, BreakoutPlan, BreakoutRoom, PlannedRoom
from signaling.core.session import next_deadline, replay
from signaling.core.views import view_for

from .core_helpers import STAFF, T0, Session, client, therapist

ids = st.lists(st.text("abcdefgh", min_size=1, max_size=4), min_size=1, max_size=15,
               unique=True)


@settings(max_examples=300)
@given(ids, st.integers(min_value=1, max_value=8), st.integers())
def test_balanced_plan_invariants(people: list[str], count: int, seed: int) -> None:
    rooms = auto_rooms(people, count, "balanced", "scenario", seed)
    assert len(rooms) == min(count, len(people))
    members = [m for r in rooms for m in r.members]
    assert sorted(members) == sorted(people), "everyone placed exactly once"
    sizes = [len(r.members) for r in rooms]
    assert max(sizes) - min(sizes) <= 1
    for room in rooms:
        roles = Counter(room.roles.values())
        assert set(room.roles) == set(room.members)
        assert roles["protagonist"] == 1
        assert roles["antagonist"] == (1 if len(room.members) >= 2 else 0)
    if len(people) >= 2 * len(rooms):
        assert all(Counter(r.roles.values())["antagonist"] == 1 for r in rooms), (
            "every room has its antagonist before anyone doubles up"
        )
    observers = [Counter(r.roles.values())["observer"] for r in rooms]
    assert max(observers) - min(observers) <= 1, "observers stay spread"


@settings(max_examples=200)
@given(ids, st.integers(min_value=1, max_value=8), st.integers())
def test_random_plan_is_seeded_and_keeps_one_protagonist(
    people: list[str], count: int, seed: int
) -> None:
    rooms = auto_rooms(people, count, "random", "", seed)
    assert rooms == auto_rooms(people, count, "random", "", seed)
    assert sorted(m for r in rooms for m in r.members) == sorted(people)
    for room in rooms:
        assert Counter(room.roles.values())["protagonist"] == 1


def test_rotation_passes_each_role_to_the_next_member() -> None:
    room = BreakoutRoom("r1", "A", "", ("a", "b", "c"),
                        {"a": "protagonist", "b": "antagonist", "c": "observer"})
    assert rotate_roles(room) == {"b": "protagonist", "c": "antagonist", "a": "observer"}
    alone = BreakoutRoom("r2", "B", "", ("a",), {"a": "protagonist"})
    assert rotate_roles(alone) == {"a": "protagonist"}


def test_a_swap_exchanges_protagonist_and_antagonist_only() -> None:
    room = BreakoutRoom("r1", "A", "", ("a", "b", "c"),
                        {"a": "protagonist", "b": "double", "c": "antagonist"})
    assert swap_roles(room) == {"a": "antagonist", "b": "double", "c": "protagonist"}
    assert swap_roles(BreakoutRoom("r2", "B", "", ("a",), {"a": "protagonist"})) is None


def test_breakout_swap_reverses_roles_in_one_room_and_rotate_keeps_its_meaning() -> None:
    s = group(5)
    plan = BreakoutPlan(minutes=10, rooms=(
        PlannedRoom("Sister", "", ("c1", "c2", "c3"),
                    {"c1": "protagonist", "c2": "antagonist", "c3": "double"}),
        PlannedRoom("Boss", "", ("c4", "c5"), {"c4": "protagonist", "c5": "antagonist"}),
    ))
    s.ok(therapist(), c.OpenBreakouts(plan, seed=1))
    sister = s.state.breakouts.rooms[0].id
    s.ok(therapist(), c.SwapRoles(sister))
    roles = {pid: p.breakout_role for pid, p in s.state.participants.items()}
    assert (roles["c1"], roles["c2"], roles["c3"]) == ("antagonist", "protagonist", "double")
    assert (roles["c4"], roles["c5"]) == ("protagonist", "antagonist"), "other rooms unchanged"
    s.ok(therapist(), c.SwapRoles(sister))
    assert s.state.participants["c1"].breakout_role == "protagonist", "swapping back"
    s.ok(therapist(), c.RotateRoles())
    assert s.state.participants["c2"].breakout_role == "protagonist", "rotate still cycles"
    assert s.refused(therapist(), c.SwapRoles("r9")).code == "not_found"
    assert s.refused(client("c1"), c.SwapRoles(sister)).code == "forbidden"


def test_a_room_without_both_roles_cannot_swap() -> None:
    s = group()
    s.ok(therapist(), c.OpenBreakouts(PLAN, seed=1))
    boss = s.state.breakouts.rooms[1].id  # protagonist and observer
    assert s.refused(therapist(), c.SwapRoles(boss)).code == "conflict"


def group(n_clients: int = 4) -> Session:
    s = Session.created(grace_s=60)
    s.join("t1", "therapist")
    for i in range(1, n_clients + 1):
        s.join(f"c{i}")
    s.ok(therapist(), c.AdmitAll())
    return s


PLAN = BreakoutPlan(
    minutes=10,
    rooms=(
        PlannedRoom("Sister", "asking your sister to stop drinking around you", ("c1", "c2"),
                    {"c1": "protagonist", "c2": "antagonist"}),
        PlannedRoom("Boss", "DEAR MAN with a boss", ("c3", "c4"),
                    {"c3": "protagonist", "c4": "observer"}),
    ),
)


def test_open_explicit_plan_places_members_with_roles_and_scenarios() -> None:
    s = group()
    s.ok(therapist(), c.OpenBreakouts(PLAN, seed=1))
    parts = s.state.participants
    assert (parts["c1"].room, parts["c1"].breakout_role) == ("r1", "protagonist")
    assert (parts["c4"].room, parts["c4"].breakout_role) == ("r2", "observer")
    assert parts["t1"].room == MAIN_ROOM
    view = view_for(s.state, "c1")
    assert view["you"]["room"] == "r1" and view["you"]["breakout_role"] == "protagonist"
    assert [r["name"] for r in view["breakouts"]["rooms"]] == ["Sister"], "own room only"
    assert view["breakouts"]["rooms"][0]["scenario"].startswith("asking your sister")
    assert view["breakouts"]["ends_at"] == (T0 + timedelta(minutes=10)).isoformat()
    assert len(view_for(s.state, "t1")["breakouts"]["rooms"]) == 2


def test_observer_is_listen_only_and_rooms_are_separate_in_the_media_plan() -> None:
    s = group()
    s.ok(therapist(), c.OpenBreakouts(PLAN, seed=1))
    plan = plan_for(s.state)
    assert not plan.grants["c4"].send_audio and not plan.grants["c4"].send_video
    assert plan.grants["c3"].send_audio
    assert {g.participant_id for g in plan.sources_for("c1")} == {"c2"}
    assert {g.participant_id for g in plan.sources_for("t1")} == set()


def test_auto_open_splits_admitted_clients_only() -> None:
    s = group(5)
    plan = BreakoutPlan(minutes=5, auto_count=2, auto_strategy="balanced", scenario="x")
    (opened,) = s.ok(therapist(), c.OpenBreakouts(plan, seed=7))
    assert isinstance(opened, e.BreakoutsOpened)
    assert sorted(m for r in opened.rooms for m in r.members) == ["c1", "c2", "c3", "c4", "c5"]
    assert s.state.participants["t1"].room == MAIN_ROOM


def test_timers_warn_then_close_after_grace_and_everyone_returns() -> None:
    s = group()
    s.ok(therapist(), c.OpenBreakouts(PLAN, seed=1))
    ends = T0 + timedelta(minutes=10)
    assert next_deadline(s.state) == ends - timedelta(minutes=1)
    s.now = ends - timedelta(minutes=1)
    (warning,) = s.ok(c.SYSTEM, c.Tick())
    assert isinstance(warning, e.BreakoutWarningDue)
    assert next_deadline(s.state) == ends
    s.now = ends
    (closing,) = s.ok(c.SYSTEM, c.Tick())
    assert isinstance(closing, e.BreakoutsClosing) and closing.by is None
    assert closing.closing_at == ends + GRACE_WHEN_TIME_RUNS_OUT
    assert s.state.participants["c1"].room == "r1", "still talking during the grace period"
    s.now = closing.closing_at
    (closed,) = s.ok(c.SYSTEM, c.Tick())
    assert isinstance(closed, e.BreakoutsClosed)
    assert {p.room for p in s.state.admitted()} == {MAIN_ROOM}
    assert all(p.breakout_role is None for p in s.state.admitted())
    assert not s.state.breakouts.open and next_deadline(s.state) is None


def test_extend_moves_the_end_and_rearms_the_warning() -> None:
    s = group()
    s.ok(therapist(), c.OpenBreakouts(PLAN, seed=1))
    s.now = T0 + timedelta(minutes=9)
    s.ok(c.SYSTEM, c.Tick())
    assert s.state.breakouts.warned
    s.ok(therapist(), c.ExtendBreakouts(5))
    assert s.state.breakouts.ends_at == T0 + timedelta(minutes=15)
    assert not s.state.breakouts.warned


def test_close_with_grace_and_at_once() -> None:
    s = group()
    s.ok(therapist(), c.OpenBreakouts(PLAN, seed=1))
    s.ok(therapist(), c.CloseBreakouts(20))
    assert s.state.breakouts.closing_at == T0 + timedelta(seconds=20)
    assert s.refused(therapist(), c.ExtendBreakouts(5)).code == "conflict"
    s.now = T0 + timedelta(seconds=20)
    s.ok(c.SYSTEM, c.Tick())
    assert not s.state.breakouts.open
    s.ok(therapist(), c.OpenBreakouts(PLAN, seed=1))
    events = s.ok(therapist(), c.CloseBreakouts(0))
    assert isinstance(events[-1], e.BreakoutsClosed)


def test_move_visit_and_rotate() -> None:
    s = group()
    s.ok(therapist(), c.OpenBreakouts(PLAN, seed=1))
    s.ok(therapist(), c.MoveToRoom("c1", "r2"))
    assert s.state.participants["c1"].room == "r2"
    assert "c1" in s.state.breakouts.rooms[1].members
    assert "c1" not in s.state.breakouts.rooms[0].members
    s.ok(therapist(), c.MoveToRoom("c2", MAIN_ROOM))
    assert s.state.participants["c2"].room == MAIN_ROOM
    assert s.state.participants["c2"].breakout_role is None
    s.ok(therapist(), c.VisitRoom("r2"))
    assert s.state.participants["t1"].room == "r2"
    assert "t1" not in s.state.breakouts.rooms[1].members
    before = dict(s.state.breakouts.rooms[1].roles)
    s.ok(therapist(), c.RotateRoles())
    after = s.state.breakouts.rooms[1].roles
    assert Counter(before.values()) == Counter(after.values())
    assert after != before
    assert s.state.participants["c3"].breakout_role == after["c3"]


def test_reconnect_returns_to_the_same_breakout_and_new_admits_follow_the_plan() -> None:
    s = Session.created(grace_s=60)
    for pid in ("c3", "c4"):
        s.ok(STAFF, c.IssueInvite(pid, f"N {pid}", "client", f"j-{pid}", T0))
    s.join("t1", "therapist")
    s.join("c1")
    s.join("c2")
    s.ok(therapist(), c.AdmitAll())
    s.ok(therapist(), c.OpenBreakouts(PLAN, seed=1))
    s.ok(client("c1"), c.Disconnect("c1"))
    s.ok(client("c1"), c.Connect("c1", "X", "client", "tok-c1"))
    assert s.state.participants["c1"].room == "r1"
    s.join("c3")
    s.join("c9")
    s.ok(therapist(), c.AdmitAll())
    assert (s.state.participants["c3"].room, s.state.participants["c3"].breakout_role) == (
        "r2", "protagonist"
    ), "a late arrival goes where the plan puts them"
    assert s.state.participants["c9"].room == MAIN_ROOM, "unassigned arrivals land in main"


def test_saved_plan_opens_with_one_command() -> None:
    s = Session.created()
    s.ok(STAFF, c.IssueInvite("c1", "Ann", "client", "j1", T0))
    s.ok(STAFF, c.IssueInvite("c2", "Bob", "client", "j2", T0))
    plan = BreakoutPlan(minutes=5, rooms=(PlannedRoom("A", "s", ("c1", "c2"), {}),))
    s.ok(STAFF, c.SaveBreakoutPlan(plan))
    s.join("t1", "therapist")
    assert view_for(s.state, "t1")["breakouts"]["saved"]["rooms"][0]["name"] == "A"
    s.ok(therapist(), c.OpenBreakouts(None, seed=0))
    assert s.state.breakouts.open and s.state.breakouts.rooms[0].name == "A"


def test_breakout_refusals() -> None:
    s = group()
    assert s.refused(therapist(), c.OpenBreakouts(None, seed=0)).code == "not_found"
    assert s.refused(client("c1"), c.OpenBreakouts(PLAN, seed=0)).code == "forbidden"
    assert s.refused(client("c1"), c.VisitRoom("r1")).code == "forbidden"
    assert s.refused(therapist(), c.RotateRoles()).code == "conflict"
    assert s.refused(therapist(), c.CloseBreakouts(10)).code == "conflict"
    bad_member = BreakoutPlan(minutes=5, rooms=(PlannedRoom("A", "", ("ghost",), {}),))
    assert s.refused(therapist(), c.OpenBreakouts(bad_member, seed=0)).code == "not_found"
    twice = BreakoutPlan(minutes=5, rooms=(PlannedRoom("A", "", ("c1",), {}),
                                           PlannedRoom("B", "", ("c1",), {})))
    assert s.refused(therapist(), c.OpenBreakouts(twice, seed=0)).code == "invalid"
    stray = BreakoutPlan(minutes=5, rooms=(PlannedRoom("A", "", ("c1",), {"c2": "double"}),))
    assert s.refused(therapist(), c.OpenBreakouts(stray, seed=0)).code == "invalid"
    s.ok(therapist(), c.OpenBreakouts(PLAN, seed=0))
    assert s.refused(therapist(), c.OpenBreakouts(PLAN, seed=0)).code == "conflict"
    assert s.refused(therapist(), c.MoveToRoom("c1", "r9")).code == "not_found"
    assert s.refused(therapist(), c.MoveToRoom("ghost", "r1")).code == "not_found"
    assert s.ok(client("c1"), c.AskForHelp()) == ()


def test_timers_survive_replay() -> None:
    s = group()
    s.ok(therapist(), c.OpenBreakouts(PLAN, seed=3))
    s.now = T0 + timedelta(minutes=9)
    s.ok(c.SYSTEM, c.Tick())
    rebuilt = replay(s.events)
    assert rebuilt == s.state
    assert next_deadline(rebuilt) == T0 + timedelta(minutes=10)
