"""What someone asks the session to do, and who is asking.

Commands are intentions: the core may refuse them. Only `core.decide` turns a command into
events, after `policy` has checked the actor's right to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from signaling.core.model import (
    BreakoutPlan,
    CheckInLocation,
    MuteKind,
    Program,
    Role,
    Service,
    SessionKind,
)

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
    service: Service | None = None
    """None: the kind's default (`model.DEFAULT_SERVICE`)."""
    checkin_required: bool = False
    observers_may_chat: bool = False
    e2ee: bool = False
    """End-to-end encrypted media: connections without a public key are refused."""


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
    resume: str = ""
    """Hash of the resume secret the socket presented ("" when none): the same browser
    coming back after a drop the server has not noticed yet."""
    device: str = ""
    """Hash of the secret the server gave this socket: its device, if it gets the seat."""
    public_key: str = ""
    """The connection's E2EE public key (base64url P-256 point; "" when it has none)."""


@dataclass(frozen=True)
class Disconnect:
    """A socket of the participant went away: the seat's (`device` = its hash, or "" when
    unknown) or a second device's that was waiting."""

    participant_id: str
    device: str = ""


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
class CheckIn:
    """A client or family member says where they are and what they consent to (again:
    the answers replace the earlier ones)."""

    location: CheckInLocation
    region: str
    consent: bool
    pledge: bool = False


@dataclass(frozen=True)
class RaiseHand:
    raised: bool


@dataclass(frozen=True)
class Chat:
    """Checked by the core for rights, never stored: chat is not part of the record."""

    text: str


@dataclass(frozen=True)
class MediaKeyEnvelope:
    """One media key, wrapped by the sender's browser to one roommate's public key: the
    server can route it but not open it (docs/security.md, end-to-end encryption)."""

    to: str
    """The recipient's handle."""
    epoch: int
    kid: str
    wrapped: str


@dataclass(frozen=True)
class DeliverMediaKeys:
    """Media keys for roommates: checked by the core, routed by the edge, never stored."""

    keys: tuple[MediaKeyEnvelope, ...]


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
    flows: bool = False
    """The relay also reports when each kind flows (`ReportMediaFlow`): attendance then
    counts minutes of media from those reports (False: a caller that does not)."""


@dataclass(frozen=True)
class ReportMediaFlow:
    """The relay's sampler saw a kind start or stop flowing from a participant: allowed
    (not muted) RTP arriving, or no longer. `ago_s`: how long before now it changed (a stop
    is dated at the last sample that still saw packets)."""

    participant_id: str
    kind: MuteKind
    flowing: bool
    ago_s: float = 0.0


@dataclass(frozen=True)
class ReportTalk:
    """The relay measured how long participants spoke since its previous report."""

    seconds: Mapping[str, float]


@dataclass(frozen=True)
class SetSharePolicy:
    """Whether clients and family members may share a screen (clinicians always may)."""

    clients_may_share: bool


@dataclass(frozen=True)
class StartShare:
    """Share a screen in one's room (refused `conflict` while someone else shares there)."""


@dataclass(frozen=True)
class StopShare:
    """End a share: one's own (`participant_id` None or one's own id), or, for clinicians,
    anyone's."""

    participant_id: str | None = None


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
    keep_pending: frozenset[str] = frozenset()
    """Participants whose waiting second device's socket the nodes still hold."""


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
class SwapRoles:
    """Role reversal in one room: its protagonist and antagonist change places."""

    room: str


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


@dataclass(frozen=True)
class SendToWaiting:
    """A clinician sends an admitted client (or family member) back to the waiting room."""

    participant_id: str


@dataclass(frozen=True)
class OpenAside:
    """The calling clinician takes one admitted client into a private room of their own."""

    participant_id: str


@dataclass(frozen=True)
class CloseAside:
    """End an aside: the caller's own, else the one `participant_id` (its client or its
    clinician) is in, else the only one open. Both go back where they were."""

    participant_id: str | None = None


@dataclass(frozen=True)
class DecideSecondDevice:
    """A therapist lets a participant's waiting second device take the seat, or keeps the
    first one."""

    participant_id: str
    allow: bool


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
    | CheckIn
    | Chat
    | DeliverMediaKeys
    | Signal
    | ReportMedia
    | ReportMediaFlow
    | ReportTalk
    | SetSharePolicy
    | StartShare
    | StopShare
    | Tick
    | Recover
    | SaveBreakoutPlan
    | OpenBreakouts
    | MoveToRoom
    | VisitRoom
    | RotateRoles
    | SwapRoles
    | ExtendBreakouts
    | CloseBreakouts
    | Broadcast
    | AskForHelp
    | MessageWaiting
    | DecideSecondDevice
    | SendToWaiting
    | OpenAside
    | CloseAside
)
