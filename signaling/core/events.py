"""Everything that can happen in a session, as immutable facts.

Events are what the ledger stores and what attendance is projected from, so each one
carries its own time (`at`) and only the facts needed to replay it: never a derived value
that a later version of the core might compute differently.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from signaling.core.codec import decode, encode, field_types
from signaling.core.model import (
    BreakoutPlan,
    BreakoutRole,
    BreakoutRoom,
    MuteKind,
    Program,
    Role,
    SessionKind,
)


@dataclass(frozen=True, kw_only=True)
class Event:
    """Base of every core event."""

    type_name: ClassVar[str] = ""
    at: datetime


_REGISTRY: dict[str, type[Event]] = {}
_E = typing.TypeVar("_E", bound=type[Event])


def _register(name: str) -> typing.Callable[[_E], _E]:
    def wrap(cls: _E) -> _E:
        cls.type_name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


@_register("session_created")
@dataclass(frozen=True, kw_only=True)
class SessionCreated(Event):
    session_id: str
    title: str
    kind: SessionKind
    program: Program
    starts_at: datetime
    minutes: int
    reconnect_grace_s: int
    created_by: str


@_register("invite_issued")
@dataclass(frozen=True, kw_only=True)
class InviteIssued(Event):
    participant_id: str
    display_name: str
    role: Role
    token_id: str
    expires_at: datetime
    issued_by: str


@_register("invite_revoked")
@dataclass(frozen=True, kw_only=True)
class InviteRevoked(Event):
    token_id: str
    revoked_by: str


@_register("arrived")
@dataclass(frozen=True, kw_only=True)
class Arrived(Event):
    """A participant connected as a new arrival (first time, or after leaving)."""

    participant_id: str
    name: str
    role: Role
    token_id: str = ""
    """The invite it came with ("" in records from before this was kept)."""


@_register("admitted")
@dataclass(frozen=True, kw_only=True)
class Admitted(Event):
    participant_id: str
    by: str | None
    """The admitting therapist, or None when a therapist entered directly."""


@_register("denied")
@dataclass(frozen=True, kw_only=True)
class Denied(Event):
    participant_id: str
    by: str
    reason: str


@_register("removed")
@dataclass(frozen=True, kw_only=True)
class Removed(Event):
    participant_id: str
    by: str


@_register("disconnected")
@dataclass(frozen=True, kw_only=True)
class Disconnected(Event):
    """The participant's connection dropped; its place is kept for the grace period."""

    participant_id: str


@_register("reconnected")
@dataclass(frozen=True, kw_only=True)
class Reconnected(Event):
    participant_id: str
    token_id: str = ""


@_register("grace_expired")
@dataclass(frozen=True, kw_only=True)
class GraceExpired(Event):
    """A dropped participant did not come back in time: it has left, as of `left_at`."""

    participant_id: str
    left_at: datetime


@_register("left")
@dataclass(frozen=True, kw_only=True)
class Left(Event):
    participant_id: str


@_register("mute_changed")
@dataclass(frozen=True, kw_only=True)
class MuteChanged(Event):
    participant_id: str
    kind: MuteKind
    muted: bool
    by: str


@_register("hand_changed")
@dataclass(frozen=True, kw_only=True)
class HandChanged(Event):
    participant_id: str
    raised: bool


@_register("lock_changed")
@dataclass(frozen=True, kw_only=True)
class LockChanged(Event):
    locked: bool
    by: str


@_register("session_ended")
@dataclass(frozen=True, kw_only=True)
class SessionEnded(Event):
    by: str | None
    """The therapist who ended it, or None when the server closed an abandoned session."""


@_register("media_published")
@dataclass(frozen=True, kw_only=True)
class MediaPublished(Event):
    """The relay saw RTP of these kinds from the participant (basis of `modality`)."""

    participant_id: str
    kinds: frozenset[MuteKind]


@_register("breakout_plan_saved")
@dataclass(frozen=True, kw_only=True)
class BreakoutPlanSaved(Event):
    plan: BreakoutPlan
    by: str


@_register("breakouts_opened")
@dataclass(frozen=True, kw_only=True)
class BreakoutsOpened(Event):
    """Rooms as opened (auto plans already resolved, so replay needs no randomness)."""

    rooms: tuple[BreakoutRoom, ...]
    ends_at: datetime
    by: str


@_register("moved")
@dataclass(frozen=True, kw_only=True)
class Moved(Event):
    """A participant went to a room (a breakout id or main): moved by a therapist, or a
    therapist visiting. `assign` makes it the participant's place on reconnect too."""

    participant_id: str
    room: str
    role: BreakoutRole | None
    assign: bool
    by: str


@_register("breakout_roles_rotated")
@dataclass(frozen=True, kw_only=True)
class BreakoutRolesRotated(Event):
    roles: Mapping[str, Mapping[str, BreakoutRole]]
    """Room id -> participant id -> new role."""
    by: str


@_register("breakouts_extended")
@dataclass(frozen=True, kw_only=True)
class BreakoutsExtended(Event):
    ends_at: datetime
    by: str


@_register("breakout_warning_due")
@dataclass(frozen=True, kw_only=True)
class BreakoutWarningDue(Event):
    """One minute before the end: recorded so a restart does not warn twice."""


@_register("breakouts_closing")
@dataclass(frozen=True, kw_only=True)
class BreakoutsClosing(Event):
    closing_at: datetime
    by: str | None
    """The therapist who closed them, or None when their time ran out."""


@_register("breakouts_closed")
@dataclass(frozen=True, kw_only=True)
class BreakoutsClosed(Event):
    """Everyone is back in the main room."""


def event_types() -> Mapping[str, type[Event]]:
    """Every registered event type by its stored name."""
    return dict(_REGISTRY)


def to_record(event: Event) -> dict[str, Any]:
    """The JSON-ready form stored in the ledger."""
    record: dict[str, Any] = {"type": event.type_name}
    for f in dataclasses.fields(event):
        record[f.name] = encode(getattr(event, f.name))
    return record


def from_record(record: Mapping[str, Any]) -> Event:
    """Rebuild an event from its stored form; raises ValueError for unknown or bad records."""
    name = record.get("type")
    cls = _REGISTRY.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(f"unknown event type {name!r}")
    hints = field_types(cls)
    kwargs = {
        f.name: decode(hints[f.name], record[f.name])
        for f in dataclasses.fields(cls)
        if f.name in record
    }
    return cls(**kwargs)
