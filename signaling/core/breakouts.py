"""Role-play breakouts: planning rooms and roles, timers, moves, visits, rotation.

Part of the pure core (no I/O, no clock, no hidden randomness: auto planning takes a seed
from the command, and the event records the rooms it produced, so replay never re-plans).
`core` delegates every breakout command and event here.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from signaling.core import commands as c
from signaling.core import events as e
from signaling.core.model import (
    MAIN_ROOM,
    BreakoutPlan,
    BreakoutRole,
    BreakoutRoom,
    Breakouts,
    Participant,
    PlannedRoom,
    SessionState,
    enters_directly,
    is_aside_room,
)
from signaling.core.policy import Rejected

WARNING_BEFORE = timedelta(minutes=1)
"""Every member is told this long before the rooms' time is up."""
GRACE_WHEN_TIME_RUNS_OUT = timedelta(seconds=30)
"""When time runs out the rooms close after this, so nobody is cut off mid-sentence."""
MAX_ROOMS = 20
MAX_MINUTES = 180
EXTRA_ROLES: tuple[BreakoutRole, ...] = ("auxiliary", "observer", "double")
"""Roles of members beyond protagonist and antagonist, in the order they are handed out:
observers come second so that, with room sizes within one, observers stay spread."""


# -- planning (pure functions, tested as properties) ----------------------------------------


def auto_rooms(
    participant_ids: Sequence[str], count: int, strategy: str, scenario: str, seed: int
) -> tuple[BreakoutRoom, ...]:
    """Split participants into `count` rooms.

    Both strategies deal members so room sizes differ by at most one. `balanced` gives every
    room a protagonist, then every room an antagonist, before any room gets a third member,
    and hands out the extra roles so observers stay spread; `random` shuffles members and
    roles alike (each room still has exactly one protagonist).
    """
    rng = random.Random(seed)  # noqa: S311 (seeded, so a plan is reproducible; no secret)
    people = list(participant_ids)
    rng.shuffle(people)
    count = max(1, min(count, len(people))) if people else 0
    members: list[list[str]] = [[] for _ in range(count)]
    for index, pid in enumerate(people):
        members[index % count].append(pid)
    rooms = []
    for number, room_members in enumerate(members, start=1):
        roles = _balanced_roles(room_members)
        if strategy == "random" and len(room_members) > 1:
            shuffled = list(roles.values())
            rng.shuffle(shuffled)
            roles = dict(zip(room_members, shuffled, strict=True))
        rooms.append(
            BreakoutRoom(
                id=f"r{number}",
                name=f"Room {number}",
                scenario=scenario,
                members=tuple(room_members),
                roles=roles,
            )
        )
    return tuple(rooms)


def _balanced_roles(members: Sequence[str]) -> dict[str, BreakoutRole]:
    roles: dict[str, BreakoutRole] = {}
    for position, pid in enumerate(members):
        if position == 0:
            roles[pid] = "protagonist"
        elif position == 1:
            roles[pid] = "antagonist"
        else:
            roles[pid] = EXTRA_ROLES[(position - 2) % len(EXTRA_ROLES)]
    return roles


def rotate_roles(room: BreakoutRoom) -> dict[str, BreakoutRole]:
    """Each role passes to the next member (the protagonist's to the second, and so on)."""
    members = room.members
    if len(members) < 2:
        return dict(room.roles)
    rotated: dict[str, BreakoutRole] = {}
    for index, pid in enumerate(members):
        previous = members[index - 1]
        if previous in room.roles:
            rotated[pid] = room.roles[previous]
    return rotated


def swap_roles(room: BreakoutRoom) -> dict[str, BreakoutRole] | None:
    """The room's roles with protagonist and antagonist exchanged (the others keep theirs);
    None when the room lacks one of the two."""
    protagonist = next((p for p, r in room.roles.items() if r == "protagonist"), None)
    antagonist = next((p for p, r in room.roles.items() if r == "antagonist"), None)
    if protagonist is None or antagonist is None:
        return None
    return {**room.roles, protagonist: "antagonist", antagonist: "protagonist"}


def explicit_rooms(planned: Sequence[PlannedRoom]) -> tuple[BreakoutRoom, ...]:
    return tuple(
        BreakoutRoom(
            id=f"r{number}",
            name=p.name,
            scenario=p.scenario,
            members=p.participant_ids,
            roles=dict(p.roles),
        )
        for number, p in enumerate(planned, start=1)
    )


