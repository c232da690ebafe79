"""The Socket.IO adapter of the control plane: sockets in, events to the sessions' owners.

It checks join tokens at connect, bounds every client event (rate, size, shape), hands it
to the session's owner through a `SessionRouter` (this node's `SessionService`, or another
node's through the cluster), and acknowledges every event (known or not) with `{ok: ...}`
or a structured error. What goes out to sockets is `fanout`'s job.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import socketio

from signaling.core.ratelimit import TokenBucket
from signaling.edge.fanout import Connection, Fanout, Place
from signaling.edge.sessions import SessionRouter
from signaling.ports import JoinTokens, TokenRejected
from signaling.protocol import (
    CLIENT_EVENTS,
    E2EE_PUBLIC_KEY_PATTERN,
    MAX_EVENT_BYTES,
    error,
)

log = logging.getLogger("circle.gateway")

FLOOD_STRIKES = 200
FLOOD_WINDOW_S = 10.0
"""A connection refused `rate_limited` FLOOD_STRIKES times within FLOOD_WINDOW_S is closed:
a client that ignores the refusals is not going to slow down (a real one backs off after a
few, and a refill of the bucket mid-flood must not wipe the count)."""


@dataclass(frozen=True)
class GatewayLimits:
    burst: float = 40.0
    per_second: float = 20.0
    max_event_bytes: int = MAX_EVENT_BYTES


class Gateway:
    """Socket.IO handlers of the sockets this node holds."""

    def __init__(
        self,
        sio: socketio.AsyncServer,
        fanout: Fanout,
        router: SessionRouter,
        tokens: JoinTokens,
        *,
        limits: GatewayLimits = GatewayLimits(),
        on_event: Callable[[str, str], None] = lambda event, outcome: None,
        client_config: Callable[[str, str], dict[str, Any]] | None = None,
        nodes: Callable[[], list[str]] = lambda: [],
    ) -> None:
        self._sio = sio
        self._router = router
        self._tokens = tokens
        self._limits = limits
        self._on_event = on_event
        # (session id, participant id) -> the connection's `config` (its own TURN credentials).
        self._client_config = client_config or (lambda session_id, participant_id: {
            "ice_servers": []})
        self._nodes = nodes
        self.fanout = fanout
        sio.on("connect", self._connect)
        sio.on("disconnect", self._disconnect)
        sio.on("*", self._any_event)

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
        # One seat per person: this connection's resume secret is made here and sent to it
        # only (`seat`); the session's owner, the bus and the ledger see only its hash.
        secret = secrets.token_urlsafe(24)
        presented = auth.get("resume") if isinstance(auth, dict) else None
        claims = dataclasses.replace(claims, resume=_resume_hash(presented),
                                     device=_digest(secret),
                                     public_key=_public_key(auth.get("e2ee_key")))
        conn = Connection(
            sid=sid,
            session_id=claims.session_id,
            participant_id=claims.participant_id,
            role=claims.role,
            bucket=TokenBucket(self._limits.burst, self._limits.per_second),
            claims=claims,
        )
        # First message of every connection: the ICE servers its media must use (the
        # clinic's STUN/TURN; empty in tests), so no client falls back to a public server.
        config = self._client_config(claims.session_id, claims.participant_id)
        conn.pending.append(("config", {**config, "nodes": self._nodes()}))
        conn.pending.append(("seat", {"resume": secret}))
        self.fanout.add(conn)
        refused = await self._router.connect(self._here(sid), claims)
        if refused is not None:
            self.fanout.forget(sid)
            self._refuse(refused.message, refused.code)
        conn.accepted = True
        # The owner has already queued this connection's first view (conn.pending).
        self.fanout.spawn(self.fanout.go_live(conn))

    def _here(self, sid: str) -> Place:
        return Place(self.fanout.node_id, sid)

    @staticmethod
    def _refuse(message: str, code: str) -> NoReturn:
        # Stock clients read `err.message` and `err.data.code`.
        raise socketio.exceptions.ConnectionRefusedError(message, {"code": code})

    async def _disconnect(self, sid: str, *args: Any) -> None:
        conn = self.fanout.forget(sid)
        if conn is None:
            return  # closed by the session itself (denied, removed, ended, replaced)
        await self._router.disconnect(self._here(sid), conn.session_id, conn.participant_id,
                                      conn.role)

    # -- client events ----------------------------------------------------------------------

    async def _any_event(self, event: str, sid: str, *args: Any) -> dict[str, Any]:
        """Every client event lands here, so every one gets an ack, whatever happens."""
        name = event if event in _KNOWN_EVENTS else "unknown"  # never log what a client made up
        try:
            reply = await self._handle_event(event, sid, args[0] if args else None)
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
        now = time.monotonic()
        if not conn.bucket.allow(now):
            if now - conn.strikes_since > FLOOD_WINDOW_S:
                conn.strikes, conn.strikes_since = 0, now
            conn.strikes += 1
            if conn.strikes == FLOOD_STRIKES:
                log.warning("closed a connection that kept flooding after rate_limited")
                self.fanout.spawn(self.fanout.disconnect(sid))
            return error("rate_limited", "too many events, slow down")
        if _size(data) > self._limits.max_event_bytes:
            return error("invalid", f"payload larger than {self._limits.max_event_bytes} bytes")
        # The shape is checked once, by the owner (SessionService.event), wherever it is.
        return await self._router.event(self._here(sid), conn.session_id, conn.participant_id,
                                        conn.role, event, data)


_KNOWN_EVENTS = frozenset(CLIENT_EVENTS)


MAX_RESUME_CHARS = 128
"""Longer than any secret the server makes (32 characters): anything else is not one."""


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _public_key(presented: Any) -> str:
    """The presented E2EE public key if it has the shape of one, else "" (none: an e2ee
    session then refuses the connection with the reason)."""
    if isinstance(presented, str) and re.fullmatch(E2EE_PUBLIC_KEY_PATTERN, presented):
        return presented
    return ""


def _resume_hash(presented: Any) -> str:
    """The hash of a presented resume secret; "" for none, or for what cannot be one."""
    if not isinstance(presented, str) or not 0 < len(presented) <= MAX_RESUME_CHARS:
        return ""
    return _digest(presented)


def _size(data: Any) -> int:
    try:
        return len(json.dumps(data, separators=(",", ":")).encode())
    except (TypeError, ValueError):
        return 0
