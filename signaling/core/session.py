"""The session core: `decide` turns a command into events, `apply` folds an event into state.

Pure and synchronous: no I/O and no clock (the time comes in as `now`), so every rule of the
waiting room, reconnection and therapist control is tested without sockets or sleeps, and
replaying the ledger through `apply` rebuilds exactly the state the live session had.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from signaling.core import breakouts
from signaling.core import commands as c
from signaling.core import events as e
from signaling.core.model import Breakouts, Invitee, Participant, SessionInfo, SessionState
from signaling.core.policy import Rejected, check

ABANDONED_AFTER = timedelta(hours=4)
"""A session nobody is connected to this long after its scheduled end is closed by the server."""


@dataclass(frozen=True)
class Accepted:
    """A command the core took; `events` may be empty (nothing to change)."""

    events: tuple[e.Event, ...]


Decision = Accepted | Rejected


def decide(state: SessionState, command: c.Command, actor: c.Actor, now: datetime) -> Decision:
    """The events `command` causes in `state`, or why it is refused."""
    refused = check(state, actor, command)
    if refused is not None:
        return refused
    result = _decide(state, command, actor, now)
    if isinstance(result, Rejected):
        return result
    return Accepted(tuple(result))


def _decide(
    state: SessionState, command: c.Command, actor: c.Actor, now: datetime
) -> Sequence[e.Event] | Rejected:
    info = state.info
    match command:
        case c.CreateSession():
            if info is not None:
                return Rejected("conflict", "session already exists")
            ends_at = command.starts_at + timedelta(minutes=command.minutes)
            if ends_at <= now:
                return Rejected(
                    "invalid",
                    f"starts_at: this session would end at {_utc(ends_at)}, which has passed "
                    f"(the server's time is {_utc(now)}); schedule it for a time to come",
                )
            return [
                e.SessionCreated(
                    at=now,
                    session_id=command.session_id,
                    title=command.title,
                    kind=command.kind,
                    program=command.program,
                    starts_at=command.starts_at,
                    minutes=command.minutes,
                    reconnect_grace_s=command.reconnect_grace_s,
                    created_by=actor.id,
                )
            ]
        case c.IssueInvite():
            if state.ended:
                return Rejected("conflict", ended_reason(state))
            if command.participant_id in state.invitees:
                known = state.invitees[command.participant_id]
                if known.role != command.role:
                    return Rejected("conflict", "participant already invited with another role")
            return [
                e.InviteIssued(
                    at=now,
                    participant_id=command.participant_id,
                    display_name=command.display_name,
                    role=command.role,
                    token_id=command.token_id,
                    expires_at=command.expires_at,
                    issued_by=actor.id,
                )
            ]
        case c.RevokeInvite():
            holder_id = state.issued_tokens.get(command.token_id)
            if holder_id is None:
                return Rejected("not_found", "no such invite in this session")
            if command.token_id in state.revoked_tokens:
                return []
            revoked: list[e.Event] = [
                e.InviteRevoked(at=now, token_id=command.token_id, revoked_by=actor.id)]
            holder = state.participants.get(holder_id)
            if (holder is not None and holder.token_id == command.token_id
                    and holder.status in ("waiting", "admitted")):
                # A leaked link must stop working for whoever holds it now, not only at
                # the next connect.
                revoked.append(e.Removed(at=now, participant_id=holder.id, by=actor.id))
            return revoked
        case c.Connect():
            return _connect(state, command, now)
        case c.Disconnect():
            me = state.participants.get(command.participant_id)
            if me is None or not me.connected or me.status not in ("waiting", "admitted"):
                return []
            return [e.Disconnected(at=now, participant_id=me.id)]
        case c.Leave():
            return [e.Left(at=now, participant_id=actor.id)]
        case c.Admit():
            target = state.participants.get(command.participant_id)
            if target is None or target.status != "waiting":
                return Rejected("not_found", "no such participant in the waiting room")
            return [e.Admitted(at=now, participant_id=target.id, by=actor.id)]
        case c.AdmitAll():
            return [e.Admitted(at=now, participant_id=p.id, by=actor.id) for p in state.waiting()]
        case c.Deny():
            target = state.participants.get(command.participant_id)
            if target is None or target.status != "waiting":
                return Rejected("not_found", "no such participant in the waiting room")
            return [e.Denied(at=now, participant_id=target.id, by=actor.id, reason=command.reason)]
        case c.Remove():
            target = state.participants.get(command.participant_id)
            if target is None or target.status not in ("waiting", "admitted"):
                return Rejected("not_found", "no such participant in the session")
            if target.id == actor.id:
                return Rejected("invalid", "use leave to leave")
            return [e.Removed(at=now, participant_id=target.id, by=actor.id)]
        case c.Mute():
            target = state.participants.get(command.participant_id)
            if target is None or target.status != "admitted":
                return Rejected("not_found", "no such participant in the session")
            current = target.muted_audio if command.kind == "audio" else target.muted_video
            if current == command.muted:
                return []
            return [
                e.MuteChanged(
                    at=now,
                    participant_id=target.id,
                    kind=command.kind,
                    muted=command.muted,
                    by=actor.id,
                )
            ]
        case c.Lock():
            if state.locked == command.locked:
                return []
            return [e.LockChanged(at=now, locked=command.locked, by=actor.id)]
        case c.End():
            return [e.SessionEnded(at=now, by=actor.id)]
        case c.RaiseHand():
            me = state.participants[actor.id]
            if me.hand == command.raised:
                return []
            return [e.HandChanged(at=now, participant_id=actor.id, raised=command.raised)]
        case c.Chat() | c.Signal():
            return []
        case c.MessageWaiting():
            if command.participant_id is not None:
                target = state.participants.get(command.participant_id)
                if target is None or target.status != "waiting":
                    return Rejected("not_found", "no such participant in the waiting room")
            return []
        case c.ReportMedia():
            target = state.participants.get(command.participant_id)
            if target is None:
                return Rejected("not_found", "no such participant")
            new = command.kinds - target.published
            if not new:
                return []
            return [e.MediaPublished(at=now, participant_id=target.id, kinds=new)]
        case c.Tick():
            return list(_due(state, now))
        case c.Recover(keep=keep):
            return [
                e.Disconnected(at=now, participant_id=p.id)
                for p in _by_arrival(state.participants.values())
                if p.connected and p.status in ("waiting", "admitted") and p.id not in keep
            ]
        case _ if isinstance(command, _BREAKOUT_COMMANDS):
            if state.ended:
                return Rejected("conflict", ended_reason(state))
            return breakouts.decide(state, command, actor, now)
    return Rejected("invalid", "unknown command")


_BREAKOUT_COMMANDS = (
    c.SaveBreakoutPlan,
    c.OpenBreakouts,
    c.MoveToRoom,
    c.VisitRoom,
    c.RotateRoles,
    c.ExtendBreakouts,
    c.CloseBreakouts,
    c.Broadcast,
    c.AskForHelp,
)
_BREAKOUT_EVENTS = (
    e.BreakoutPlanSaved,
    e.BreakoutsOpened,
    e.Moved,
    e.BreakoutRolesRotated,
    e.BreakoutsExtended,
    e.BreakoutWarningDue,
    e.BreakoutsClosing,
    e.BreakoutsClosed,
)


def _connect(state: SessionState, command: c.Connect, now: datetime) -> list[e.Event] | Rejected:
    """Arrival, reconnection, or refusal of a socket that holds a valid token."""
    if command.token_id in state.revoked_tokens:
        return Rejected("forbidden", "this invitation was revoked")
    if state.ended:
        return Rejected("conflict", ended_reason(state))
    me = state.participants.get(command.participant_id)
    if me is not None:
        if me.status == "removed":
            return Rejected("forbidden", "you were removed from this session")
        if me.status == "denied":
            return Rejected("forbidden", "you were not admitted to this session")
        if me.status in ("waiting", "admitted"):
            return [e.Reconnected(at=now, participant_id=me.id, token_id=command.token_id)]
    if state.locked and command.role != "therapist":
        return Rejected("conflict", "the session is locked")
    arrived = e.Arrived(
        at=now, participant_id=command.participant_id, name=command.name, role=command.role,
        token_id=command.token_id,
    )
    if command.role == "therapist":
        return [arrived, e.Admitted(at=now, participant_id=command.participant_id, by=None)]
    return [arrived]


def _due(state: SessionState, now: datetime) -> Iterable[e.Event]:
    """Events whose time has come: breakout timers, expired grace periods, abandonment."""
    if state.info is None or state.ended:
        return
    yield from breakouts.due(state, now)
    grace = timedelta(seconds=state.info.reconnect_grace_s)
    for p in _by_arrival(state.participants.values()):
        if p.disconnected_at is not None and p.disconnected_at + grace <= now:
            yield e.GraceExpired(at=now, participant_id=p.id, left_at=p.disconnected_at)
    abandon_at = _abandon_at(state.info)
    nobody_connected = not any(
        p.connected for p in state.participants.values() if p.status in ("waiting", "admitted")
    )
    if now >= abandon_at and nobody_connected:
        yield e.SessionEnded(at=now, by=None)


def next_deadline(state: SessionState) -> datetime | None:
    """When `Tick` will next have something to do; the runtime sleeps until then."""
    if state.info is None or state.ended:
        return None
    grace = timedelta(seconds=state.info.reconnect_grace_s)
    times = [
        p.disconnected_at + grace
        for p in state.participants.values()
        if p.disconnected_at is not None
    ]
    if not any(p.connected for p in state.participants.values()):
        times.append(_abandon_at(state.info))
    breakout_timer = breakouts.deadline(state)
    if breakout_timer is not None:
        times.append(breakout_timer)
    return min(times, default=None)


def ended_reason(state: SessionState) -> str:
    """Which session ended, when and why: what staff and clients read on a refusal."""
    assert state.info is not None and state.ended_at is not None
    info = state.info
    scheduled_end = info.starts_at + timedelta(minutes=info.minutes)
    why = (
        f"the server closed it: nobody was connected {_hours(ABANDONED_AFTER)} after its "
        f"scheduled end at {_utc(scheduled_end)}"
        if state.ended_by_server
        else "the therapist ended it"
    )
    return f"session {info.id} ended at {_utc(state.ended_at)} ({why})"


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _hours(span: timedelta) -> str:
    return f"{span.total_seconds() / 3600:g} hours"


def _abandon_at(info: SessionInfo) -> datetime:
    return info.starts_at + timedelta(minutes=info.minutes) + ABANDONED_AFTER


def _by_arrival(participants: Iterable[Participant]) -> list[Participant]:
    return sorted(participants, key=lambda p: p.arrival_no)


def apply(state: SessionState, event: e.Event) -> SessionState:
    """The state after `event`; total for every event type, so replay never fails midway."""
    state = replace(state, seq=state.seq + 1, last_event_at=event.at)
    if isinstance(event, _BREAKOUT_EVENTS):
        return breakouts.apply(state, event)
    parts = dict(state.participants)
    match event:
        case e.SessionCreated():
            info = SessionInfo(
                id=event.session_id,
                title=event.title,
                kind=event.kind,
                program=event.program,
                starts_at=event.starts_at,
                minutes=event.minutes,
                reconnect_grace_s=event.reconnect_grace_s,
            )
            return replace(state, info=info)
        case e.InviteIssued():
            invitees = dict(state.invitees)
            invitees[event.participant_id] = Invitee(
                event.participant_id, event.display_name, event.role
            )
            return replace(state, invitees=invitees,
                           issued_tokens={**state.issued_tokens,
                                          event.token_id: event.participant_id})
        case e.InviteRevoked():
            return replace(state, revoked_tokens=state.revoked_tokens | {event.token_id})
        case e.Arrived():
            previous = parts.get(event.participant_id)
            parts[event.participant_id] = Participant(
                id=event.participant_id,
                name=event.name,
                role=event.role,
                status="waiting",
                arrival_no=previous.arrival_no if previous else state.arrivals + 1,
                waiting_since=event.at,
                published=previous.published if previous else frozenset(),
                token_id=event.token_id,
            )
            return replace(state, participants=parts, arrivals=state.arrivals + 1)
        case e.Admitted():
            admitted = parts.get(event.participant_id)
            if admitted is not None:
                room, role = breakouts.placement(state, admitted)
                parts[admitted.id] = replace(admitted, status="admitted", room=room,
                                             breakout_role=role, waiting_since=None)
        case e.Denied():
            _update(parts, event.participant_id, status="denied", waiting_since=None,
                    connected=False, disconnected_at=None)
        case e.Removed():
            _update(parts, event.participant_id, status="removed", room=None, hand=False,
                    connected=False, disconnected_at=None, waiting_since=None,
                    breakout_role=None)
        case e.Left():
            _update(parts, event.participant_id, status="left", room=None, hand=False,
                    connected=False, disconnected_at=None, waiting_since=None,
                    breakout_role=None)
        case e.GraceExpired():
            _update(parts, event.participant_id, status="left", room=None, hand=False,
                    connected=False, disconnected_at=None, waiting_since=None,
                    breakout_role=None)
        case e.Disconnected():
            _update(parts, event.participant_id, connected=False, disconnected_at=event.at)
        case e.Reconnected():
            changes: dict[str, object] = {"connected": True, "disconnected_at": None}
            if event.token_id:
                changes["token_id"] = event.token_id
            _update(parts, event.participant_id, **changes)
        case e.MuteChanged():
            field = "muted_audio" if event.kind == "audio" else "muted_video"
            _update(parts, event.participant_id, **{field: event.muted})
        case e.HandChanged():
            _update(parts, event.participant_id, hand=event.raised)
        case e.LockChanged():
            return replace(state, locked=event.locked)
        case e.SessionEnded():
            for pid, p in parts.items():
                if p.status in ("waiting", "admitted"):
                    parts[pid] = replace(p, status="left", room=None, connected=False,
                                         disconnected_at=None, hand=False,
                                         breakout_role=None, waiting_since=None)
            return replace(state, participants=parts, ended=True, ended_at=event.at,
                           ended_by_server=event.by is None,
                           breakouts=Breakouts(saved=state.breakouts.saved))
        case e.MediaPublished():
            publisher = parts.get(event.participant_id)
            if publisher is not None:
                parts[publisher.id] = replace(
                    publisher, published=publisher.published | event.kinds
                )
    return replace(state, participants=parts)


def _update(parts: dict[str, Participant], pid: str, **changes: object) -> None:
    p = parts.get(pid)
    if p is not None:
        parts[pid] = replace(p, **changes)  # type: ignore[arg-type]


def replay(events: Iterable[e.Event], state: SessionState | None = None) -> SessionState:
    """Fold `events` into `state` (a fresh session by default)."""
    result = state or SessionState()
    for event in events:
        result = apply(result, event)
    return result
