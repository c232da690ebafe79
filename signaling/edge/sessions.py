"""What a session's owner does with a participant's connect, events and disconnect.

The socket may be on this node or on another (the gateway of the node holding it calls
here directly, or through the cluster); either way the owner decides, and its observer
passes each change to `fanout` (sockets anywhere) and `media` (this node's relay).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

from signaling.core import commands as c
from signaling.core import events as e
from signaling.core.chat import chat_deliveries
from signaling.core.model import Role, SessionState
from signaling.core.notices import broadcast_notices, help_notices, notices_for, waiting_notices
from signaling.core.policy import Rejected
from signaling.core.translate import command_for
from signaling.edge.fanout import Fanout, Place
from signaling.edge.media import MediaCoordinator
from signaling.edge.runtime import SessionHub
from signaling.ports import JoinClaims
from signaling.protocol import ProtocolError, error, ok, parse_client_event

log = logging.getLogger("circle.sessions")

NOT_PLACED = "this connection is not known to the session's owner; connect again"
"""The owner took the session over without learning of this socket (its census missed the
node, e.g. right after a Redis restart): the node holding it takes its place again."""


class SessionRouter(Protocol):
    """How a gateway reaches the owner of a session (here, or on another node)."""

    async def connect(self, where: Place, claims: JoinClaims) -> Rejected | None:
        """Take the connection's participant into the session; the refusal, or None."""
        ...

    async def disconnect(self, where: Place, session_id: str, participant_id: str,
                         role: Role) -> None: ...

    async def event(self, where: Place, session_id: str, participant_id: str, role: Role,
                    event: str, data: Any) -> dict[str, Any]:
        """A client event, already size- and rate-checked; returns the ack."""
        ...


class SessionService:
    """The owner's side of every connection, and the observer of its sessions."""

    def __init__(
        self,
        hub: SessionHub,
        fanout: Fanout,
        media: MediaCoordinator,
        clock: Callable[[], datetime],
        pseudonym: Callable[[str], str] = lambda value: "?",
    ) -> None:
        self._hub = hub
        self._fanout = fanout
        self._media = media
        self._clock = clock
        self._pseudonym = pseudonym
        hub.add_observer(self)

    async def connect(self, where: Place, claims: JoinClaims) -> Rejected | None:
        session_id, participant_id = claims.session_id, claims.participant_id
        # Placed before the Connect is decided: its first view goes out with its arrival.
        previous = self._fanout.place(session_id, participant_id, where)
        actor = c.Actor.participant(participant_id, claims.role)
        command = c.Connect(participant_id, claims.name, claims.role, claims.token_id)
        decision = await self._hub.submit(session_id, actor, command)
        if isinstance(decision, Rejected):
            if self._fanout.place_of(session_id, participant_id) == where:
                self._fanout.restore(session_id, participant_id, previous)
            log.info("connect refused: %s (participant %s)", decision.code,
                     self._pseudonym(participant_id))
            return decision
        if previous is not None:
            log.info("participant %s replaced an older connection",
                     self._pseudonym(participant_id))
            await self._fanout.close_place(session_id, previous)
        return None

    async def disconnect(self, where: Place, session_id: str, participant_id: str,
                         role: Role) -> None:
        if not self._fanout.unplace(session_id, participant_id, where):
            return  # replaced by a newer connection, or closed by the session itself
        actor = c.Actor.participant(participant_id, role)
        await self._hub.submit(session_id, actor, c.Disconnect(participant_id))

    async def event(self, where: Place, session_id: str, participant_id: str, role: Role,
                    event: str, data: Any) -> dict[str, Any]:
        placed = self._fanout.place_of(session_id, participant_id)
        if placed is None:
            return error("conflict", NOT_PLACED)
        if placed != where:
            return error("forbidden", "this connection was replaced by a newer one")
        try:
            payload = parse_client_event(event, data)
        except ProtocolError as exc:
            return error(exc.code, exc.message)
        actor = c.Actor.participant(participant_id, role)
        command = command_for(payload, seed=secrets.randbits(32))
        decision = await self._hub.submit(session_id, actor, command)
        if isinstance(decision, Rejected):
            return error(decision.code, decision.message)
        if isinstance(command, c.Signal):
            return await self._media.signal(session_id, participant_id, command)
        await self._deliver_unrecorded(session_id, participant_id, command)
        return ok()

    async def _deliver_unrecorded(self, session_id: str, participant_id: str,
                                  command: c.Command) -> None:
        """Chat and messages are checked by the core but never stored: deliver them now."""
        match command:
            case c.Chat():
                state = await self._hub.state(session_id)
                at = self._clock().isoformat()
                deliveries = chat_deliveries(state, participant_id, command.text, at)
                await self._fanout.deliver(session_id, deliveries, event="chat")
            case c.Broadcast():
                state = await self._hub.state(session_id)
                await self._fanout.deliver(session_id, broadcast_notices(state, command.text))
            case c.AskForHelp():
                state = await self._hub.state(session_id)
                await self._fanout.deliver(session_id, help_notices(state, participant_id))
            case c.MessageWaiting():
                state = await self._hub.state(session_id)
                notices = waiting_notices(state, command.text, command.participant_id)
                await self._fanout.deliver(session_id, notices)

    async def session_changed(
        self, before: SessionState, after: SessionState, events: Sequence[e.Event]
    ) -> None:
        session_id = after.info.id if after.info else ""
        await self._fanout.deliver(session_id, notices_for(after, events))
        await self._fanout.push_views(after)  # a denied or removed client sees why, first
        for event in events:
            if isinstance(event, e.Denied | e.Removed):
                await self._fanout.close_participant(session_id, event.participant_id)
        if any(isinstance(event, e.SessionEnded) for event in events):
            await self._fanout.end_session(session_id)
        self._media.update(after)
