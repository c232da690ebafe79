"""Mutes and media flow: who may mute whom, and which of the relay's flow reports count.

Each kind (audio, video) has two mutes: the participant's own and a clinician's. Either one
makes the relay drop the kind (`Participant.muted_audio`/`muted_video`, what views and
the media plan show). Anyone admitted mutes and unmutes themselves; a client or family
member cannot lift a clinician's mute ("the therapist muted you"); a clinician cannot lift
someone's own mute (nobody's microphone is switched back on from afar), but muting
someone who muted themselves makes it the clinician's too. A clinician who unmutes
themselves lifts both.

Media flow is what attendance bills from: the relay reports when a kind starts or stops
arriving *allowed* (`ReportMediaFlow`), and a change is recorded (`MediaFlowChanged`) only
when it is one. A flow exists only while the grant allows the kind: a mute, a drop, a
listen-only role or leaving ends it at once (`end_flows`), whatever the relay says later.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from signaling.core import commands as c
from signaling.core import events as e
from signaling.core.media_plan import may_send
from signaling.core.model import MuteKind, Participant, SessionState, is_clinician
from signaling.core.policy import Rejected

CLINICIAN_MUTED = "the therapist muted you"


def _after(p: Participant, kind: MuteKind, muted: bool,
           by: str) -> tuple[frozenset[MuteKind], frozenset[MuteKind]]:
    """(own mutes, clinicians' mutes) of `p` once `by` set `kind` to `muted`."""
    own, clinician = p.muted_self, p.muted_by_clinician
    if by == p.id:
        own = own | {kind} if muted else own - {kind}
        if not muted and is_clinician(p.role):
            clinician = clinician - {kind}
    else:
        clinician = clinician | {kind} if muted else clinician - {kind}
    return own, clinician


def decide_mute(state: SessionState, command: c.Mute, actor: c.Actor,
                now: datetime) -> list[e.Event] | Rejected:
    """The mute change `command` makes (policy let only clinicians name someone else)."""
    target = state.participants.get(command.participant_id)
    if target is None or target.status != "admitted":
        return Rejected("not_found", "no such participant in the session")
    kind = command.kind
    own = target.id == actor.id
    if (own and not command.muted and not is_clinician(target.role)
            and kind in target.muted_by_clinician):
        return Rejected("forbidden", CLINICIAN_MUTED)
    after = _after(target, kind, command.muted, actor.id)
    if after == (target.muted_self, target.muted_by_clinician):
        if not own and not command.muted and kind in target.muted_self:
            return Rejected("conflict", "they muted themselves: only they can switch it on")
        return []
    return [e.MuteChanged(at=now, participant_id=target.id, kind=kind, muted=command.muted,
                          by=actor.id)]


def apply_mute(p: Participant, event: e.MuteChanged) -> Participant:
    own, clinician = _after(p, event.kind, event.muted, event.by)
    both = own | clinician
    return replace(p, muted_self=own, muted_by_clinician=clinician,
                   muted_audio="audio" in both, muted_video="video" in both)


def decide_flow(state: SessionState, command: c.ReportMediaFlow,
                now: datetime) -> list[e.Event] | Rejected:
    """A `MediaFlowChanged` when the report changes what the core knows, else nothing.

    A start is taken only while the grant allows the kind (a report that crossed a mute
    on its way counts nothing: those packets were dropped); nothing after the end."""
    target = state.participants.get(command.participant_id)
    if target is None:
        return Rejected("not_found", "no such participant")
    if state.ended or (command.kind in target.flowing) == command.flowing:
        return []
    if command.flowing and not may_send(target, command.kind):
        return []
    since = now - timedelta(seconds=max(0.0, command.ago_s))
    return [e.MediaFlowChanged(at=now, participant_id=target.id, kind=command.kind,
                               flowing=command.flowing, since=since)]


def apply_flow(p: Participant, event: e.MediaFlowChanged) -> Participant:
    kinds = p.flowing | {event.kind} if event.flowing else p.flowing - {event.kind}
    return replace(p, flowing=kinds)


KEEP_FLOWS: tuple[type[e.Event], ...] = (
    e.MediaFlowChanged, e.MediaPublished, e.TalkTime, e.HandChanged, e.CheckedIn,
    e.InviteIssued,
)
"""Frequent events that never take a grant away. After any other (a mute, a drop, leaving,
a move, a listen-only role, an aside, the waiting room, the end, and events added later)
the flows are checked against the grants."""


def may_end_flows(event: e.Event) -> bool:
    """Whether a grant may no longer allow a flowing kind after `event` (`end_flows`)."""
    return not isinstance(event, KEEP_FLOWS)


def end_flows(state: SessionState) -> SessionState:
    """`state` with every flow its grant no longer allows ended (implicitly, at once)."""
    stale = [p for p in state.participants.values()
             if p.flowing and not all(may_send(p, k) for k in p.flowing)]
    if not stale:
        return state
    parts = dict(state.participants)
    for p in stale:
        parts[p.id] = replace(p, flowing=frozenset(k for k in p.flowing if may_send(p, k)))
    return replace(state, participants=parts)
