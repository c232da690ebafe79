"""Screen sharing and talk time: who shares in which room, and how long each person spoke.

One share at a time per room: a second `share_start` in the room is refused `conflict`
(nothing is replaced behind the sharer's back; a clinician stops the share first). A share
lasts while its sharer stays present, connected and in the room it started in: a move,
a drop, a leave or the waiting room ends it (`end_shares`, after every event), so no event
of another feature needs to know about shares. The relay forwards the sharer's screen
track only while the share holds (`media_plan`).

Talk time is measured by the relay (RTP audio level, docs/media.md) and recorded as one
`TalkTime` event per report (about every 5 s, only participants who spoke).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from signaling.core import commands as c
from signaling.core import events as e
from signaling.core.model import SessionState
from signaling.core.policy import Rejected

COMMANDS = (c.SetSharePolicy, c.StartShare, c.StopShare, c.ReportTalk)
EVENTS = (e.SharePolicyChanged, e.ShareStarted, e.ShareStopped, e.TalkTime)


def decide(state: SessionState, command: c.Command, actor: c.Actor,
           now: datetime) -> Sequence[e.Event] | Rejected:
    match command:
        case c.SetSharePolicy():
            if state.clients_may_share == command.clients_may_share:
                return []
            return [e.SharePolicyChanged(at=now, clients_may_share=command.clients_may_share,
                                         by=actor.id)]
        case c.StartShare():
            me = state.participants[actor.id]
            if me.sharing:
                return []
            if not me.connected or me.room is None:
                return Rejected("conflict", "not in a room")
            if state.sharer(me.room) is not None:
                return Rejected("conflict", "someone else is sharing in this room")
            return [e.ShareStarted(at=now, participant_id=me.id, room=me.room)]
        case c.StopShare():
            target_id = command.participant_id or actor.id
            target = state.participants.get(target_id)
            if target is None or not target.sharing:
                if target_id == actor.id:
                    return []
                return Rejected("not_found", "that participant is not sharing")
            return [e.ShareStopped(at=now, participant_id=target.id, by=actor.id)]
        case c.ReportTalk():
            spoke = {pid: round(float(s), 2) for pid, s in sorted(command.seconds.items())
                     if pid in state.participants and s > 0}
            return [e.TalkTime(at=now, seconds=spoke)] if spoke else []
    return Rejected("invalid", "unknown command")


def apply(state: SessionState, event: e.Event) -> SessionState:
    parts = dict(state.participants)
    match event:
        case e.SharePolicyChanged():
            return replace(state, clients_may_share=event.clients_may_share)
        case e.ShareStarted():
            if (p := parts.get(event.participant_id)) is not None:
                parts[p.id] = replace(p, sharing_room=event.room)
        case e.ShareStopped():
            if (p := parts.get(event.participant_id)) is not None:
                parts[p.id] = replace(p, sharing_room=None)
        case e.TalkTime():
            talk = dict(state.talk)
            for pid, seconds in event.seconds.items():
                talk[pid] = round(talk.get(pid, 0.0) + seconds, 2)
            return replace(state, talk=talk)
    return replace(state, participants=parts)


def end_shares(state: SessionState) -> SessionState:
    """Forget shares that no longer hold (the sharer moved, dropped or left), so that
    coming back to the room does not resume a share by itself."""
    stale = [p for p in state.participants.values()
             if p.sharing_room is not None and not p.sharing]
    if not stale:
        return state
    parts = dict(state.participants)
    for p in stale:
        parts[p.id] = replace(p, sharing_room=None)
    return replace(state, participants=parts)