def check_plan(state: SessionState, plan: BreakoutPlan) -> Rejected | None:
    """Why `plan` cannot be used in `state`, if it cannot."""
    if not 1 <= plan.minutes <= MAX_MINUTES:
        return Rejected("invalid", f"minutes must be between 1 and {MAX_MINUTES}")
    if plan.rooms:
        if len(plan.rooms) > MAX_ROOMS:
            return Rejected("invalid", f"at most {MAX_ROOMS} rooms")
        known = set(state.invitees) | set(state.participants)
        seen: set[str] = set()
        for room in plan.rooms:
            if not room.name.strip():
                return Rejected("invalid", "every room needs a name")
            for pid in room.participant_ids:
                if pid not in known:
                    return Rejected("not_found", "a planned member is not in this session")
                if pid in seen:
                    return Rejected("invalid", "a participant can be in only one room")
                seen.add(pid)
            if set(room.roles) - set(room.participant_ids):
                return Rejected("invalid", "roles may be given only to the room's members")
        return None
    if not 1 <= plan.auto_count <= MAX_ROOMS:
        return Rejected("invalid", f"give rooms, or an auto count from 1 to {MAX_ROOMS}")
    return None


# -- decide ---------------------------------------------------------------------------------


def decide(
    state: SessionState, command: c.Command, actor: c.Actor, now: datetime
) -> Sequence[e.Event] | Rejected:
    """Events for a breakout command (rights already checked by policy)."""
    b = state.breakouts
    match command:
        case c.SaveBreakoutPlan():
            refused = check_plan(state, command.plan)
            if refused is not None:
                return refused
            return [e.BreakoutPlanSaved(at=now, plan=command.plan, by=actor.id)]
        case c.OpenBreakouts():
            if b.open:
                return Rejected("conflict", "breakouts are already open")
            plan = command.plan or b.saved
            if plan is None:
                return Rejected("not_found", "no breakout plan is saved")
            refused = check_plan(state, plan)
            if refused is not None:
                return refused
            if plan.rooms:
                rooms = explicit_rooms(plan.rooms)
            else:
                # Family members rehearse like clients; clinicians run the rooms; observers
                # (the invite role) stay with the clinicians.
                clients = [p.id for p in state.admitted() if not enters_directly(p.role)]
                if not clients:
                    return Rejected("conflict", "no clients in the session to split")
                rooms = auto_rooms(clients, plan.auto_count, plan.auto_strategy,
                                   plan.scenario, command.seed)
            ends_at = now + timedelta(minutes=plan.minutes)
            return [e.BreakoutsOpened(at=now, rooms=rooms, ends_at=ends_at, by=actor.id)]
        case c.MoveToRoom():
            target = state.participants.get(command.participant_id)
            if target is None or target.status != "admitted":
                return Rejected("not_found", "no such participant in the session")
            refused = _room_exists(b, command.room) or _not_aside(state, target.id)
            if refused is not None:
                return refused
            room = b.room(command.room)
            role = room.roles.get(target.id) if room is not None else None
            if room is not None and role is None and not enters_directly(target.role):
                role = "auxiliary"
            return [e.Moved(at=now, participant_id=target.id, room=command.room, role=role,
                            assign=not enters_directly(target.role), by=actor.id)]
        case c.VisitRoom():
            refused = _room_exists(b, command.room) or _not_aside(state, actor.id)
            if refused is not None:
                return refused
            return [e.Moved(at=now, participant_id=actor.id, room=command.room, role=None,
                            assign=False, by=actor.id)]
        case c.RotateRoles():
            if not b.open:
                return Rejected("conflict", "breakouts are not open")
            return [e.BreakoutRolesRotated(
                at=now, roles={r.id: rotate_roles(r) for r in b.rooms}, by=actor.id)]
        case c.SwapRoles():
            room = b.room(command.room) if b.open else None
            if room is None:
                return Rejected("not_found", "no such breakout room open")
            swapped = swap_roles(room)
            if swapped is None:
                return Rejected("conflict", "this room has no protagonist and antagonist to swap")
            # The rotation event with this one room's roles: the other rooms keep theirs.
            return [e.BreakoutRolesRotated(at=now, roles={room.id: swapped}, by=actor.id)]
        case c.ExtendBreakouts():
            if not b.open or b.ends_at is None or b.closing_at is not None:
                return Rejected("conflict", "breakouts are not running")
            if not 1 <= command.minutes <= MAX_MINUTES:
                return Rejected("invalid", f"minutes must be between 1 and {MAX_MINUTES}")
            base = max(b.ends_at, now)
            return [e.BreakoutsExtended(at=now, ends_at=base + timedelta(minutes=command.minutes),
                                        by=actor.id)]
        case c.CloseBreakouts():
            if not b.open:
                return Rejected("conflict", "breakouts are not open")
            closing_at = now + timedelta(seconds=max(0, command.grace_s))
            events: list[e.Event] = [e.BreakoutsClosing(at=now, closing_at=closing_at,
                                                        by=actor.id)]
            if command.grace_s <= 0:
                events.append(e.BreakoutsClosed(at=now))
            return events
        case c.Broadcast() | c.AskForHelp():
            return []
    return Rejected("invalid", "unknown command")


