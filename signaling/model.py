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
    invitees: Mapping[str, Invitee] = field(default_factory=dict)
    revoked_tokens: frozenset[str] = frozenset()
    participants: Mapping[str, Participant] = field(default_factory=dict)
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
