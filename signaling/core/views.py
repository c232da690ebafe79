"""What each receiver is allowed to see of the session: the `state` message, per person.

Privacy lives here: a waiting client sees nobody else, admitted clients see peers' first
names and per-session handles only (clinics use record numbers as participant ids), and
only therapists see real ids, the waiting room and who is expected but absent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from signaling.core.model import (
    BreakoutPlan,
    BreakoutRoom,
    CheckInAnswers,
    MuteKind,
    Participant,
    SessionState,
    is_clinician,
)
from signaling.core.policy import SHARE_ROLES


def first_name(name: str) -> str:
    """Peers see first names only; staff and therapists see the full display name."""
    return name.split()[0] if name.strip() else ""


def view_for(state: SessionState, participant_id: str) -> dict[str, Any]:
    """The `state` payload for one receiver (see docs/protocol.md)."""
    info = state.info
    if info is None:
        raise ValueError("views exist only for created sessions")
    me = state.participants.get(participant_id)
    # Clinicians (therapist, co-therapist) see what therapists see: ids, full names, the
    # waiting room, check-ins. Clients and family members see handles and first names.
    therapist = me is not None and is_clinician(me.role)
    inside = me is not None and me.status == "admitted"
    view: dict[str, Any] = {
        "rev": state.seq,
        "session": {
            "id": info.id,
            "title": info.title if inside else "",
            "kind": info.kind,
            "locked": state.locked,
            "ended": state.ended,
            "checkin_required": info.checkin_required,
            "e2ee": info.e2ee,
        },
        "you": _you(me, participant_id) | _your_aside(state, me, therapist),
        "participants": [_peer(p, full=therapist) | _stepped_out(state, p, me, therapist)
                         for p in state.admitted()] if inside else [],
        "breakouts": _breakouts(state, me, therapist) if inside else _closed(),
    }
    if info.e2ee:
        # Public keys only: members' browsers wrap media keys to them and compute the
        # safety code over them (who holds which private key, the server never knows).
        view["you"]["key"] = me.public_key if me is not None else ""
        if inside:
            for peer, p in zip(view["participants"], state.admitted(), strict=True):
                peer["key"] = p.public_key or None
    if inside and me is not None:
        view["session"]["clients_may_share"] = state.clients_may_share
        view["share"] = _share(state.sharer(me.room), full=therapist)
        view["you"]["sharing"] = me.sharing
        view["you"]["may_share"] = is_clinician(me.role) or (
            state.clients_may_share and me.role in SHARE_ROLES)
    if therapist and inside:
        # Seconds each participant spoke (the relay's audio-level reports): clinicians only.
        view["talk"] = {pid: round(seconds, 1) for pid, seconds in sorted(state.talk.items())}
    if inside:
        view["session"]["service"] = info.service
        view["session"]["observers_may_chat"] = info.observers_may_chat
    if therapist and inside:
        view["waiting"] = [_waiting(p) for p in state.waiting()]
        view["expected"] = [
            {"id": i.id, "name": i.name, "role": i.role}
            for i in sorted(state.invitees.values(), key=lambda i: i.id)
            if i.id not in state.participants
        ]
        view["asides"] = [
            {"id": a.id, "participant_id": a.participant_id, "clinician_id": a.clinician_id,
             "since": a.since.isoformat()}
            for a in state.asides
        ]
        view["second_devices"] = [
            {"id": p.id, "name": p.name, "role": p.role, "status": p.status,
             "since": p.pending_since.isoformat() if p.pending_since else None}
            for p in sorted(state.participants.values(),
                            key=lambda p: (p.pending_since or info.starts_at, p.arrival_no))
            if p.pending_device and p.status in ("waiting", "admitted")
        ]
    return view


def second_device_view(state: SessionState, participant_id: str) -> dict[str, Any]:
    """The `state` payload for a participant's second device while it waits: the seat's
    status with `you.second_device = "waiting"`, and nothing of the session beyond what a
    waiting client sees (no name, no roster, no rooms). Its link may have leaked."""
    view = view_for(state, participant_id)
    you = view["you"]
    return {
        "rev": view["rev"],
        "session": {k: v for k, v in view["session"].items()
                    if k not in ("service", "observers_may_chat")} | {"title": ""},
        "you": {"id": you["id"], "role": you["role"], "status": you["status"], "room": None,
                "breakout_role": None, "second_device": "waiting"},
        "participants": [],
        "breakouts": _closed(),
    }


def _your_aside(state: SessionState, me: Participant | None,
                therapist: bool) -> dict[str, Any]:
    """`you.aside` while in an aside: its room id, since when, and who with (the other's
    id for a clinician, its handle for the client)."""
    aside = state.aside_of(me.id) if me is not None else None
    if aside is None or me is None:
        return {}
    other = state.participants.get(
        aside.clinician_id if me.id == aside.participant_id else aside.participant_id)
    with_ref = peer_ref(other, full=therapist) if other is not None else None
    return {"aside": {"id": aside.id, "since": aside.since.isoformat(), "with": with_ref}}


def _stepped_out(state: SessionState, p: Participant, me: Participant | None,
                 therapist: bool) -> dict[str, Any]:
    """Clients and observers outside an aside see only that its two stepped out (no room,
    not with whom, not why); clinicians, and the two themselves, see the aside's room."""
    aside = state.aside_of(p.id)
    if therapist or aside is None or (me is not None and state.aside_of(me.id) == aside):
        return {}
    return {"room": None, "stepped_out": True}


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
            "rooms": [_room(r, state, therapist) for r in rooms],
        }
    if therapist:
        view["saved"] = _plan(b.saved) if b.saved else None
    return view


