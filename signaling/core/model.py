"""The session's state as the core sees it: frozen values, changed only by `core.apply`.

Everything here is plain data so that replaying the ledger rebuilds exactly the state a
live session had, and so that tests can build states by hand.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

Role = Literal["client", "therapist", "family", "co_therapist", "observer"]
"""`client`: the patient; `family`: a relative taking part like a client (waits, is admitted,
is not billed); `therapist`: the leading clinician; `co_therapist`: a second clinician with
the same powers (admitted at once, sees what therapists see, runs every therapist command);
`observer`: a trainee or supervisor, disclosed to the group, who listens and watches only
(admitted at once like staff, never sends media, runs no therapist command, not billed)."""
Status = Literal["waiting", "admitted", "denied", "removed", "left"]
SessionKind = Literal["group", "individual", "family"]
Service = Literal[
    "group_psychotherapy",
    "family_psychotherapy",
    "individual_psychotherapy",
    "medication_management",
    "psychoeducation",
    "case_management",
    "intake",
    "crisis",
]
"""What is delivered (and billed): staff pick it; without one it follows the session's kind."""
CheckInLocation = Literal["home", "other"]
Program = Literal["IOP", "PHP", "OP"]
MuteKind = Literal["audio", "video"]
BreakoutRole = Literal["protagonist", "antagonist", "auxiliary", "double", "observer"]

MAIN_ROOM = "main"
"""The room every admitted participant is in unless a breakout says otherwise."""

CLINICIAN_ROLES: frozenset[Role] = frozenset({"therapist", "co_therapist"})
"""Roles that run the session. Nothing is reserved to the lead `therapist` today: a
co-therapist can do everything a therapist can (docs/protocol.md, "Roles")."""

DEFAULT_SERVICE: Mapping[SessionKind, Service] = {
    "group": "group_psychotherapy",
    "family": "family_psychotherapy",
    "individual": "individual_psychotherapy",
}


def is_clinician(role: str | None) -> bool:
    """True for the roles that run the session (admitted at once, see real ids, may admit,
    mute, remove...); False for clients and family members, who wait and see handles."""
    return role in CLINICIAN_ROLES


def is_observer(role: str | None) -> bool:
    """The invite role `observer` (not the breakout role of the same name: that one is held
    in a role-play room only, by a client)."""
    return role == "observer"


def enters_directly(role: str | None) -> bool:
    """Staff (clinicians and observers) are admitted at once, also into a locked session;
    clients and family members wait to be admitted."""
    return is_clinician(role) or is_observer(role)


def is_billable(role: str | None) -> bool:
    """Only the patient's attendance is billed: not a relative's, not a clinician's."""
    return role == "client"


@dataclass(frozen=True)
class CheckInAnswers:
    """A participant's latest check-in: where they are, and what they agreed to."""

    location: CheckInLocation
    region: str
    """State or province code (`CA`, `ON`, or ISO 3166-2 like `US-CA`)."""
    consent: bool
    """Consent to receive care by telehealth (a "no" is recorded as such)."""
    at: datetime
    pledge: bool = False
    """The group's confidentiality pledge, ticked (asked in group sessions only)."""


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
    service: Service = "group_psychotherapy"
    """Set from the `SessionCreated` event (its kind's default for records without one)."""
    checkin_required: bool = False
    """Clients and family members must check in before a therapist can admit them."""
    observers_may_chat: bool = False
    """Observers (the invite role) may send chat; without it they only read it."""
    e2ee: bool = False
    """Media is end-to-end encrypted in the browsers (core/e2ee.py): every connection must
    bring a public key, and media keys travel wrapped to those keys."""


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


ASIDE_PREFIX = "aside-"
"""Room ids of asides (`aside-1`, `aside-2`, … in order of opening): never a breakout id."""


def is_aside_room(room: str | None) -> bool:
    return room is not None and room.startswith(ASIDE_PREFIX)


