"""The session core: `decide` turns a command into events, `apply` folds an event into state.

Pure and synchronous: no I/O and no clock (the time comes in as `now`), so every rule of the
waiting room, reconnection and therapist control is tested without sockets or sleeps, and
replaying the ledger through `apply` rebuilds exactly the state the live session had.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from signaling.core import asides, breakouts, checkin, e2ee, mutes, share
from signaling.core import commands as c
from signaling.core import events as e
from signaling.core.model import (
    DEFAULT_SERVICE,
    Breakouts,
    Invitee,
    Participant,
    SessionInfo,
    SessionState,
    enters_directly,
)
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
                    service=command.service or DEFAULT_SERVICE[command.kind],
                    checkin_required=command.checkin_required,
                    observers_may_chat=command.observers_may_chat,
                    e2ee=command.e2ee,
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
            elif (holder is not None and holder.pending_device
                    and holder.pending_token_id == command.token_id):
                # Only the waiting second device came with it: that device goes.
                revoked.append(e.SecondDeviceWithdrawn(
                    at=now, participant_id=holder.id, device=holder.pending_device))
            return revoked
        case c.Connect():
            return _connect(state, command, now)
        case c.Disconnect():
            return _disconnect(state, command, now)
        case c.Leave():
            return [e.Left(at=now, participant_id=actor.id)]
        case c.Admit():
            target = state.participants.get(command.participant_id)
            if target is None or target.status != "waiting":
                return Rejected("not_found", "no such participant in the waiting room")
            if checkin.must_check_in(state, target):
                return checkin.not_checked_in(target)
            return [e.Admitted(at=now, participant_id=target.id, by=actor.id)]
        case c.AdmitAll():
            # Those who owe a check-in stay waiting; the ack says how many (admit_all_reply).
            return [e.Admitted(at=now, participant_id=p.id, by=actor.id)
                    for p in state.waiting() if not checkin.must_check_in(state, p)]
        case c.CheckIn():
            return checkin.decide_check_in(state.participants[actor.id], command, now)
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
            return mutes.decide_mute(state, command, actor, now)
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
        case c.DeliverMediaKeys():
            return e2ee.decide_delivery(state)
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
            return [e.MediaPublished(at=now, participant_id=target.id, kinds=new,
                                     flows=command.flows)]
        case c.ReportMediaFlow():
            return mutes.decide_flow(state, command, now)
        case c.Tick():
            return list(_due(state, now))
        case c.Recover(keep=keep, keep_pending=keep_pending):
            return list(_recover(state, keep, keep_pending, now))
        case c.DecideSecondDevice():
            target = state.participants.get(command.participant_id)
            if (target is None or not target.pending_device
                    or target.status not in ("waiting", "admitted")):
                return Rejected("not_found", "no second device is waiting for this participant")
            if command.allow:
                return [e.SecondDeviceAllowed(at=now, participant_id=target.id,
                                              device=target.pending_device, by=actor.id)]
            return [e.SecondDeviceRefused(at=now, participant_id=target.id,
                                          device=target.pending_device, by=actor.id)]
        case _ if isinstance(command, share.COMMANDS):
            # The relay's last talk report comes when it closes the session, after the
            # end: what was said in the final seconds still counts.
            if state.ended and not isinstance(command, c.ReportTalk):
                return Rejected("conflict", ended_reason(state))
            return share.decide(state, command, actor, now)
        case _ if isinstance(command, asides.COMMANDS):
            if state.ended:
                return Rejected("conflict", ended_reason(state))
            return asides.decide(state, command, actor, now)
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
    c.SwapRoles,
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
    if state.info is not None and state.info.e2ee:
        if not command.public_key:
            return e2ee.NO_KEY
    else:
        command = replace(command, public_key="")  # kept in e2ee sessions only
    me = state.participants.get(command.participant_id)
    if me is not None:
        if me.status == "removed":
            return Rejected("forbidden", "you were removed from this session")
        if me.status == "denied":
            return Rejected("forbidden", "you were not admitted to this session")
        if me.status in ("waiting", "admitted"):
            return [_seat_or_wait(me, command, now)]
    if state.locked and not enters_directly(command.role):
        return Rejected("conflict", "the session is locked")
    arrived = e.Arrived(
        at=now, participant_id=command.participant_id, name=command.name, role=command.role,
        token_id=command.token_id, device=command.device, public_key=command.public_key,
    )
    if enters_directly(command.role):  # staff: clinicians and observers
        return [arrived, e.Admitted(at=now, participant_id=command.participant_id, by=None)]
    return [arrived]


def _seat_or_wait(me: Participant, command: c.Connect, now: datetime) -> e.Event:
    """One seat per person. A participant whose connection is gone (a drop the server saw,
    or a restart) takes its seat again at once; so does the browser that proves it held
    the seat (its resume secret), or the very connection placing itself again (a resync).
    Any other connection while the participant is connected waits as a second device.
    A connection that names no device (callers from before seats had one) replaces."""
    reconnected = e.Reconnected(at=now, participant_id=me.id, token_id=command.token_id,
                                device=command.device, public_key=command.public_key)
    if not me.connected or not command.device:
        return reconnected
    if command.device == me.device or (command.resume and command.resume == me.device):
        return reconnected
    again = bool(me.pending_device) and me.pending_device in (command.device, command.resume)
    since = me.pending_since if again and me.pending_since is not None else now
    return e.SecondDeviceArrived(at=now, participant_id=me.id, device=command.device,
                                 since=since, token_id=command.token_id,
                                 public_key=command.public_key)


def _disconnect(state: SessionState, command: c.Disconnect,
                now: datetime) -> list[e.Event]:
    """A socket went away: a waiting second device withdraws; the seat's connection drops,
    unless a second device is waiting, which then takes the seat (the first is gone)."""
    me = state.participants.get(command.participant_id)
    if me is None or not me.connected or me.status not in ("waiting", "admitted"):
        return []
    if command.device and command.device == me.pending_device:
        return [e.SecondDeviceWithdrawn(at=now, participant_id=me.id, device=me.pending_device)]
    if command.device and me.device and command.device != me.device:
        return []  # a connection that no longer holds the seat
    if me.pending_device:
        return [e.SecondDeviceAllowed(at=now, participant_id=me.id, device=me.pending_device,
                                      by=None)]
    return [e.Disconnected(at=now, participant_id=me.id)]


def _recover(state: SessionState, keep: frozenset[str], keep_pending: frozenset[str],
             now: datetime) -> Iterable[e.Event]:
    """A takeover: connections nobody holds any more are gone as of now. A waiting second
    device whose socket is still held takes the seat of one that is gone."""
    for p in _by_arrival(state.participants.values()):
        if not p.connected or p.status not in ("waiting", "admitted"):
            continue
        waiting_there = bool(p.pending_device) and p.id in keep_pending
        if p.pending_device and not waiting_there:
            yield e.SecondDeviceWithdrawn(at=now, participant_id=p.id, device=p.pending_device)
        if p.id in keep:
            continue
        if waiting_there:
            yield e.SecondDeviceAllowed(at=now, participant_id=p.id, device=p.pending_device,
                                        by=None)
        else:
            yield e.Disconnected(at=now, participant_id=p.id)


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
    info = state.info
    if info is None or state.ended_at is None:
        raise ValueError("ended_reason: the session has not ended")
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
    after = _apply(state, event)
    if after.asides:  # an aside ends with the admission of either of its two people
        after = asides.dissolve(after)
    after = share.end_shares(after)  # a share holds only where its sharer still is
    # A flow exists only while its grant allows it (mutes.end_flows).
    return mutes.end_flows(after) if mutes.may_end_flows(event) else after


def _apply(state: SessionState, event: e.Event) -> SessionState:
    state = replace(state, seq=state.seq + 1, last_event_at=event.at)
    if isinstance(event, _BREAKOUT_EVENTS):
        return breakouts.apply(state, event)
    if isinstance(event, asides.EVENTS):
        return asides.apply(state, event)
    if isinstance(event, share.EVENTS):
        return share.apply(state, event)
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
                service=event.service or DEFAULT_SERVICE[event.kind],
                checkin_required=event.checkin_required,
                observers_may_chat=event.observers_may_chat,
                e2ee=event.e2ee,
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
                device=event.device,
                checkin=previous.checkin if previous else None,
                public_key=event.public_key,
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
                    connected=False, disconnected_at=None, **_NO_PENDING)
        case e.Removed():
            _update(parts, event.participant_id, status="removed", room=None, hand=False,
                    connected=False, disconnected_at=None, waiting_since=None,
                    breakout_role=None, **_NO_PENDING)
        case e.Left():
            _update(parts, event.participant_id, status="left", room=None, hand=False,
                    connected=False, disconnected_at=None, waiting_since=None,
                    breakout_role=None, **_NO_PENDING)
        case e.GraceExpired():
            _update(parts, event.participant_id, status="left", room=None, hand=False,
                    connected=False, disconnected_at=None, waiting_since=None,
                    breakout_role=None, **_NO_PENDING)
        case e.Disconnected():
            _update(parts, event.participant_id, connected=False, disconnected_at=event.at)
        case e.Reconnected():
            changes: dict[str, object] = {"connected": True, "disconnected_at": None}
            if event.token_id:
                changes["token_id"] = event.token_id
            if event.device:
                changes["device"] = event.device
            if event.device or event.public_key:
                changes["public_key"] = event.public_key  # the key is the connection's
            _update(parts, event.participant_id, **changes)
        case e.SecondDeviceArrived():
            _update(parts, event.participant_id, pending_device=event.device,
                    pending_since=event.since, pending_token_id=event.token_id,
                    pending_public_key=event.public_key)
        case e.SecondDeviceAllowed():
            promoted = parts.get(event.participant_id)
            if promoted is not None:
                parts[promoted.id] = replace(
                    promoted, device=event.device, connected=True, disconnected_at=None,
                    token_id=promoted.pending_token_id or promoted.token_id,
                    public_key=promoted.pending_public_key, **_NO_PENDING)
        case e.SecondDeviceRefused() | e.SecondDeviceWithdrawn():
            waiting = parts.get(event.participant_id)
            if waiting is not None and waiting.pending_device == event.device:
                parts[waiting.id] = replace(waiting, **_NO_PENDING)
        case e.MuteChanged():
            if (muted := parts.get(event.participant_id)) is not None:
                parts[muted.id] = mutes.apply_mute(muted, event)
        case e.MediaFlowChanged():
            if (flowing := parts.get(event.participant_id)) is not None:
                parts[flowing.id] = mutes.apply_flow(flowing, event)
        case e.HandChanged():
            _update(parts, event.participant_id, hand=event.raised)
        case e.CheckedIn():
            _update(parts, event.participant_id, checkin=checkin.answers(event))
        case e.LockChanged():
            return replace(state, locked=event.locked)
        case e.SessionEnded():
            for pid, p in parts.items():
                if p.status in ("waiting", "admitted"):
                    parts[pid] = replace(p, status="left", room=None, connected=False,
                                         disconnected_at=None, hand=False,
                                         breakout_role=None, waiting_since=None,
                                         **_NO_PENDING)
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


_NO_PENDING: dict[str, Any] = {"pending_device": "", "pending_since": None,
                               "pending_token_id": "", "pending_public_key": ""}


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
