"""Clients know each other by per-session handles: clinics use record numbers as participant
ids, so no id of another participant may reach a client, in any message the core makes."""

from __future__ import annotations

import json
from typing import Any

from signaling.core import commands as c
from signaling.core.chat import chat_deliveries
from signaling.core.media_plan import plan_for
from signaling.core.model import BreakoutPlan, PlannedRoom
from signaling.core.session import replay
from signaling.core.views import view_for

from .core_helpers import STAFF, T0, Session, therapist

IDS = ("MRN-0001", "MRN-0002", "MRN-0003")
THERAPIST = "EMP-77"


def group_in_breakouts() -> Session:
    s = Session.created()
    s.join(THERAPIST, "therapist", name="Dr Kim Park")
    for pid in IDS:
        s.join(pid, name=f"Person {pid[-1]} Surname")
        s.ok(therapist(THERAPIST), c.Admit(pid))
    plan = BreakoutPlan(minutes=10, rooms=(
        PlannedRoom("Sister", "", (IDS[0], IDS[1]), {IDS[0]: "protagonist", IDS[1]: "antagonist"}),
        PlannedRoom("Boss", "", (IDS[2],), {IDS[2]: "protagonist"}),
    ))
    s.ok(therapist(THERAPIST), c.OpenBreakouts(plan, seed=1))
    return s


def _text(payload: Any) -> str:
    return json.dumps(payload)


def test_a_clients_view_and_chat_carry_no_other_participants_id() -> None:
    s = group_in_breakouts()
    s.ok(STAFF, c.IssueInvite("MRN-0009", "Absent Person", "client", "j9", T0))
    for me in IDS:
        seen = _text(view_for(s.state, me))
        sender = IDS[1] if me == IDS[0] else IDS[0]
        seen += _text([payload for receiver, payload
                       in chat_deliveries(s.state, sender, "hi", T0.isoformat())
                       if receiver == me])
        for other in (*IDS, THERAPIST, "MRN-0009"):
            if other != me:
                assert other not in seen, f"{me} learned {other}"


def test_clients_refer_to_peers_and_room_members_by_handle() -> None:
    s = group_in_breakouts()
    me = view_for(s.state, IDS[0])
    handles = {p["handle"] for p in me["participants"]}
    assert {p["id"] for p in me["participants"]} == handles
    room = me["breakouts"]["rooms"][0]
    partner = s.state.participants[IDS[1]].handle
    assert room["members"] == [me["you"]["handle"], partner]
    assert room["roles"] == {me["you"]["handle"]: "protagonist", partner: "antagonist"}
    assert me["you"]["id"] == IDS[0], "one's own id is no secret to oneself"


def test_therapists_see_real_ids_beside_the_handles() -> None:
    s = group_in_breakouts()
    view = view_for(s.state, THERAPIST)
    by_id = {p["id"]: p["handle"] for p in view["participants"]}
    assert by_id == {pid: s.state.participants[pid].handle for pid in (THERAPIST, *IDS)}
    assert view["breakouts"]["rooms"][0]["members"] == [IDS[0], IDS[1]]
    s.ok(therapist(THERAPIST), c.CloseBreakouts(grace_s=0))
    assert all(p.room == "main" for p in s.state.admitted()), "rooms closed"
    chat = dict(chat_deliveries(s.state, IDS[0], "hi", T0.isoformat()))
    assert chat[THERAPIST]["from"] == IDS[0]
    assert chat[IDS[1]]["from"] == s.state.participants[IDS[0]].handle
    assert chat[THERAPIST]["handle"] == chat[IDS[1]]["handle"]


def test_handles_are_unique_stable_and_the_relay_names_streams_by_them() -> None:
    s = group_in_breakouts()
    handles = {pid: p.handle for pid, p in s.state.participants.items()}
    assert len(set(handles.values())) == len(handles)
    s.ok(c.Actor.participant(IDS[0], "client"), c.Leave())
    s.join(IDS[0], name="Person 1 Surname")
    assert s.state.participants[IDS[0]].handle == handles[IDS[0]], "same person, same handle"
    assert {pid: p.handle for pid, p in replay(s.events).participants.items()} == handles
    grants = plan_for(s.state).grants
    assert {pid: g.label for pid, g in grants.items()} == {pid: handles[pid] for pid in grants}
