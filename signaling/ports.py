"""The seams through which the control plane reaches storage, media and join tokens.

`signaling` never imports `server`: the gateway is handed objects of these shapes, so the
core and the gateway can be tested with in-memory fakes and the server can swap SQLite for
PostgreSQL, or an in-process relay for another, without touching the control plane.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from signaling.core.model import Role

JsonRecord = Mapping[str, Any]
SignalType = Literal["offer", "answer"]
MediaKind = Literal["audio", "video"]


class LedgerConflict(Exception):
    """Raised when a record's sequence number is already taken in its stream.

    Two writers for one session mean the ownership rule was broken; the loser must stop
    rather than fork the record.
    """


class EventLog(Protocol):
    """Durable, ordered, per-stream storage of core events (one stream per session)."""

    async def append(self, stream: str, first_seq: int, records: Sequence[JsonRecord]) -> None:
        """Store `records` as seq `first_seq`, `first_seq + 1`, ...; durable when it returns."""
        ...

    async def load(self, stream: str) -> list[JsonRecord]:
        """Every record of `stream` in sequence order (empty for an unknown stream)."""
        ...


@dataclass(frozen=True)
class MediaGrant:
    """What one participant may do on the data plane right now."""

    participant_id: str
    room: str
    send_audio: bool
    send_video: bool


@dataclass(frozen=True)
class MediaPlan:
    """Who has a media path in a session, in which room, and what the relay may forward.

    Participants absent from `grants` (waiting, denied, removed, left, disconnected) have
    no media path at all: the relay closes their peer connection.
    """

    session_id: str
    grants: Mapping[str, MediaGrant] = field(default_factory=dict)

    def sources_for(self, participant_id: str) -> list[MediaGrant]:
        """The publishers whose media `participant_id` may receive: its own room, not itself."""
        me = self.grants.get(participant_id)
        if me is None:
            return []
        return [
            g
            for pid, g in sorted(self.grants.items())
            if pid != participant_id and g.room == me.room
        ]


class Relay(Protocol):
    """The data plane as the control plane sees it."""

    async def apply_plan(self, plan: MediaPlan) -> None:
        """Reconcile peer connections and forwarding with `plan`.

        Never waits for peers to close: the in-process relay stops forwarding before it
        returns and releases connections in the background; a worker pool only queues the
        plan to the session's worker (effective a moment later, before any later SDP).
        """
        ...

    async def signal(
        self, session_id: str, participant_id: str, kind: SignalType, sdp: str
    ) -> str | None:
        """Take a client's offer (returns the answer SDP) or answer (returns None).

        Raises `ValueError` for SDP the relay cannot use; the caller turns it into an
        `invalid` error ack.
        """
        ...

    async def close_session(self, session_id: str) -> None:
        """Release every peer connection of a session."""
        ...


class TokenRejected(Exception):
    """A join token that must not open a connection; the message is shown to the user."""


@dataclass(frozen=True)
class JoinClaims:
    participant_id: str
    name: str
    role: Role
    session_id: str
    token_id: str


class JoinTokens(Protocol):
    def verify(self, token: str) -> JoinClaims:
        """The token's claims, or TokenRejected (bad signature, expired, malformed)."""
        ...


class RelayListener(Protocol):
    """What the relay tells the control plane (given to the relay at construction)."""

    async def send_signal(
        self, session_id: str, participant_id: str, kind: SignalType, sdp: str
    ) -> None:
        """Deliver a relay-initiated offer to the participant's socket."""
        ...

    async def media_published(
        self, session_id: str, participant_id: str, kinds: frozenset[MediaKind]
    ) -> None:
        """Report which kinds a participant has actually sent (RTP seen), for `modality`."""
        ...
