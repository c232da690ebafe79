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
    CheckInLocation,
    MuteKind,
    Program,
    Role,
    Service,
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
    service: Service | None = None
    """None in records from before sessions had a service: the kind's default applies."""
    checkin_required: bool = False
    observers_may_chat: bool = False
    e2ee: bool = False


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
    device: str = ""
    """Hash of its connection's resume secret ("" in records from before seats had one)."""
    public_key: str = ""
    """Its connection's E2EE public key (kept in e2ee sessions only: members' browsers
    wrap media keys to it, and the safety code is computed over these)."""


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
    device: str = ""
    """Hash of the new connection's resume secret: the seat's device from now on."""
    public_key: str = ""


@_register("second_device_arrived")
@dataclass(frozen=True, kw_only=True)
class SecondDeviceArrived(Event):
    """A participant who is connected connected again from a device that could not prove
    it holds the seat: it waits for a therapist (or for the first one to go away)."""

    participant_id: str
    device: str
    """Hash of the waiting connection's resume secret."""
    since: datetime
    """When this device began to wait (earlier than `at` when the same waiting device came
    back, or was placed again after a takeover)."""
    token_id: str = ""
    public_key: str = ""


@_register("second_device_allowed")
@dataclass(frozen=True, kw_only=True)
class SecondDeviceAllowed(Event):
    """The waiting device took the seat; the first connection is closed."""

    participant_id: str
    device: str
    by: str | None
    """The therapist who allowed it, or None when the first connection had gone away."""


@_register("second_device_refused")
@dataclass(frozen=True, kw_only=True)
class SecondDeviceRefused(Event):
    """A therapist kept the seat on the first device; the waiting one is closed."""

    participant_id: str
    device: str
    by: str


@_register("second_device_withdrawn")
@dataclass(frozen=True, kw_only=True)
class SecondDeviceWithdrawn(Event):
    """The waiting device went away (closed, left, or its invite was revoked)."""

    participant_id: str
    device: str


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


@_register("checked_in")
@dataclass(frozen=True, kw_only=True)
class CheckedIn(Event):
    """A client's or family member's check-in (the latest one counts): where they are
    (place of service), the region (state or province) and their consent to telehealth."""

    participant_id: str
    location: CheckInLocation
    region: str
    consent: bool
    pledge: bool = False
    """The group's confidentiality pledge was ticked."""


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
    """The relay saw RTP of these kinds from the participant (muted or not)."""

    participant_id: str
    kinds: frozenset[MuteKind]
    flows: bool = False
    """True: the relay that saw it also reports when each kind flows (`MediaFlowChanged`),
    so attendance counts minutes of media from those. False in records from before: the
    participant's `modality` then follows these kinds alone (docs/records.md)."""


@_register("media_flow_changed")
@dataclass(frozen=True, kw_only=True)
class MediaFlowChanged(Event):
    """A kind of the participant's media started or stopped reaching the relay allowed (not
    muted, so forwarded): the basis of `minutes_audio`, `minutes_video` and `modality`."""

    participant_id: str
    kind: MuteKind
    flowing: bool
    since: datetime
    """When it changed (at or before `at`): a stop is the last sample that saw packets."""


@_register("sent_to_waiting")
@dataclass(frozen=True, kw_only=True)
class SentToWaiting(Event):
    """A clinician sent an admitted participant back to the waiting room: its presence
    ends here; it waits (and counts as waiting) until admitted again."""

    participant_id: str
    by: str


@_register("aside_opened")
@dataclass(frozen=True, kw_only=True)
class AsideOpened(Event):
    """A clinician and one client went into a private room (`aside_id`, `aside-<n>`)."""

    aside_id: str
    participant_id: str
    clinician_id: str
    clinician_from: str
    """The clinician's room before: where it goes back to (if that room still exists)."""
    by: str


@_register("aside_closed")
@dataclass(frozen=True, kw_only=True)
class AsideClosed(Event):
    """The aside ended: both went back (the client to its assigned room, or main)."""

    aside_id: str
    by: str


@_register("share_policy_changed")
@dataclass(frozen=True, kw_only=True)
class SharePolicyChanged(Event):
    """A clinician let clients (and family members) share a screen, or stopped letting
    them (clinicians always may)."""

    clients_may_share: bool
    by: str


@_register("share_started")
@dataclass(frozen=True, kw_only=True)
class ShareStarted(Event):
    """The participant shares a screen in its room (the relay forwards its screen track)."""

    participant_id: str
    room: str


@_register("share_stopped")
@dataclass(frozen=True, kw_only=True)
class ShareStopped(Event):
    """The share ended: the sharer stopped it, or a clinician did (`by`)."""

    participant_id: str
    by: str


@_register("talk_time")
@dataclass(frozen=True, kw_only=True)
class TalkTime(Event):
    """Seconds each participant spoke since the relay's previous report (audio level above
    the speech threshold, docs/media.md): one event per report, only speakers in it."""

    seconds: Mapping[str, float]


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
