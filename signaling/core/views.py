"""What each receiver is allowed to see of the session: the `state` message, per person.

Privacy lives here: a waiting client sees nobody else, admitted clients see peers' first
names only, and only therapists see the waiting room and who is expected but absent.
"""

from __future__ import annotations

from typing import Any

from signaling.core.model import BreakoutPlan, BreakoutRoom, Participant, SessionState


def first_name(name: str) -> str:
    """Peers see first names only; staff and therapists see the full display name."""
    return name.split()[0] if name.strip() else ""


def view_for(state: SessionState, participant_id: str) -> dict[str, Any]:
    """The `state` payload for one receiver (see docs/protocol.md)."""
    info = state.info
    assert info is not None, "views exist only for created sessions"
    me = state.participants.get(participant_id)
    therapist = me is not None and me.role == "therapist"
    inside = me is not None and me.status == "admitted"
    view: dict[str, Any] = {
        "rev": state.seq,
        "session": {
            "id": info.id,
            "title": info.title if inside else "",
            "kind": info.kind,
            "locked": state.locked,
            "ended": state.ended,
        },
        "you": _you(me, participant_id),
        "participants": [_peer(p, full=therapist) for p in state.admitted()] if inside else [],
        "breakouts": _breakouts(state, me, therapist) if inside else _closed(),
    }
    if therapist and inside:
        view["waiting"] = [_waiting(p) for p in state.waiting()]
        view["expected"] = [
            {"id": i.id, "name": i.name, "role": i.role}
            for i in sorted(state.invitees.values(), key=lambda i: i.id)
            if i.id not in state.participants
        ]
    return view


def _closed() -> dict[str, Any]:
    return {"open": False, "ends_at": None, "closing_at": None, "rooms": []}


def _breakouts(state: SessionState, me: Participant | None, therapist: bool) -> dict[str, Any]:
    """Therapists see every room and the saved plan; a client sees only its own room."""
    b = state.breakouts
    view = _closed()
    if b.open:
        rooms = b.rooms if therapist else tuple(
            r for r in b.rooms if me is not None and r.id == me.room
        )
        view = {
            "open": True,
            "ends_at": b.ends_at.isoformat() if b.ends_at else None,
            "closing_at": b.closing_at.isoformat() if b.closing_at else None,
            "rooms": [_room(r, state) for r in rooms],
        }
    if therapist:
        view["saved"] = _plan(b.saved) if b.saved else None
    return view


def _room(room: BreakoutRoom, state: SessionState) -> dict[str, Any]:
    return {
        "id": room.id,
        "name": room.name,
        "scenario": room.scenario,
        "members": list(room.members),
        "roles": dict(room.roles),
        "present": [p.id for p in state.admitted() if p.room == room.id],
    }


def _plan(plan: BreakoutPlan) -> dict[str, Any]:
    if plan.rooms:
        return {
            "minutes": plan.minutes,
            "rooms": [
                {"name": r.name, "scenario": r.scenario,
                 "participant_ids": list(r.participant_ids), "roles": dict(r.roles)}
                for r in plan.rooms
            ],
        }
    return {"minutes": plan.minutes, "scenario": plan.scenario,
            "auto": {"count": plan.auto_count, "strategy": plan.auto_strategy}}


def _you(me: Participant | None, participant_id: str) -> dict[str, Any]:
    if me is None:
        return {"id": participant_id, "role": None, "status": "left", "room": None,
                "breakout_role": None}
    return {
        "id": me.id,
        "name": me.name,
        "role": me.role,
        "status": me.status,
        "room": me.room,
        "breakout_role": me.breakout_role,
        "muted": {"audio": me.muted_audio, "video": me.muted_video},
        "hand": me.hand,
    }


def _peer(p: Participant, *, full: bool) -> dict[str, Any]:
    return {
        "id": p.id,
        "name": p.name if full else first_name(p.name),
        "role": p.role,
        "status": p.status,
        "room": p.room,
        "connected": p.connected,
        "muted": {"audio": p.muted_audio, "video": p.muted_video},
        "hand": p.hand,
        "breakout_role": p.breakout_role,
    }


def _waiting(p: Participant) -> dict[str, Any]:
    return {
        "id": p.id,
        "name": p.name,
        "role": p.role,
        "since": p.waiting_since.isoformat() if p.waiting_since else None,
        "connected": p.connected,
    }
