"""Delivery to the participants' sockets on this node: views, notices, chat, signals, ends.

The one place that maps (session, participant) to a socket. A cluster bus attaches here:
a node that does not hold a participant's socket will hand the message on instead of
dropping it. Emits made before python-socketio finished a connection's handshake wait in
the connection's `pending` list and go out, in order, once it is live.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import socketio

from signaling.core.model import Role, SessionState
from signaling.core.ratelimit import TokenBucket
from signaling.core.views import view_for

HANDSHAKE_TIMEOUT_S = 5.0
Delivery = tuple[str, dict[str, Any]]
"""(participant id, payload)."""


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
    last_view: dict[str, Any] | None = None
    signal_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def key(self) -> tuple[str, str]:
        return (self.session_id, self.participant_id)


class Fanout:
    """The connections of this node and everything sent to them."""

    def __init__(self, sio: socketio.AsyncServer, clock: Callable[[], datetime]) -> None:
        self._sio = sio
        self._clock = clock
        self._conns: dict[str, Connection] = {}
        self._by_participant: dict[tuple[str, str], str] = {}
        self._background: set[asyncio.Task[None]] = set()

    # -- the book of connections ------------------------------------------------------------

    def add(self, conn: Connection) -> str | None:
        """Register `conn` as its participant's socket; returns the socket it replaces."""
        previous = self._by_participant.get(conn.key)
        self._conns[conn.sid] = conn
        self._by_participant[conn.key] = conn.sid
        return previous

    def withdraw(self, conn: Connection, previous: str | None) -> None:
        """Undo `add` for a connection the session refused."""
        self.forget(conn.sid)
        if previous is not None:
            self._by_participant[conn.key] = previous

    def forget(self, sid: str) -> Connection | None:
        conn = self._conns.pop(sid, None)
        if conn is not None and self._by_participant.get(conn.key) == sid:
            del self._by_participant[conn.key]
        return conn

    def get(self, sid: str) -> Connection | None:
        return self._conns.get(sid)

    def connection_of(self, session_id: str, participant_id: str) -> Connection | None:
        sid = self._by_participant.get((session_id, participant_id))
        return None if sid is None else self._conns.get(sid)

    def count(self) -> int:
        return len(self._conns)

    def in_session(self, session_id: str) -> list[Connection]:
        return [c for c in self._conns.values() if c.session_id == session_id]

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
        """Send to one participant's socket; False when it has none on this node."""
        sid = self._by_participant.get((session_id, participant_id))
        if sid is None:
            return False
        await self.emit(sid, event, data)
        return True

    async def deliver(self, session_id: str, deliveries: list[Delivery],
                      event: str = "notice") -> None:
        for participant_id, payload in deliveries:
            await self.to_participant(session_id, participant_id, event, payload)

    async def push_views(self, state: SessionState) -> None:
        """Each connected receiver its own view, only when it changed."""
        session_id = state.info.id if state.info else ""
        # The sender's clock, so a browser with a wrong clock counts breakout time right.
        sent_at = self._clock().isoformat()
        for conn in self.in_session(session_id):
            # A connection whose Connect is still queued behind this change has no place in
            # the session yet: its first view comes with its own arrival, never a "left".
            if conn.participant_id not in state.participants:
                continue
            view = view_for(state, conn.participant_id)
            comparable = {k: v for k, v in view.items() if k != "rev"}
            if comparable == conn.last_view:
                continue
            conn.last_view = comparable
            await self.emit(conn.sid, "state", {**view, "server_time": sent_at})

    async def end_session(self, session_id: str) -> None:
        for conn in self.in_session(session_id):
            await self.emit(conn.sid, "ended", {"reason": "ended"})
            self.close_soon(conn.sid)

    def close_participant(self, session_id: str, participant_id: str) -> None:
        sid = self._by_participant.get((session_id, participant_id))
        if sid is not None:
            self.close_soon(sid)

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
