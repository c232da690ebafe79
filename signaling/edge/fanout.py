"""Delivery to participants' sockets, wherever in the clinic they are connected.

Two books. `sockets`: the connections this node holds (the origin side: its Socket.IO
sids). `places`: for the sessions this node owns, where each participant's current socket
is, as (node, sid); a place on another node is reached through `RemoteDelivery` (the
cluster bus), a place on this node directly. Addressing a socket by sid means a message
for a replaced connection is dropped rather than sent to the wrong one. Beside each seat's
place, a second slot: a second device of the participant that waits for a therapist
(`hold`); it gets only its own restricted view and notices, never media or chat.

Emits made before python-socketio finished a connection's handshake wait in the
connection's `pending` list and go out, in order, once it is live.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import socketio

from signaling.core.model import Role, SessionState
from signaling.core.ratelimit import TokenBucket
from signaling.core.views import second_device_view, view_for
from signaling.ports import JoinClaims

log = logging.getLogger("circle.fanout")

HANDSHAKE_TIMEOUT_S = 5.0
Delivery = tuple[str, dict[str, Any]]
"""(participant id, payload)."""


@dataclass(frozen=True)
class Place:
    """Where one participant's socket is: a node, and that node's Socket.IO sid."""

    node_id: str
    sid: str


@dataclass(frozen=True)
class Item:
    """One thing for one socket on another node: an emit, a close, or both (emit first)."""

    sid: str
    event: str | None = None
    data: Any = None
    close: bool = False

    def record(self) -> dict[str, Any]:
        return {"sid": self.sid, "event": self.event, "data": self.data, "close": self.close}

    @classmethod
    def of(cls, record: dict[str, Any]) -> Item:
        return cls(str(record["sid"]), record.get("event"), record.get("data"),
                   bool(record.get("close")))


class RemoteDelivery(Protocol):
    """Hands items to the node that holds the sockets (the cluster bus)."""

    async def deliver(self, node_id: str, session_id: str, items: list[Item]) -> None: ...


@dataclass
class Connection:
    sid: str
    session_id: str
    participant_id: str
    role: Role
    bucket: TokenBucket
    live: bool = False
    """False until python-socketio has sent CONNECT: emits wait in `pending` till then."""
    pending: list[tuple[str, Any]] = field(default_factory=list)
    claims: JoinClaims | None = None
    """What its join token said: enough to take its place again at a new owner."""
    accepted: bool = False
    """True once the session's owner took it (its connect was not refused)."""
    strikes: int = 0
    """Events refused `rate_limited` since `strikes_since` (time.monotonic())."""
    strikes_since: float = 0.0

    @property
    def key(self) -> tuple[str, str]:
        return (self.session_id, self.participant_id)


