"""The Socket.IO edge of the control plane: sockets in, commands to the session owners.

The one module of `signaling` that does network I/O. It checks join tokens at connect,
parses every client event through `protocol`, queues it to the session's owner (runtime),
and acknowledges every event (known or not) with `{ok: ...}` or a structured error. As a
session observer it pushes each receiver its own `state` view, and it carries SDP between
clients and the injected relay.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NoReturn, Protocol

import socketio

from signaling import commands as c
from signaling import events as e
from signaling.media_plan import plan_for
from signaling.model import Role, SessionState
from signaling.notices import broadcast_notices, help_notices, notices_for, waiting_notices
from signaling.policy import Rejected
from signaling.ports import MediaKind, MediaPlan, Relay, SignalType
from signaling.protocol import (
    CLIENT_EVENTS,
    MAX_EVENT_BYTES,
    ProtocolError,
    error,
    ok,
    parse_client_event,
)
from signaling.ratelimit import TokenBucket
from signaling.runtime import SessionHub
from signaling.translate import command_for
from signaling.views import first_name, view_for

log = logging.getLogger("circle.gateway")

HANDSHAKE_TIMEOUT_S = 5.0


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


@dataclass
class _Connection:
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


@dataclass(frozen=True)
class GatewayLimits:
    burst: float = 40.0
    per_second: float = 20.0
    max_event_bytes: int = MAX_EVENT_BYTES


class Gateway:
    """Socket.IO handlers plus the session observer and relay listener they need."""

    def __init__(
        self,
        sio: socketio.AsyncServer,
        hub: SessionHub,
        tokens: JoinTokens,
        *,
        relay: Relay | None = None,
        limits: GatewayLimits = GatewayLimits(),
        pseudonym: Callable[[str], str] = lambda value: "?",
        on_event: Callable[[str, str], None] = lambda event, outcome: None,
        client_config: dict[str, Any] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._sio = sio
        self._hub = hub
        self._tokens = tokens
        self._relay = relay
        self._limits = limits
        self._pseudonym = pseudonym
        self._on_event = on_event
        self._client_config = client_config or {"ice_servers": []}
        self._clock = clock
        self._conns: dict[str, _Connection] = {}
        self._by_participant: dict[tuple[str, str], str] = {}
        self._plans: dict[str, MediaPlan] = {}
        self._background: set[asyncio.Task[None]] = set()
        sio.on("connect", self._connect)
        sio.on("disconnect", self._disconnect)
        sio.on("*", self._any_event)
        hub.add_observer(self)

    def attach_relay(self, relay: Relay) -> None:
        """Give the gateway its relay (built after it: the relay needs it as listener)."""
        self._relay = relay

    def connection_count(self) -> int:
        return len(self._conns)

    # -- connection lifecycle -------------------------------------------------------------

    async def _connect(self, sid: str, environ: dict[str, Any], auth: Any) -> None:
        token = auth.get("token") if isinstance(auth, dict) else None
        if not isinstance(token, str) or not token:
            self._refuse("missing join token", "invalid")
        try:
            claims = self._tokens.verify(token)
        except TokenRejected as exc:
            self._refuse(str(exc), "forbidden")
        conn = _Connection(
            sid=sid,
            session_id=claims.session_id,
            participant_id=claims.participant_id,
            role=claims.role,
            bucket=TokenBucket(self._limits.burst, self._limits.per_second),
        )
        # First message of every connection: the ICE servers its media must use (the
        # clinic's STUN/TURN; empty in tests), so no client falls back to a public server.
        conn.pending.append(("config", self._client_config))
        key = (claims.session_id, claims.participant_id)
        previous = self._by_participant.get(key)
        self._conns[sid] = conn
        self._by_participant[key] = sid
        actor = c.Actor.participant(claims.participant_id, claims.role)
        command = c.Connect(claims.participant_id, claims.name, claims.role, claims.token_id)
        decision = await self._hub.submit(claims.session_id, actor, command)
        if isinstance(decision, Rejected):
            self._forget(sid)
            if previous is not None:
                self._by_participant[key] = previous
            log.info("connect refused: %s (participant %s)", decision.code,
                     self._pseudonym(claims.participant_id))
            self._refuse(decision.message, decision.code)
        if previous is not None and previous in self._conns:
            log.info("participant %s replaced an older connection",
                     self._pseudonym(claims.participant_id))
            self._conns.pop(previous, None)
            self._spawn(self._sio.disconnect(previous))
        # The observer has already queued this connection's first view (conn.pending).
        self._spawn(self._go_live(conn))

    @staticmethod
    def _refuse(message: str, code: str) -> NoReturn:
        # Stock clients read `err.message` and `err.data.code`.
        raise socketio.exceptions.ConnectionRefusedError(message, {"code": code})

    async def _go_live(self, conn: _Connection) -> None:
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

    async def _disconnect(self, sid: str, *args: Any) -> None:
        conn = self._forget(sid)
        if conn is None:
            return
        actor = c.Actor.participant(conn.participant_id, conn.role)
        await self._hub.submit(conn.session_id, actor, c.Disconnect(conn.participant_id))

    def _forget(self, sid: str) -> _Connection | None:
        conn = self._conns.pop(sid, None)
        if conn is not None:
            key = (conn.session_id, conn.participant_id)
            if self._by_participant.get(key) == sid:
                del self._by_participant[key]
        return conn

    # -- client events ----------------------------------------------------------------------

    async def _any_event(self, event: str, sid: str, *args: Any) -> dict[str, Any]:
        """Every client event lands here, so every one gets an ack, whatever happens."""
        name = event if event in _KNOWN_EVENTS else "unknown"  # never log what a client made up
        try:
            reply = await self._handle_event(event, sid, args[0] if args else None)
        except ProtocolError as exc:
            reply = error(exc.code, exc.message)
        except Exception as exc:
            # The type only: an exception's text could quote the payload.
            log.error("event %s failed: %s", name, type(exc).__name__)
            reply = error("invalid", "the server could not handle this event")
        outcome = "ok" if reply.get("ok") else str(reply["error"]["code"])
        self._on_event(name, outcome)
        if outcome != "ok":
            log.info("event %s refused: %s", name, outcome)
        return reply

    async def _handle_event(self, event: str, sid: str, data: Any) -> dict[str, Any]:
        conn = self._conns.get(sid)
        if conn is None:
            return error("forbidden", "not connected to a session")
        if not conn.bucket.allow(time.monotonic()):
            return error("rate_limited", "too many events, slow down")
        if _size(data) > self._limits.max_event_bytes:
            return error("invalid", f"payload larger than {self._limits.max_event_bytes} bytes")
        payload = parse_client_event(event, data)
        actor = c.Actor.participant(conn.participant_id, conn.role)
        command = command_for(payload, seed=secrets.randbits(32))
        decision = await self._hub.submit(conn.session_id, actor, command)
        if isinstance(decision, Rejected):
            return error(decision.code, decision.message)
        match command:
            case c.Chat():
                await self._deliver_chat(conn, command.text)
            case c.Signal():
                return await self._relay_signal(conn, command)
            case c.Broadcast():
                state = await self._hub.state(conn.session_id)
                await self._deliver(conn.session_id, broadcast_notices(state, command.text))
            case c.AskForHelp():
                state = await self._hub.state(conn.session_id)
                await self._deliver(conn.session_id, help_notices(state, conn.participant_id))
            case c.MessageWaiting():
                state = await self._hub.state(conn.session_id)
                notices = waiting_notices(state, command.text, command.participant_id)
                await self._deliver(conn.session_id, notices)
        return ok()

    async def _deliver(self, session_id: str, notices: list[tuple[str, dict[str, Any]]]) -> None:
        for participant_id, notice in notices:
            sid = self._by_participant.get((session_id, participant_id))
            if sid is not None:
                await self._emit(sid, "notice", notice)

    async def _deliver_chat(self, conn: _Connection, text: str) -> None:
        state = await self._hub.state(conn.session_id)
        sender = state.participants.get(conn.participant_id)
        if sender is None or sender.room is None:
            return
        at = self._clock().isoformat()
        for p in state.admitted():
            if p.room != sender.room:
                continue
            sid = self._by_participant.get((conn.session_id, p.id))
            if sid is None:
                continue
            name = sender.name if p.role == "therapist" else first_name(sender.name)
            message = {"from": sender.id, "name": name, "text": text, "room": sender.room,
                       "at": at}
            await self._emit(sid, "chat", message)

    async def _relay_signal(self, conn: _Connection, command: c.Signal) -> dict[str, Any]:
        if self._relay is None:
            return error("conflict", "media is not available on this server")
        async with conn.signal_lock:
            try:
                answer = await self._relay.signal(
                    conn.session_id, conn.participant_id, command.type, command.sdp
                )
            except ValueError as exc:
                return error("invalid", f"signal: {exc}")
            if answer is not None:
                await self._emit(conn.sid, "signal", {"type": "answer", "sdp": answer})
        return ok()

    # -- session observer -------------------------------------------------------------------

    async def session_changed(
        self, before: SessionState, after: SessionState, events: Sequence[e.Event]
    ) -> None:
        session_id = after.info.id if after.info else ""
        await self._deliver(session_id, notices_for(after, events))
        for event in events:
            if isinstance(event, e.Denied | e.Removed):
                sid = self._by_participant.get((session_id, event.participant_id))
                if sid is not None:
                    self._close_soon(sid)
        for conn in [x for x in self._conns.values() if x.session_id == session_id]:
            # A connection whose Connect is still queued behind this change has no place in
            # the session yet: its first view comes with its own arrival, never a "left".
            if conn.participant_id in after.participants:
                await self._push_view(conn, after)
        if any(isinstance(event, e.SessionEnded) for event in events):
            for conn in [x for x in self._conns.values() if x.session_id == session_id]:
                await self._emit(conn.sid, "ended", {"reason": "ended"})
                self._close_soon(conn.sid)
        await self._update_media(session_id, after)

    async def _push_view(self, conn: _Connection, state: SessionState) -> None:
        view = view_for(state, conn.participant_id)
        comparable = {k: v for k, v in view.items() if k != "rev"}
        if comparable == conn.last_view:
            return
        conn.last_view = comparable
        # The sender's clock, so a browser with a wrong clock still counts breakout time right.
        await self._emit(conn.sid, "state", {**view, "server_time": self._clock().isoformat()})

    async def _update_media(self, session_id: str, state: SessionState) -> None:
        if self._relay is None or state.info is None:
            return
        plan = plan_for(state)
        if self._plans.get(session_id) == plan:
            return
        self._plans[session_id] = plan
        if state.ended:
            self._plans.pop(session_id, None)
            await self._relay.close_session(session_id)
        else:
            await self._relay.apply_plan(plan)

    async def _emit(self, sid: str, event: str, data: Any) -> None:
        conn = self._conns.get(sid)
        if conn is not None and not conn.live:
            conn.pending.append((event, data))
            return
        await self._sio.emit(event, data, to=sid)

    def _close_soon(self, sid: str, delay_s: float = 0.5) -> None:
        """Disconnect after the ack of the command that caused it has gone out."""

        async def close() -> None:
            await asyncio.sleep(delay_s)
            conn = self._forget(sid)
            if conn is not None:
                await self._sio.disconnect(sid)

        self._spawn(close())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- relay listener ---------------------------------------------------------------------

    async def send_signal(
        self, session_id: str, participant_id: str, kind: SignalType, sdp: str
    ) -> None:
        sid = self._by_participant.get((session_id, participant_id))
        if sid is not None:
            await self._emit(sid, "signal", {"type": kind, "sdp": sdp})

    async def media_published(
        self, session_id: str, participant_id: str, kinds: frozenset[MediaKind]
    ) -> None:
        await self._hub.submit(session_id, c.SYSTEM, c.ReportMedia(participant_id, kinds))


_KNOWN_EVENTS = frozenset(CLIENT_EVENTS)


def _size(data: Any) -> int:
    try:
        return len(json.dumps(data, separators=(",", ":")).encode())
    except (TypeError, ValueError):
        return 0