def _not_aside(state: SessionState, participant_id: str) -> Rejected | None:
    if state.aside_of(participant_id) is not None:
        return Rejected("conflict", "in an aside: close the aside first")
    return None


def _room_exists(b: Breakouts, room: str) -> Rejected | None:
    if room == MAIN_ROOM:
        return None
    if not b.open or b.room(room) is None:
        return Rejected("not_found", "no such breakout room")
    return None


def due(state: SessionState, now: datetime) -> Iterable[e.Event]:
    """Timer events whose time has come: the warning, the end of time, the close."""
    b = state.breakouts
    if not b.open or b.ends_at is None:
        return
    if b.closing_at is None:
        if not b.warned and now >= b.ends_at - WARNING_BEFORE:
            yield e.BreakoutWarningDue(at=now)
        if now >= b.ends_at:
            closing_at = b.ends_at + GRACE_WHEN_TIME_RUNS_OUT
            yield e.BreakoutsClosing(at=now, closing_at=closing_at, by=None)
            if now >= closing_at:
                yield e.BreakoutsClosed(at=now)
    elif now >= b.closing_at:
        yield e.BreakoutsClosed(at=now)


def deadline(state: SessionState) -> datetime | None:
    """The next breakout timer, for the runtime's sleep."""
    b = state.breakouts
    if not b.open or b.ends_at is None:
        return None
    if b.closing_at is not None:
        return b.closing_at
    return b.ends_at if b.warned else b.ends_at - WARNING_BEFORE


# -- apply ----------------------------------------------------------------------------------


def apply(state: SessionState, event: e.Event) -> SessionState:
    """The state after a breakout event."""
    b = state.breakouts
    parts = dict(state.participants)
    match event:
        case e.BreakoutPlanSaved():
            return replace(state, breakouts=replace(b, saved=event.plan))
        case e.BreakoutsOpened():
            b = replace(b, open=True, rooms=event.rooms, ends_at=event.ends_at, warned=False,
                        closing_at=None)
            for room in event.rooms:
                for pid in room.members:
                    p = parts.get(pid)
                    # Someone in an aside goes to the room when the aside closes.
                    if p is not None and p.status == "admitted" and not is_aside_room(p.room):
                        parts[pid] = replace(p, room=room.id,
                                             breakout_role=room.roles.get(pid))
            return replace(state, breakouts=b, participants=parts)
        case e.Moved():
            p = parts.get(event.participant_id)
            if p is not None:
                parts[p.id] = replace(p, room=event.room, breakout_role=event.role)
            if event.assign:
                b = replace(b, rooms=_reassign(b.rooms, event.participant_id, event.room,
                                               event.role))
            return replace(state, breakouts=b, participants=parts)
        case e.BreakoutRolesRotated():
            rooms = tuple(replace(r, roles=dict(event.roles.get(r.id, r.roles)))
                          for r in b.rooms)
            for room in rooms:
                for pid in room.members:
                    p = parts.get(pid)
                    if p is not None and p.room == room.id:
                        parts[pid] = replace(p, breakout_role=room.roles.get(pid))
            return replace(state, breakouts=replace(b, rooms=rooms), participants=parts)
        case e.BreakoutsExtended():
            return replace(state, breakouts=replace(b, ends_at=event.ends_at, warned=False))
        case e.BreakoutWarningDue():
            return replace(state, breakouts=replace(b, warned=True))
        case e.BreakoutsClosing():
            return replace(state, breakouts=replace(b, closing_at=event.closing_at))
        case e.BreakoutsClosed():
            for pid, p in parts.items():
                if is_aside_room(p.room):
                    continue  # an aside outlives the breakouts (it closes back to main)
                if p.room is not None and p.room != MAIN_ROOM:
                    parts[pid] = replace(p, room=MAIN_ROOM, breakout_role=None)
                elif p.breakout_role is not None:
                    parts[pid] = replace(p, breakout_role=None)
            closed = Breakouts(saved=b.saved)
            return replace(state, breakouts=closed, participants=parts)
    return state


def _reassign(
    rooms: tuple[BreakoutRoom, ...], pid: str, target: str, role: BreakoutRole | None
) -> tuple[BreakoutRoom, ...]:
    """Move `pid`'s assignment to `target` (main: no assignment)."""
    result = []
    for room in rooms:
        members = tuple(m for m in room.members if m != pid)
        roles = {k: v for k, v in room.roles.items() if k != pid}
        if room.id == target:
            members += (pid,)
            if role is not None:
                roles[pid] = role
        result.append(replace(room, members=members, roles=roles))
    return tuple(result)


def placement(state: SessionState, participant: Participant) -> tuple[str, BreakoutRole | None]:
    """Where a newly admitted participant goes: its assigned open room, else main."""
    room = state.breakouts.assignment(participant.id)
    if room is None:
        return MAIN_ROOM, None
    return room.id, room.roles.get(participant.id)
