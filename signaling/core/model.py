"""The session's state as the core sees it: frozen values, changed only by `core.apply`.

Everything here is plain data so that replaying the ledger rebuilds exactly the state a
live session had, and so that tests can build states by hand.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

Role = Literal["client", "therapist"]
Status = Literal["waiting", "admitted", "denied", "removed", "left"]
SessionKind = Literal["group", "individual", "family"]
Program = Literal["IOP", "PHP", "OP"]
MuteKind = Literal["audio", "video"]
BreakoutRole = Literal["protagonist", "antagonist", "auxiliary", "double", "observer"]

MAIN_ROOM = "main"
"""The room every admitted participant is in unless a breakout says otherwise."""


@dataclass(frozen=True)
class SessionInfo:
    """What staff scheduled; fixed when the session is created."""

    id: str
    title: str
    kind: SessionKind
    program: Program
    starts_at: datetime
    minutes: int
    reconnect_grace_s: int
    """How long a dropped participant keeps its place; recorded so replay decides alike."""


@dataclass(frozen=True)
class Invitee:
    """Someone staff invited: the basis of 'expected but absent' and of no-show rows."""

    id: str
    name: str
    role: Role


@dataclass(frozen=True)
class BreakoutRoom:
    """One role-play room: who is assigned to it, in which role, rehearsing what.

    `members` is the assignment (the order is the rotation order); where a participant is
    right now is `Participant.room`, which differs while a therapist visits or after a move.
    """

    id: str
    name: str
    scenario: str
    members: tuple[str, ...]
    roles: Mapping[str, BreakoutRole]


@dataclass(frozen=True)
class PlannedRoom:
    """A room of a plan, before it is opened (members may not have arrived yet)."""

    name: str
    scenario: str
    participant_ids: tuple[str, ...]
    roles: Mapping[str, BreakoutRole]


@dataclass(frozen=True)
class BreakoutPlan:
    """What a therapist (or staff, before the session) prepared: explicit rooms or auto."""

    minutes: int
    rooms: tuple[PlannedRoom, ...] = ()
    auto_count: int = 0
    auto_strategy: Literal["random", "balanced"] = "balanced"
    scenario: str = ""
    """The scenario every auto-planned room gets."""


@dataclass(frozen=True)
class Breakouts:
    """The breakout rooms of a session, open or not, and the plan saved for later."""

    open: bool = False
    rooms: tuple[BreakoutRoom, ...] = ()
    ends_at: datetime | None = None
    warned: bool = False
    closing_at: datetime | None = None
    saved: BreakoutPlan | None = None

    def room(self, room_id: str) -> BreakoutRoom | None:
        return next((r for r in self.rooms if r.id == room_id), None)

    def assignment(self, participant_id: str) -> BreakoutRoom | None:
        """The open room `participant_id` is assigned to, if any."""
        if not self.open:
            return None
        return next((r for r in self.rooms if participant_id in r.members), None)


@dataclass(frozen=True)
class Participant:
    """One person's standing in the session."""

    id: str
    name: str
    role: Role
    status: Status
    arrival_no: int
    """Order of first arrival: keeps the waiting list in the order people came."""
    room: str | None = None
    connected: bool = True
    disconnected_at: datetime | None = None
    waiting_since: datetime | None = None
    muted_audio: bool = False
    muted_video: bool = False
    hand: bool = False
    breakout_role: BreakoutRole | None = None
    published: frozenset[MuteKind] = frozenset()
    token_id: str = ""
    """The invite its current (or last) connection came with: revoking it removes them."""
    """Media kinds the relay has actually seen from this participant."""

    @property
    def present(self) -> bool:
        """Admitted and holding a place in a room (connected, or within the grace period)."""
        return self.status == "admitted"


@dataclass(frozen=True)
class SessionState:
    """A whole session at one point of its ledger."""

    info: SessionInfo | None = None
    seq: int = 0
    """Number of ledger events applied: the `rev` receivers see."""
    locked: bool = False
    ended: bool = False
    ended_at: datetime | None = None
    ended_by_server: bool = False
    """True when the server closed the session as abandoned, not a therapist."""
    invitees: Mapping[str, Invitee] = field(default_factory=dict)
    revoked_tokens: frozenset[str] = frozenset()
    issued_tokens: Mapping[str, str] = field(default_factory=dict)
    """Invite token id -> participant id: what this session's revocations may name."""
    participants: Mapping[str, Participant] = field(default_factory=dict)
    breakouts: Breakouts = field(default_factory=Breakouts)
    arrivals: int = 0
    last_event_at: datetime | None = None

    @property
    def exists(self) -> bool:
        return self.info is not None

    def waiting(self) -> list[Participant]:
        """The waiting room in arrival order."""
        return sorted(
            (p for p in self.participants.values() if p.status == "waiting"),
            key=lambda p: p.arrival_no,
        )

    def admitted(self) -> list[Participant]:
        return sorted(
            (p for p in self.participants.values() if p.status == "admitted"),
            key=lambda p: p.arrival_no,
        )