class Fanout:
    """This node's sockets, the places of its owned sessions, and everything sent to them."""

    def __init__(
        self,
        sio: socketio.AsyncServer,
        clock: Callable[[], datetime],
        node_id: str = "local",
        remote: RemoteDelivery | None = None,
    ) -> None:
        self._sio = sio
        self._clock = clock
        self.node_id = node_id
        self._remote = remote
        self._conns: dict[str, Connection] = {}
        self._places: dict[tuple[str, str], Place] = {}
        self._devices: dict[tuple[str, str], str] = {}
        """The device (hash of its resume secret) of each seat's place."""
        self._pending: dict[tuple[str, str], tuple[Place, str]] = {}
        """A waiting second device's place and device, per participant."""
        self._last_views: dict[tuple[str, str], dict[str, Any]] = {}
        self._last_pending_views: dict[tuple[str, str], dict[str, Any]] = {}
        self._background: set[asyncio.Task[None]] = set()

    def attach_remote(self, remote: RemoteDelivery) -> None:
        self._remote = remote

    # -- sockets held by this node ------------------------------------------------------------

    def add(self, conn: Connection) -> None:
        self._conns[conn.sid] = conn

    def forget(self, sid: str) -> Connection | None:
        return self._conns.pop(sid, None)

    def get(self, sid: str) -> Connection | None:
        return self._conns.get(sid)

    def count(self) -> int:
        return len(self._conns)

    def local_in_session(self, session_id: str) -> list[Connection]:
        return [c for c in self._conns.values() if c.session_id == session_id]

    def local_sessions(self) -> set[str]:
        return {c.session_id for c in self._conns.values()}

    def connections(self) -> list[Connection]:
        return list(self._conns.values())

    # -- places, for the sessions this node owns ----------------------------------------------

    def place(self, session_id: str, participant_id: str, where: Place,
              device: str = "") -> Place | None:
        """Make `where` (of `device`) the participant's socket; returns the different one it
        replaces."""
        key = (session_id, participant_id)
        previous = self._places.get(key)
        self._places[key] = where
        self._devices[key] = device
        if previous != where:
            self._last_views.pop(key, None)
        return None if previous == where else previous

    def device_of(self, session_id: str, participant_id: str) -> str:
        """The device of the seat's place ("" when unknown or unplaced)."""
        return self._devices.get((session_id, participant_id), "")

    def hold(self, session_id: str, participant_id: str, where: Place,
             device: str) -> Place | None:
        """Make `where` the participant's waiting second device; returns the different one
        it replaces (a newer device waits instead)."""
        key = (session_id, participant_id)
        previous = self._pending.get(key)
        self._pending[key] = (where, device)
        if previous is None or previous[0] == where:
            return None
        self._last_pending_views.pop(key, None)
        return previous[0]

    def pending_of(self, session_id: str, participant_id: str) -> tuple[Place, str] | None:
        """The waiting second device's place and device, if one waits."""
        return self._pending.get((session_id, participant_id))

    def release(self, session_id: str, participant_id: str,
                where: Place | None = None) -> tuple[Place, str] | None:
        """Forget the waiting second device (only if it is `where`, when given)."""
        key = (session_id, participant_id)
        held = self._pending.get(key)
        if held is None or (where is not None and held[0] != where):
            return None
        del self._pending[key]
        self._last_pending_views.pop(key, None)
        return held

    def pending_in(self, session_id: str) -> list[tuple[str, Place]]:
        return [(pid, held[0]) for (sid, pid), held in self._pending.items()
                if sid == session_id]

    def unplace(self, session_id: str, participant_id: str, where: Place) -> bool:
        """Forget `where` if it is still the participant's socket (False: it was replaced)."""
        key = (session_id, participant_id)
        if self._places.get(key) != where:
            return False
        del self._places[key]
        self._devices.pop(key, None)
        self._last_views.pop(key, None)
        return True

    def place_of(self, session_id: str, participant_id: str) -> Place | None:
        return self._places.get((session_id, participant_id))

    def places_in(self, session_id: str) -> list[tuple[str, Place]]:
        return [(pid, where) for (sid, pid), where in self._places.items() if sid == session_id]

    def drop_places(self, session_id: str) -> None:
        """This node no longer owns the session (lease lost, handed over, ended)."""
        for key in [k for k in self._places if k[0] == session_id]:
            del self._places[key]
            self._devices.pop(key, None)
            self._last_views.pop(key, None)
        for key in [k for k in self._pending if k[0] == session_id]:
            del self._pending[key]
            self._last_pending_views.pop(key, None)

    def resend_views(self, session_id: str) -> None:
        """Forget what was last sent, so the next `push_views` sends every view in full."""
        for key in [k for k in self._last_views if k[0] == session_id]:
            del self._last_views[key]
        for key in [k for k in self._last_pending_views if k[0] == session_id]:
            del self._last_pending_views[key]

    # -- sending ----------------------------------------------------------------------------

    async def go_live(self, conn: Connection) -> None:
        """Flush what was emitted before python-socketio finished the handshake."""
        deadline = time.monotonic() + HANDSHAKE_TIMEOUT_S
        while not self._sio.manager.is_connected(conn.sid, "/"):
            if time.monotonic() > deadline or conn.sid not in self._conns:
                return
            await asyncio.sleep(0.005)
        conn.live = True
        pending, conn.pending = conn.pending, []
        for event, data in pending:
            await self._sio.emit(event, data, to=conn.sid)

    async def emit(self, sid: str, event: str, data: Any) -> None:
        conn = self._conns.get(sid)
        if conn is not None and not conn.live:
            conn.pending.append((event, data))
            return
        await self._sio.emit(event, data, to=sid)

    async def to_participant(self, session_id: str, participant_id: str, event: str,
                             data: Any) -> bool:
        """Send to one participant's socket; False when it has none in the clinic."""
        where = self._places.get((session_id, participant_id))
        if where is None:
            return False
        await self._send(session_id, [(where, Item(where.sid, event, data))])
        return True

    async def deliver(self, session_id: str, deliveries: list[Delivery],
                      event: str = "notice") -> None:
        batch = []
        for participant_id, payload in deliveries:
            where = self._places.get((session_id, participant_id))
            if where is not None:
                batch.append((where, Item(where.sid, event, payload)))
        await self._send(session_id, batch)

    async def push_views(self, state: SessionState) -> None:
        """Each placed receiver its own view, only when it changed."""
        session_id = state.info.id if state.info else ""
        # The sender's clock, so a browser with a wrong clock counts breakout time right.
        sent_at = self._clock().isoformat()
        batch = []
        for participant_id, where in self.places_in(session_id):
            # A connection whose Connect is still queued behind this change has no place in
            # the session yet: its first view comes with its own arrival, never a "left".
            if participant_id not in state.participants:
                continue
            view = view_for(state, participant_id)
            comparable = {k: v for k, v in view.items() if k != "rev"}
            key = (session_id, participant_id)
            if comparable == self._last_views.get(key):
                continue
            self._last_views[key] = comparable
            batch.append((where, Item(where.sid, "state", {**view, "server_time": sent_at})))
        for participant_id, where in self.pending_in(session_id):
            if participant_id not in state.participants:
                continue
            view = second_device_view(state, participant_id)
            comparable = {k: v for k, v in view.items() if k != "rev"}
            key = (session_id, participant_id)
            if comparable == self._last_pending_views.get(key):
                continue
            self._last_pending_views[key] = comparable
            batch.append((where, Item(where.sid, "state", {**view, "server_time": sent_at})))
        await self._send(session_id, batch)

    async def deliver_pending(self, session_id: str, deliveries: list[Delivery],
                              event: str = "notice") -> None:
        """To participants' waiting second devices (never to their seats)."""
        batch = []
        for participant_id, payload in deliveries:
            held = self._pending.get((session_id, participant_id))
            if held is not None:
                batch.append((held[0], Item(held[0].sid, event, payload)))
        await self._send(session_id, batch)

    async def end_session(self, session_id: str) -> None:
        batch = [(where, Item(where.sid, "ended", {"reason": "ended"}, close=True))
                 for _, where in [*self.places_in(session_id), *self.pending_in(session_id)]]
        self.drop_places(session_id)
        await self._send(session_id, batch)

    async def close_participant(self, session_id: str, participant_id: str) -> None:
        """Close the participant's seat and its waiting second device, if any."""
        batch = []
        where = self._places.get((session_id, participant_id))
        if where is not None:
            self.unplace(session_id, participant_id, where)
            batch.append((where, Item(where.sid, close=True)))
        held = self.release(session_id, participant_id)
        if held is not None:
            batch.append((held[0], Item(held[0].sid, close=True)))
        await self._send(session_id, batch)

    async def close_place(self, session_id: str, where: Place,
                          notice: dict[str, Any] | None = None) -> None:
        """Close a socket that lost its place (the participant connected again elsewhere),
        telling it why first when `notice` is given."""
        item = Item(where.sid, close=True) if notice is None else Item(
            where.sid, "notice", notice, close=True)
        await self._send(session_id, [(where, item)])

    async def receive(self, session_id: str, items: Iterable[Item]) -> None:
        """Items another node's owner sent for sockets held here."""
        for item in items:
            conn = self._conns.get(item.sid)
            if conn is None or conn.session_id != session_id:
                continue  # the socket went away meanwhile: its owner will hear of it
            await self._apply(item)

    async def _send(self, session_id: str, batch: list[tuple[Place, Item]]) -> None:
        remote: dict[str, list[Item]] = defaultdict(list)
        for where, item in batch:
            if where.node_id == self.node_id:
                await self._apply(item)
            else:
                remote[where.node_id].append(item)
        for node_id, items in remote.items():
            if self._remote is None:
                log.error("a place on node %s but no cluster bus", node_id)
                continue
            try:
                await self._remote.deliver(node_id, session_id, items)
            except Exception as exc:
                # The views will go out in full next time; the node resyncs its sockets.
                log.warning("delivery to node %s failed (%s)", node_id, type(exc).__name__)
                for key in [k for k, w in self._places.items()
                            if k[0] == session_id and w.node_id == node_id]:
                    self._last_views.pop(key, None)
                for key in [k for k, (w, _) in self._pending.items()
                            if k[0] == session_id and w.node_id == node_id]:
                    self._last_pending_views.pop(key, None)

    async def _apply(self, item: Item) -> None:
        if item.event is not None:
            await self.emit(item.sid, item.event, item.data)
        if item.close:
            self.close_soon(item.sid)

    async def disconnect(self, sid: str) -> None:
        """Close a socket as if it had gone away: its owner hears of it (drain)."""
        await self._sio.disconnect(sid)

    def close_soon(self, sid: str, delay_s: float = 0.5) -> None:
        """Disconnect after the ack of the command that caused it has gone out."""

        async def close() -> None:
            await asyncio.sleep(delay_s)
            if self.forget(sid) is not None:
                await self._sio.disconnect(sid)

        self.spawn(close())

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
