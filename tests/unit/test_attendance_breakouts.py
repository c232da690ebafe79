"""Attendance lists the breakout rooms and roles each participant held; time in them counts."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from server.attendance.projection import project
from signaling.core import commands as c
from signaling.core.model import BreakoutPlan, PlannedRoom

from .core_helpers import T0, Session, therapist


def test_breakout_rooms_and_roles_are_listed_and_counted_as_present() -> None:
    s = Session.created()
    s.join("t1", "therapist")
    s.join("c1")
    s.join("c2")
    s.ok(therapist(), c.AdmitAll())
    plan = BreakoutPlan(minutes=20, rooms=(
        PlannedRoom("Sister", "", ("c1", "c2"), {"c1": "protagonist", "c2": "antagonist"}),
        PlannedRoom("Boss", "", (), {}),
    ))
    s.at(10).ok(therapist(), c.OpenBreakouts(plan, seed=0))
    s.at(15).ok(therapist(), c.RotateRoles())
    s.at(18).ok(therapist(), c.VisitRoom("r1"))
    s.at(20).ok(therapist(), c.MoveToRoom("c2", "r2"))
    s.at(25).ok(therapist(), c.CloseBreakouts(0))
    s.at(60).ok(therapist(), c.End())
    rows = {r.participant_id: r for r in project(s.events, as_of=T0 + timedelta(hours=2))}
    assert rows["c1"].breakout_rooms == ("Sister",)
    assert rows["c1"].breakout_roles == ("protagonist", "antagonist")
    assert rows["c2"].breakout_rooms == ("Sister", "Boss")
    assert rows["c2"].breakout_roles == ("antagonist", "protagonist", "auxiliary")
    assert rows["t1"].breakout_rooms == ("Sister",) and rows["t1"].breakout_roles == ()
    assert rows["c1"].minutes_present == Decimal("60.00"), "breakout time is present time"
