"""Random command sequences: replay always rebuilds the live state, and nothing is lost."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from signaling.core import commands as c
from signaling.core import events as e
from signaling.core.events import from_record, to_record
from signaling.core.model import MAIN_ROOM, BreakoutPlan
from signaling.core.session import replay

from .core_helpers import T0, Session

PIDS = ["t1", "c1", "c2", "c3"]


def _role(pid: str) -> str:
    return "therapist" if pid.startswith("t") else "client"


def _actor(pid: str) -> c.Actor:
    return c.Actor.participant(pid, _role(pid))  # type: ignore[arg-type]


pid = st.sampled_from(PIDS)
device = st.sampled_from(["", "d1", "d2", "d3"])
"""Seats' devices (hashes of resume secrets in real life): "" is a caller naming none."""
step = st.one_of(
    st.builds(lambda p, d, r: (p, c.Connect(p, f"N {p}", _role(p), f"tok-{p}",  # type: ignore[arg-type]
                                            resume=r, device=d)), pid, device, device),
    st.builds(lambda p, d: (p, c.Disconnect(p, d)), pid, device),
    st.builds(lambda p, q, b: (p, c.DecideSecondDevice(q, b)), pid, pid, st.booleans()),
    st.builds(lambda k, w: ("system", c.Recover(keep=frozenset(k), keep_pending=frozenset(w))),
              st.sets(pid), st.sets(pid)),
    st.builds(lambda p: (p, c.Connect(p, f"N {p}", _role(p), f"tok-{p}")), pid),  # type: ignore[arg-type]
    st.builds(lambda p: (p, c.Disconnect(p)), pid),
    st.builds(lambda p: (p, c.Leave()), pid),
    st.builds(lambda p, q: (p, c.Admit(q)), pid, pid),
    st.builds(lambda p: (p, c.AdmitAll()), pid),
    st.builds(lambda p, q: (p, c.Deny(q, "no")), pid, pid),
    st.builds(lambda p, q: (p, c.Remove(q)), pid, pid),
    st.builds(lambda p, q, k, m: (p, c.Mute(q, k, m)), pid, pid,
              st.sampled_from(["audio", "video"]), st.booleans()),
    st.builds(lambda p, b: (p, c.Lock(b)), pid, st.booleans()),
    st.builds(lambda p, b: (p, c.RaiseHand(b)), pid, st.booleans()),
    st.builds(lambda p: (p, c.End()), pid),
    st.just(("system", c.Tick())),
    st.builds(lambda p, n, seed: (p, c.OpenBreakouts(
        BreakoutPlan(minutes=n, auto_count=2, auto_strategy="balanced"), seed)),
        pid, st.integers(1, 3), st.integers(0, 9)),
    st.builds(lambda p, q, r: (p, c.MoveToRoom(q, r)), pid, pid,
              st.sampled_from(["main", "r1", "r2"])),
    st.builds(lambda p, r: (p, c.VisitRoom(r)), pid, st.sampled_from(["main", "r1", "r2"])),
    st.builds(lambda p: (p, c.RotateRoles()), pid),
    st.builds(lambda p, m: (p, c.ExtendBreakouts(m)), pid, st.integers(1, 2)),
    st.builds(lambda p, g: (p, c.CloseBreakouts(g)), pid, st.integers(0, 60)),
    st.just(("system", c.Recover())),
)
program = st.lists(st.tuples(step, st.integers(min_value=0, max_value=200)), max_size=60)


def _run(steps: list[tuple[tuple[str, c.Command], int]]) -> Session:
    s = Session.created(grace_s=60)
    for (who, command), seconds in steps:
        s.now = s.now + timedelta(seconds=seconds)
        s.do(c.SYSTEM if who == "system" else _actor(who), command)
    return s


@settings(max_examples=300, deadline=None)
@given(program)
def test_replaying_the_events_rebuilds_the_same_state(steps: list) -> None:  # type: ignore[type-arg]
    s = _run(steps)
    assert replay(s.events) == s.state
    stored = [from_record(to_record(ev)) for ev in s.events]
    assert replay(stored) == s.state


@settings(max_examples=300, deadline=None)
@given(program)
def test_invariants_hold_after_any_sequence(steps: list) -> None:  # type: ignore[type-arg]
    s = _run(steps)
    for p in s.state.participants.values():
        assert (p.room is not None) == (p.status == "admitted")
        assert (p.waiting_since is not None) == (p.status == "waiting")
        if p.status in ("denied", "removed", "left"):
            assert not p.connected
        if p.pending_device:
            assert p.connected and p.status in ("waiting", "admitted"), "waits beside a seat"
            assert p.pending_since is not None
    assert [ev.at for ev in s.events] == sorted(ev.at for ev in s.events)
    if s.state.ended:
        assert all(p.status not in ("waiting", "admitted") for p in s.state.participants.values())
    rooms = {r.id for r in s.state.breakouts.rooms}
    for p in s.state.admitted():
        assert p.room == MAIN_ROOM or p.room in rooms, "nobody is left in a closed room"
        if p.breakout_role is not None:
            assert p.room in rooms
    members = [m for r in s.state.breakouts.rooms for m in r.members]
    assert len(members) == len(set(members)), "one assignment per participant"
    removed = {ev.participant_id for ev in s.events if isinstance(ev, e.Removed)}
    assert all(s.state.participants[r].status == "removed" for r in removed)
    assert (s.state.last_event_at or T0) >= T0
