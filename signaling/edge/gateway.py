"""The Socket.IO adapter of the control plane: sockets in, commands to the session owners.

It checks join tokens at connect, parses every client event through `protocol`, queues it
to the session's owner (runtime), and acknowledges every event (known or not) with
`{ok: ...}` or a structured error. What goes out to sockets is `fanout`'s job; what goes to
the relay is `media`'s. As the sessions' observer it hands each change to both.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn

import socketio

from signaling.core import commands as c
from signaling.core import events as e
from signaling.core.chat import chat_deliveries
from signaling.core.model import SessionState
from signaling.core.notices import broadcast_notices, help_notices, notices_for, waiting_notices
from signaling.core.policy import Rejected
from signaling.core.ratelimit import TokenBucket
from signaling.core.translate import command_for
from signaling.edge.fanout import Connection, Fanout
from signaling.edge.media import MediaCoordinator
from signaling.edge.runtime import SessionHub
from signaling.ports import JoinTokens, Relay, TokenRejected
from signaling.protocol import (
    CLIENT_EVENTS,
    MAX_EVENT_BYTES,
    ProtocolError,
    error,
    ok,
    parse_client_event,
)

log = logging.getLogger("circle.gateway")


@dataclass(frozen=True)
class GatewayLimits:
    burst: float = 40.0
    per_second: float = 20.0
    max_event_bytes: int = MAX_EVENT_BYTES


class Gateway:
    """Socket.IO handlers, and the observer that passes session changes on."""

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
        self._limits = limits
        self._pseudonym = pseudonym
        self._on_event = on_event
        self._client_config = client_config or {"ice_servers": []}
        self._clock = clock
        self.fanout = Fanout(sio, clock)
        self.media = MediaCoordinator(self.fanout, hub, relay)
        sio.on("connect", self._connect)
        sio.on("disconnect", self._disconnect)
        sio.on("*", self._any_event)
        hub.add_observer(self)

    def attach_relay(self, relay: Relay) -> None:
        """Give the gateway its relay (built after it: the relay listens to `media`)."""
        self.media.attach(relay)

    def connection_count(self) -> int:
        return self.fanout.count()

    # -- connection lifecycle -------------------------------------------------------------

    async def _connect(self, sid: str, environ: dict[str, Any], auth: Any) -> None:
        token = auth.get("token") if isinstance(auth, dict) else None
        if not isinstance(token, str) or not token:
            self._refuse("missing join token", "invalid")
        try:
            claims = self._tokens.verify(token)
        except TokenRejected as exc:
            self._refuse(str(exc), "forbidden")
        conn = Connection(
            sid=sid,
            session_id=claims.session_id,
            participant_id=claims.participant_id,
            role=claims.role,
            bucket=TokenBucket(self._limits.burst, self._limits.per_second),
        )
        # First message of every connection: the ICE servers its media must use (the
        # clinic's STUN/TURN; empty in tests), so no client falls back to a public server.
        conn.pending.append(("config", self._client_config))
        previous = self.fanout.add(conn)
        actor = c.Actor.participant(claims.participant_id, claims.role)
        command = c.Connect(claims.participant_id, claims.name, claims.role, claims.token_id)
        decision = await self._hub.submit(claims.session_id, actor, command)
        if isinstance(decision, Rejected):
            self.fanout.withdraw(conn, previous)
            log.info("connect refused: %s (participant %s)", decision.code,
                     self._pseudonym(claims.participant_id))
            self._refuse(decision.message, decision.code)
        if previous is not None and self.fanout.forget(previous) is not None:
            log.info("participant %s replaced an older connection",
                     self._pseudonym(claims.participant_id))
            self.fanout.spawn(self._sio.disconnect(previous))
        # The observer has already queued this connection's first view (conn.pending).
        self.fanout.spawn(self.fanout.go_live(conn))

    @staticmethod
    def _refuse(message: str, code: str) -> NoReturn:
        # Stock clients read `err.message` and `err.data.code`.
        raise socketio.exceptions.ConnectionRefusedError(message, {"code": code})

    async def _disconnect(self, sid: str, *args: Any) -> None:
        conn = self.fanout.forget(sid)
        if conn is None:
            return
        actor = c.Actor.participant(conn.participant_id, conn.role)
        await self._hub.submit(conn.session_id, actor, c.Disconnect(conn.participant_id))

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
        conn = self.fanout.get(sid)
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
        if isinstance(command, c.Signal):
            return await self.media.signal(conn, command)
        await self._deliver_unrecorded(conn, command)
        return ok()

    async def _deliver_unrecorded(self, conn: Connection, command: c.Command) -> None:
        """Chat and messages are checked by the core but never stored: deliver them now."""
        match command:
            case c.Chat():
                state = await self._hub.state(conn.session_id)
                at = self._clock().isoformat()
                deliveries = chat_deliveries(state, conn.participant_id, command.text, at)
                await self.fanout.deliver(conn.session_id, deliveries, event="chat")
            case c.Broadcast():
                state = await self._hub.state(conn.session_id)
                await self.fanout.deliver(conn.session_id,
                                          broadcast_notices(state, command.text))
            case c.AskForHelp():
                state = await self._hub.state(conn.session_id)
                await self.fanout.deliver(conn.session_id,
                                          help_notices(state, conn.participant_id))
            case c.MessageWaiting():
                state = await self._hub.state(conn.session_id)
                notices = waiting_notices(state, command.text, command.participant_id)
                await self.fanout.deliver(conn.session_id, notices)

    # -- session observer -------------------------------------------------------------------

    async def session_changed(
        self, before: SessionState, after: SessionState, events: Sequence[e.Event]
    ) -> None:
        session_id = after.info.id if after.info else ""
        await self.fanout.deliver(session_id, notices_for(after, events))
        for event in events:
            if isinstance(event, e.Denied | e.Removed):
                self.fanout.close_participant(session_id, event.participant_id)
        await self.fanout.push_views(after)
        if any(isinstance(event, e.SessionEnded) for event in events):
            await self.fanout.end_session(session_id)
        self.media.update(after)


_KNOWN_EVENTS = frozenset(CLIENT_EVENTS)


def _size(data: Any) -> int:
    try:
        return len(json.dumps(data, separators=(",", ":")).encode())
    except (TypeError, ValueError):
        return 0
