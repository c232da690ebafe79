"""The seams through which the control plane reaches storage, media and join tokens.

`signaling` never imports `server`: the gateway is handed objects of these shapes, so the
core and the gateway can be tested with in-memory fakes and the server can swap SQLite for
PostgreSQL, or an in-process relay for another, without touching the control plane.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from signaling.core.model import Role

JsonRecord = Mapping[str, Any]
SignalType = Literal["offer", "answer"]
MediaKind = Literal["audio", "video"]
TrackKind = Literal["audio", "video", "screen"]
"""A published track: `MediaKind`s plus a participant's screen share (a second video)."""


class LedgerConflict(Exception):
    """Raised when a record's sequence number is already taken in its stream.

    Two writers for one session mean the ownership rule was broken; the loser must stop
    rather than fork the record.
    """


class FencedOut(LedgerConflict):
    """An append carried a fence older than its stream's: another node has claimed the
    session since, so this node's view of it is stale and it must stop writing."""


class EventLog(Protocol):
    """Durable, ordered, per-stream storage of core events (one stream per session)."""

    async def append(
        self, stream: str, first_seq: int, records: Sequence[JsonRecord], *,
        fence: int | None = None,
    ) -> None:
        """Store `records` as seq `first_seq`, `first_seq + 1`, ...; durable when it returns.

        With `fence`, the append commits only while it is the stream's newest fence (see
        `claim_fence`), else raises `FencedOut`; None skips the check (one node, no leases).
        """
        ...

    async def claim_fence(self, stream: str) -> int:
        """Take the next fence of `stream` (1, 2, ...): appends with older fences now fail."""
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
    handle: str = ""
    """What receivers call this publisher (its streams' msid): never the participant id,
    which clinics fill with record numbers. Empty means the relay uses the id (tests)."""
    send_screen: bool = False
    """Forward the participant's screen track (its offer's `a=content:slides` video
    section): only while its share holds (docs/media.md, "Screen share")."""

    @property
    def label(self) -> str:
        return self.handle or self.participant_id


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
    resume: str = ""
    """sha256 (hex) of the resume secret the connection presented ("" when none): proves
    it is the browser that held the seat (set by the gateway, never by the token)."""
    device: str = ""
    """sha256 (hex) of the resume secret the gateway gave this connection (`seat`): the
    connection's device in the session's state. Only hashes ever leave the gateway."""
    public_key: str = ""
    """The E2EE public key the connection presented (`auth.e2ee_key`), "" when none."""


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
        """Report which kinds a participant has actually sent (RTP seen, muted or not)."""
        ...

    async def media_flow(
        self, session_id: str, participant_id: str, kind: MediaKind, flowing: bool,
        ago_s: float,
    ) -> None:
        """A kind started or stopped arriving allowed (not muted) from a participant,
        `ago_s` seconds ago: what attendance counts minutes of media from. Only changes
        are reported (and, now and then, the current state again: repeats change nothing)."""
        ...

    async def talk_time(self, session_id: str, seconds: Mapping[str, float]) -> None:
        """Seconds each participant spoke since the previous report (about every 5 s;
        only those who spoke): audio packets whose RFC 6464 level was speech."""
        ...


# -- the cluster: leases, the node directory and the bus ------------------------------------


@dataclass(frozen=True)
class Lease:
    """This node's right to own one session, until `expires` (time.monotonic()).

    `expires` is counted from before the claim or renewal was sent, so a node always
    believes its lease ends no later than Redis does. `fence` goes with every append.
    """

    session_id: str
    node_id: str
    fence: int
    expires: float

    def held(self, now: float) -> bool:
        return now < self.expires


class Leases(Protocol):
    """Who owns which live session (Redis in a cluster, a dict on one node)."""

    async def claim(self, session_id: str) -> Lease | None:
        """Take the session if nobody holds it (and take its next fence); None if held."""
        ...

    async def renew(self, leases: Sequence[Lease]) -> list[Lease | None]:
        """Extend each lease still held by this node; None where it was lost or lapsed."""
        ...

    async def release(self, lease: Lease) -> None:
        """Give the session up now (drain, or the session ended); no-op if already lost."""
        ...

    async def owner(self, session_id: str) -> str | None:
        """The node id holding the session's lease, or None."""
        ...


@dataclass(frozen=True)
class NodeInfo:
    """One node as the others see it (refreshed by its heartbeat)."""

    node_id: str
    url: str
    draining: bool = False
    sessions: int = 0
    connections: int = 0
    load: float = 0.0
    """Busy fraction of the node's cores (0..1 per core, averaged)."""
    seen_at: float = 0.0
    """Unix time of the heartbeat this came from."""
    session_ids: tuple[str, ...] = ()
    """The sessions it owns."""


class Directory(Protocol):
    """The live nodes, and which nodes hold sockets of each session ("interest")."""

    async def announce(self, info: NodeInfo, ttl_s: float) -> None:
        """Heartbeat: `info` is visible to `nodes()` for `ttl_s` seconds."""
        ...

    async def withdraw(self, node_id: str) -> None:
        """Remove a node at once (clean shutdown)."""
        ...

    async def nodes(self) -> list[NodeInfo]:
        """Nodes whose last heartbeat has not expired, sorted by id."""
        ...

    async def add_interest(self, session_id: str, node_id: str) -> None: ...

    async def remove_interest(self, session_id: str, node_id: str) -> None: ...

    async def interested(self, session_id: str) -> set[str]:
        """Nodes that said they hold sockets of the session (dead ones included)."""
        ...


class BusUnavailable(Exception):
    """The bus cannot carry messages right now (Redis unreachable)."""


BusHandler = Callable[[JsonRecord], Awaitable[None]]
ResyncHandler = Callable[[], Awaitable[None]]


class Bus(Protocol):
    """Messages between nodes: one inbox per node, read by that node alone.

    Messages from one sender to one inbox arrive in the order sent, each once, and the
    handler is awaited for one message before the next. When messages may have been lost
    (Redis restarted, a reader fell behind the inbox's length cap, a long outage), the bus
    does not pretend: it calls `on_resync` once, and the node rebuilds what it derived from
    messages (replicas reload from the ledger; pending calls are failed by their timeouts).
    """

    node_id: str

    async def start(self, handler: BusHandler, on_resync: ResyncHandler) -> None:
        """Begin reading this node's inbox from now: what an earlier process under the same
        node id left unread is skipped (nobody sends to a node before it announces itself)."""
        ...

    async def send(self, node_id: str, message: JsonRecord) -> None:
        """Put `message` in `node_id`'s inbox; raises BusUnavailable when it cannot."""
        ...

    def healthy(self) -> bool:
        """True while sends work and the inbox reader is alive and current."""
        ...

    async def close(self) -> None: ...
