"""A clinician's moves of one person: a private aside, and back to the waiting room.

Part of the pure core, like `breakouts` (which it leaves alone: an aside is not a breakout
room, and a client taken aside keeps its breakout assignment for when it comes back).

* `aside_open`: the calling clinician and one admitted client (or family member) go into a
  room of their own, `aside-<n>`, at any time, breakouts open or not; the rest of the group
  stays where it is. At most one aside per clinician, and a person is in at most one.
* `aside_close`: both go back: the client to its assigned breakout room (with its role)
  while breakouts are open, else main; the clinician to the room it came from if that room
  still exists, else main. An aside also ends by itself when either of the two is no longer
  admitted (left, removed, sent back to waiting, dropped past the grace period, the end).
* `send_to_waiting`: an admitted client or family member waits again (its presence ends;
  mutes, check-in and breakout assignment are kept); admitting it again works as usual.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from signaling.core import commands as c
from signaling.core import events as e
from signaling.core.model import (
    ASIDE_PREFIX,
    MAIN_ROOM,
    Aside,
    Participant,
    SessionState,
    enters_directly,
)
from signaling.core.policy import Rejected


def _one_person(state: SessionState, participant_id: str, what: str) -> Participant | Rejected:
    target = state.participants.get(participant_id)
    if target is None or target.status != "admitted":
        return Rejected("not_found", "no such participant in the session")
    if enters_directly(target.role):
        return Rejected("invalid", f"only clients and family members can be {what}")
    return target


def decide(state: SessionState, command: c.Command, actor: c.Actor,
           now: datetime) -> Sequence[e.Event] | Rejected:
    """Events for an aside or send-to-waiting command (rights already checked by policy)."""
    match command:
        case c.SendToWaiting():
            target = _one_person(state, command.participant_id, "sent to the waiting room")
            if isinstance(target, Rejected):
                return target
            return [e.SentToWaiting(at=now, participant_id=target.id, by=actor.id)]
        case c.OpenAside():
            target = _one_person(state, command.participant_id, "taken aside")
            if isinstance(target, Rejected):
                return target
            if target.id == actor.id:
                return Rejected("invalid", "an aside is with someone else")
            if state.aside_of(actor.id) is not None:
                return Rejected("conflict", "you are already in an aside; close it first")
            if state.aside_of(target.id) is not None:
                return Rejected("conflict", "they are already in an aside")
            me = state.participants[actor.id]
            return [e.AsideOpened(
                at=now, aside_id=f"{ASIDE_PREFIX}{state.asides_opened + 1}",
                participant_id=target.id, clinician_id=actor.id,
                clinician_from=me.room or MAIN_ROOM, by=actor.id)]
        case c.CloseAside():
            aside = state.aside_of(actor.id)
            if aside is None and command.participant_id is not None:
                aside = state.aside_of(command.participant_id)
            if aside is None and command.participant_id is None and len(state.asides) == 1:
                aside = state.asides[0]
            if aside is None:
                return Rejected("not_found", "no such aside open")
            return [e.AsideClosed(at=now, aside_id=aside.id, by=actor.id)]
    return Rejected("invalid", "unknown command")


def apply(state: SessionState, event: e.Event) -> SessionState:
    """The state after an aside or send-to-waiting event."""
    parts = dict(state.participants)
    match event:
        case e.SentToWaiting():
            p = parts.get(event.participant_id)
            if p is not None:
                parts[p.id] = replace(p, status="waiting", room=None, breakout_role=None,
                                      hand=False, waiting_since=event.at)
            return dissolve(replace(state, participants=parts))
        case e.AsideOpened():
            aside = Aside(id=event.aside_id, participant_id=event.participant_id,
                          clinician_id=event.clinician_id, since=event.at,
                          clinician_from=event.clinician_from)
            for pid in (event.participant_id, event.clinician_id):
                p = parts.get(pid)
                if p is not None:
                    parts[pid] = replace(p, room=event.aside_id, breakout_role=None)
            return replace(state, participants=parts, asides=(*state.asides, aside),
                           asides_opened=state.asides_opened + 1)
        case e.AsideClosed():
            closed = next((a for a in state.asides if a.id == event.aside_id), None)
            return state if closed is None else _end(state, closed)
    return state


def dissolve(state: SessionState) -> SessionState:
    """`state` without the asides one of whose two people is no longer admitted (the other
    goes back as if the aside was closed)."""
    for aside in state.asides:
        people = (state.participants.get(aside.participant_id),
                  state.participants.get(aside.clinician_id))
        if any(p is None or p.status != "admitted" for p in people):
            state = _end(state, aside)
    return state


def _end(state: SessionState, aside: Aside) -> SessionState:
    parts = dict(state.participants)
    client = parts.get(aside.participant_id)
    if client is not None and client.status == "admitted" and client.room == aside.id:
        room = state.breakouts.assignment(client.id)
        parts[client.id] = replace(
            client, room=room.id if room is not None else MAIN_ROOM,
            breakout_role=room.roles.get(client.id) if room is not None else None)
    clinician = parts.get(aside.clinician_id)
    if clinician is not None and clinician.status == "admitted" and clinician.room == aside.id:
        back = aside.clinician_from
        if back != MAIN_ROOM and (not state.breakouts.open or state.breakouts.room(back) is None):
            back = MAIN_ROOM
        parts[clinician.id] = replace(clinician, room=back, breakout_role=None)
    return replace(state, participants=parts,
                   asides=tuple(a for a in state.asides if a.id != aside.id))


EVENTS: tuple[type[e.Event], ...] = (e.SentToWaiting, e.AsideOpened, e.AsideClosed)
COMMANDS: tuple[type, ...] = (c.SendToWaiting, c.OpenAside, c.CloseAside)