def _room(room: BreakoutRoom, state: SessionState, therapist: bool) -> dict[str, Any]:
    name = _namer(state, therapist)
    return {
        "id": room.id,
        "name": room.name,
        "scenario": room.scenario,
        "members": [name(m) for m in room.members if name(m)],
        "roles": {name(m): role for m, role in room.roles.items() if name(m)},
        "present": [name(p.id) for p in state.admitted() if p.room == room.id],
    }


def _namer(state: SessionState, therapist: bool) -> Callable[[str], str]:
    """How a receiver refers to a participant: therapists by id, clients by handle (and
    not at all to someone who never arrived, who has no handle)."""
    if therapist:
        return lambda pid: pid
    return lambda pid: p.handle if (p := state.participants.get(pid)) else ""


def peer_ref(p: Participant, *, full: bool) -> str:
    """The id a receiver knows `p` by: the real id for clinicians, else the handle."""
    return p.id if full else p.handle


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


def checkin_view(answers: CheckInAnswers | None) -> dict[str, Any] | None:
    """A check-in as clinicians (and the person themself) see it."""
    if answers is None:
        return None
    return {"location": answers.location, "region": answers.region,
            "consent": answers.consent, "pledge": answers.pledge,
            "at": answers.at.isoformat()}


def _kinds(kinds: frozenset[MuteKind]) -> dict[str, bool]:
    """Which kinds a mute holds, as `muted` shows them (`{audio, video}`)."""
    return {"audio": "audio" in kinds, "video": "video" in kinds}


def _you(me: Participant | None, participant_id: str) -> dict[str, Any]:
    if me is None:
        return {"id": participant_id, "role": None, "status": "left", "room": None,
                "breakout_role": None}
    you = {
        "id": me.id,
        "handle": me.handle,
        "name": me.name,
        "role": me.role,
        "status": me.status,
        "room": me.room,
        "breakout_role": me.breakout_role,
        "muted": {"audio": me.muted_audio, "video": me.muted_video},
        "muted_self": _kinds(me.muted_self),
        "muted_by_therapist": _kinds(me.muted_by_clinician),
        "hand": me.hand,
    }
    if not is_clinician(me.role):
        you["checkin"] = checkin_view(me.checkin)
    return you


def _peer(p: Participant, *, full: bool) -> dict[str, Any]:
    peer = {
        "id": peer_ref(p, full=full),
        "handle": p.handle,
        "name": p.name if full else first_name(p.name),
        "role": p.role,
        "status": p.status,
        "room": p.room,
        "connected": p.connected,
        "muted": {"audio": p.muted_audio, "video": p.muted_video},
        "hand": p.hand,
        "breakout_role": p.breakout_role,
        "sharing": p.sharing,
    }
    if full:
        peer["muted_by_therapist"] = _kinds(p.muted_by_clinician)
    if full and not is_clinician(p.role):
        peer["checkin"] = checkin_view(p.checkin)
    return peer


def _share(sharer: Participant | None, *, full: bool) -> dict[str, Any] | None:
    """The screen share in the receiver's room: who (as the receiver knows them) and the
    msid stream id its screen track arrives with (`<handle>-screen`)."""
    if sharer is None:
        return None
    return {"id": peer_ref(sharer, full=full), "handle": sharer.handle,
            "stream": f"{sharer.handle}-screen"}


def _waiting(p: Participant) -> dict[str, Any]:
    return {
        "id": p.id,
        "handle": p.handle,
        "name": p.name,
        "role": p.role,
        "since": p.waiting_since.isoformat() if p.waiting_since else None,
        "connected": p.connected,
        "checkin": checkin_view(p.checkin),
    }