@dataclass(frozen=True)
class Aside:
    """A clinician and one client in a private room of their own, while the group goes on."""

    id: str
    participant_id: str
    """The client (or family member) taken aside."""
    clinician_id: str
    since: datetime
    clinician_from: str
    """The clinician's room when it opened: where the clinician goes back to, if it still
    exists then (the client goes back to its assigned room, or main)."""


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
    """`muted_audio`/`muted_video`: the effective mutes (the relay drops that kind): the
    participant's own mute or a clinician's, whichever holds."""
    muted_self: frozenset[MuteKind] = frozenset()
    """Kinds the participant muted themselves: only they lift it (a clinician cannot
    switch someone's microphone back on)."""
    muted_by_clinician: frozenset[MuteKind] = frozenset()
    """Kinds a clinician muted: a client or family member cannot lift it."""
    hand: bool = False
    breakout_role: BreakoutRole | None = None
    published: frozenset[MuteKind] = frozenset()
    token_id: str = ""
    """The invite its current (or last) connection came with: revoking it removes them."""
    """Media kinds the relay has actually seen from this participant."""
    device: str = ""
    """Hash of the seat's resume secret: a reconnect presenting it is the same browser."""
    pending_device: str = ""
    """Hash of a second device's secret while it waits for a therapist ("" when none).
    Only while `connected`: if the seat's connection goes, the waiting device takes it."""
    pending_since: datetime | None = None
    pending_token_id: str = ""
    """The invite the waiting device came with (the seat's once it is allowed)."""
    public_key: str = ""
    """The seat's connection's E2EE public key ("" outside e2ee sessions)."""
    pending_public_key: str = ""
    """The waiting second device's public key (the seat's once it is allowed)."""
    checkin: CheckInAnswers | None = None
    """The latest check-in (kept across a rejoin in the same session), None before one."""
    flowing: frozenset[MuteKind] = frozenset()
    """Kinds the relay last reported flowing (allowed RTP arriving, `MediaFlowChanged`):
    kept so that each change is recorded once."""
    sharing_room: str | None = None
    """The room this participant shares its screen in (`ShareStarted`), None when not
    sharing. A share holds only while it is the participant's room and the participant is
    present and connected (`sharing`): moving, dropping or leaving ends it."""

    @property
    def handle(self) -> str:
        """What other clients call this person: ids may be record numbers, handles are not.

        Derived from the order of first arrival, so every node and every replay of the
        ledger gives the same person the same handle for the whole session."""
        return f"p{self.arrival_no}"

    @property
    def present(self) -> bool:
        """Admitted and holding a place in a room (connected, or within the grace period)."""
        return self.status == "admitted"

    @property
    def sharing(self) -> bool:
        """Sharing a screen now, in the room it is in."""
        return (self.sharing_room is not None and self.sharing_room == self.room
                and self.present and self.connected)


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
    asides: tuple[Aside, ...] = ()
    """Asides open now (at most one per clinician, one per client)."""
    asides_opened: int = 0
    """How many asides this session opened: numbers the next one's room id."""
    arrivals: int = 0
    last_event_at: datetime | None = None
    clients_may_share: bool = False
    """Clients and family members may share a screen (`SharePolicyChanged`; clinicians
    always may)."""
    talk: Mapping[str, float] = field(default_factory=dict)
    """Seconds each participant spoke, as the relay measured them (`TalkTime`)."""

    @property
    def exists(self) -> bool:
        return self.info is not None

    def waiting(self) -> list[Participant]:
        """The waiting room in arrival order."""
        return sorted(
            (p for p in self.participants.values() if p.status == "waiting"),
            key=lambda p: p.arrival_no,
        )

    def aside_of(self, participant_id: str) -> Aside | None:
        """The open aside `participant_id` is in (as the client or the clinician), if any."""
        return next((a for a in self.asides
                     if participant_id in (a.participant_id, a.clinician_id)), None)

    def admitted(self) -> list[Participant]:
        return sorted(
            (p for p in self.participants.values() if p.status == "admitted"),
            key=lambda p: p.arrival_no,
        )

    def sharer(self, room: str | None) -> Participant | None:
        """Who shares a screen in `room` now (one share at a time per room)."""
        if room is None:
            return None
        return next((p for p in self.admitted() if p.sharing and p.room == room), None)
