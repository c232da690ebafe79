"""What someone asks the session to do, and who is asking.

Commands are intentions: the core may refuse them. Only `core.decide` turns a command into
events, after `policy` has checked the actor's right to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from signaling.core.model import BreakoutPlan, MuteKind, Program, Role, SessionKind

ActorKind = Literal["participant", "staff", "system"]


@dataclass(frozen=True)
class Actor:
    """Who issues a command: a connected participant, a staff API key, or the server."""

    kind: ActorKind
    id: str
    role: Role | None = None

    @classmethod
    def participant(cls, participant_id: str, role: Role) -> Actor:
        return cls("participant", participant_id, role)

    @classmethod
    def staff(cls, key_id: str) -> Actor:
        return cls("staff", key_id)


SYSTEM = Actor("system", "system")


@dataclass(frozen=True)
class CreateSession:
    session_id: str
    title: str
    kind: SessionKind
    program: Program
    starts_at: datetime
    minutes: int
    reconnect_grace_s: int


@dataclass(frozen=True)
class IssueInvite:
    participant_id: str
    display_name: str
    role: Role
    token_id: str
    expires_at: datetime


@dataclass(frozen=True)
class RevokeInvite:
    token_id: str


@dataclass(frozen=True)
class Connect:
    """A socket presented a valid join token for this session."""

    participant_id: str
    name: str
    role: Role
    token_id: str


@dataclass(frozen=True)
class Disconnect:
    participant_id: str


@dataclass(frozen=True)
class Leave:
    pass


@dataclass(frozen=True)
class Admit:
    participant_id: str


@dataclass(frozen=True)
class AdmitAll:
    pass


@dataclass(frozen=True)
class Deny:
    participant_id: str
    reason: str


@dataclass(frozen=True)
class Remove:
    participant_id: str


@dataclass(frozen=True)
class Mute:
    participant_id: str
    kind: MuteKind
    muted: bool


@dataclass(frozen=True)
class Lock:
    locked: bool


@dataclass(frozen=True)
class End:
    pass


@dataclass(frozen=True)
class RaiseHand:
    raised: bool


@dataclass(frozen=True)
class Chat:
    """Checked by the core for rights, never stored: chat is not part of the record."""

    text: str


@dataclass(frozen=True)
class Signal:
    """An SDP for the relay; the core only checks that the sender has a media path."""

    type: Literal["offer", "answer"]
    sdp: str


@dataclass(frozen=True)
class ReportMedia:
    """The relay saw RTP of these kinds from a participant."""

    participant_id: str
    kinds: frozenset[MuteKind]


@dataclass(frozen=True)
class Tick:
    """Time passed: expire grace periods and close abandoned sessions that are due."""


@dataclass(frozen=True)
class Recover:
    """A node took the session over (after a restart, a crash or a drain): every connection
    the ledger shows is gone as of now, except the participants in `keep`, whose sockets
    the nodes still hold (so a failover does not write a false disconnect into attendance).
    """

    keep: frozenset[str] = frozenset()


@dataclass(frozen=True)
class SaveBreakoutPlan:
    """Keep a plan on the session (staff before it starts, or a therapist) to open later."""

    plan: BreakoutPlan


@dataclass(frozen=True)
class OpenBreakouts:
    """Open `plan`, or the saved plan when `plan` is None.

    `seed` drives auto planning: chosen by the gateway, so `decide` stays deterministic.
    """

    plan: BreakoutPlan | None
    seed: int


@dataclass(frozen=True)
class MoveToRoom:
    participant_id: str
    room: str


@dataclass(frozen=True)
class VisitRoom:
    room: str


@dataclass(frozen=True)
class RotateRoles:
    pass


@dataclass(frozen=True)
class ExtendBreakouts:
    minutes: int


@dataclass(frozen=True)
class CloseBreakouts:
    grace_s: int


@dataclass(frozen=True)
class Broadcast:
    """A text for every room; delivered as a notice, not recorded (like chat)."""

    text: str


@dataclass(frozen=True)
class MessageWaiting:
    """A therapist's word to the waiting room (one client, or all): a notice, not recorded."""

    text: str
    participant_id: str | None


@dataclass(frozen=True)
class AskForHelp:
    """A client asks the therapists for help; they get a notice naming the room."""


Command = (
    CreateSession
    | IssueInvite
    | RevokeInvite
    | Connect
    | Disconnect
    | Leave
    | Admit
    | AdmitAll
    | Deny
    | Remove
    | Mute
    | Lock
    | End
    | RaiseHand
    | Chat
    | Signal
    | ReportMedia
    | Tick
    | Recover
    | SaveBreakoutPlan
    | OpenBreakouts
    | MoveToRoom
    | VisitRoom
    | RotateRoles
    | ExtendBreakouts
    | CloseBreakouts
    | Broadcast
    | AskForHelp
    | MessageWaiting
)
