"""What a session's owner does with a participant's connect, events and disconnect.

The socket may be on this node or on another (the gateway of the node holding it calls
here directly, or through the cluster); either way the owner decides, and its observer
passes each change to `fanout` (sockets anywhere) and `media` (this node's relay).

One seat per person: the core decides whether a connection takes the participant's seat
or waits as a second device, and the observer places it accordingly (the seat's place, or
the second-device slot) before the first view goes out, and closes whatever lost its place.
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
from signaling.core.checkin import admit_all_reply
from signaling.core.e2ee import key_deliveries
from signaling.core.model import Role, SessionState
from signaling.core.notices import (
    CONTINUED_ELSEWHERE,
    SECOND_DEVICE_REPLACED,
    broadcast_notices,
    help_notices,
    notices_for,
    waiting_device_notices,
    waiting_notices,
)
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

SECOND_DEVICE_WAITS = ("you are already in this session on another device; this device "
                       "waits for the therapist and can only leave")
"""The refusal of every event but `leave` from a second device that waits."""

Found = tuple[str, Place, str]
"""A socket a takeover's census found: (participant id, place, device)."""


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
        self._arriving: dict[tuple[str, str, str], Place] = {}
        """Connections whose Connect is being decided, by (session, participant, device):
        the observer places each where the core's decision puts it."""
        hub.add_observer(self)

    async def connect(self, where: Place, claims: JoinClaims) -> Rejected | None:
        session_id, participant_id = claims.session_id, claims.participant_id
        actor = c.Actor.participant(participant_id, claims.role)
        command = c.Connect(participant_id, claims.name, claims.role, claims.token_id,
                            resume=claims.resume, device=claims.device,
                            public_key=claims.public_key)
        # Placed by the observer once the Connect is decided (the seat, or the second-device
        # slot), before the views go out: its first view comes with its arrival.
        key = (session_id, participant_id, claims.device)
        self._arriving[key] = where
        try:
            decision = await self._hub.submit(session_id, actor, command)
        finally:
            if self._arriving.get(key) == where:
                del self._arriving[key]
        if isinstance(decision, Rejected):
            log.info("connect refused: %s (participant %s)", decision.code,
                     self._pseudonym(participant_id))
            return decision
        return None

    async def disconnect(self, where: Place, session_id: str, participant_id: str,
                         role: Role) -> None:
        if self._fanout.place_of(session_id, participant_id) == where:
            device = self._fanout.device_of(session_id, participant_id)
            self._fanout.unplace(session_id, participant_id, where)
        else:
            held = self._fanout.release(session_id, participant_id, where)
            if held is None:
                return  # replaced by a newer connection, or closed by the session itself
            device = held[1]
        actor = c.Actor.participant(participant_id, role)
        await self._hub.submit(session_id, actor, c.Disconnect(participant_id, device))

    def place_found(self, state: SessionState,
                    found: Sequence[Found]) -> tuple[frozenset[str], frozenset[str]]:
        """A takeover: place the sockets the census found as the state says (the seat's, or
        a waiting second device's). Returns who keeps a seat's socket, and whose waiting
        device is still there (Recover's `keep` and `keep_pending`)."""
        session_id = state.info.id if state.info else ""
        seats: dict[str, tuple[Place, str]] = {}
        waiting: dict[str, tuple[Place, str]] = {}
        for participant_id, where, device in found:
            p = state.participants.get(participant_id)
            if p is None:
                continue
            if p.pending_device and device == p.pending_device:
                waiting[participant_id] = (where, device)
            elif participant_id not in seats or device == p.device:
                # A socket the state does not know as the seat's is placed with no device,
                # so that its disconnect still counts.
                seats[participant_id] = (where, device if device == p.device else "")
        for participant_id, (where, device) in seats.items():
            self._fanout.place(session_id, participant_id, where, device)
        for participant_id, (where, device) in waiting.items():
            self._fanout.hold(session_id, participant_id, where, device)
        return frozenset(seats), frozenset(waiting)

    async def event(self, where: Place, session_id: str, participant_id: str, role: Role,
                    event: str, data: Any) -> dict[str, Any]:
        placed = self._fanout.place_of(session_id, participant_id)
        held = self._fanout.pending_of(session_id, participant_id)
        if held is not None and held[0] == where:
            return await self._second_device_event(session_id, participant_id, role, event,
                                                   data, held[1])
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
        if isinstance(command, c.AdmitAll):
            # How many were admitted, and how many still owe a check-in (and so wait).
            return ok(**admit_all_reply(await self._hub.state(session_id), decision.events))
        if isinstance(command, c.DeliverMediaKeys):
            # Wrapped keys, routed to roommates now; the ack says how many went out (the
            # browser starts encrypting with a new key once its roommates have it).
            keys = key_deliveries(await self._hub.state(session_id), participant_id,
                                  command.keys)
            await self._fanout.deliver(session_id, keys, event="e2ee_key")
            return ok(delivered=len(keys))
        await self._deliver_unrecorded(session_id, participant_id, command)
        return ok()

    async def _second_device_event(self, session_id: str, participant_id: str, role: Role,
                                   event: str, data: Any, device: str) -> dict[str, Any]:
        """A waiting second device may only leave (it withdraws; the seat is untouched)."""
        try:
            payload = parse_client_event(event, data)
        except ProtocolError as exc:
            return error(exc.code, exc.message)
        if not isinstance(command_for(payload, seed=0), c.Leave):
            return error("forbidden", SECOND_DEVICE_WAITS)
        actor = c.Actor.participant(participant_id, role)
        decision = await self._hub.submit(session_id, actor, c.Disconnect(participant_id, device))
        if isinstance(decision, Rejected):
            return error(decision.code, decision.message)
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
        # Notices first: a first connection hears why before it is closed.
        await self._fanout.deliver(session_id, notices_for(after, events))
        await self._fanout.deliver_pending(session_id, waiting_device_notices(events))
        lost = self._seat(session_id, events)
        await self._fanout.push_views(after)  # a denied or removed client sees why, first
        for where, notice in lost:
            await self._fanout.close_place(session_id, where, notice)
        for event in events:
            if isinstance(event, e.Denied | e.Removed):
                await self._fanout.close_participant(session_id, event.participant_id)
        if any(isinstance(event, e.SessionEnded) for event in events):
            await self._fanout.end_session(session_id)
        self._media.update(after)

    def _seat(self, session_id: str,
              events: Sequence[e.Event]) -> list[tuple[Place, dict[str, Any] | None]]:
        """Keep the places in step with the seats the core decided; returns the sockets
        that lost their place (closed after the views, with a notice when given)."""
        lost: list[tuple[Place, dict[str, Any] | None]] = []
        fanout = self._fanout
        for event in events:
            match event:
                case e.Arrived() | e.Reconnected() | e.SecondDeviceArrived():
                    pid = event.participant_id
                    where = self._arriving.get((session_id, pid, event.device))
                    if where is None:
                        continue
                    if isinstance(event, e.SecondDeviceArrived):
                        log.info("participant %s: a second device waits for a therapist",
                                 self._pseudonym(pid))
                        older = fanout.hold(session_id, pid, where, event.device)
                        if older is not None:
                            lost.append((older, SECOND_DEVICE_REPLACED))
                        continue
                    previous = fanout.place(session_id, pid, where, event.device)
                    if previous is not None:
                        # Usually a socket that dropped unseen; if it is still there (the
                        # same browser in another window), it must not come back for it.
                        log.info("participant %s resumed on a new connection",
                                 self._pseudonym(pid))
                        lost.append((previous, CONTINUED_ELSEWHERE))
                case e.SecondDeviceAllowed():
                    pid = event.participant_id
                    held = fanout.release(session_id, pid)
                    previous = fanout.place_of(session_id, pid)
                    if held is not None:
                        previous = fanout.place(session_id, pid, held[0], event.device)
                    elif previous is not None:
                        # The waiting socket went away meanwhile (its disconnect follows):
                        # the seat's place must not outlive the seat.
                        fanout.unplace(session_id, pid, previous)
                    log.info("participant %s moved to the second device (%s)",
                             self._pseudonym(pid), "allowed" if event.by else "first gone")
                    if previous is not None:
                        lost.append((previous, None))
                case (e.SecondDeviceRefused() | e.SecondDeviceWithdrawn() | e.Left()
                      | e.GraceExpired()):
                    held = fanout.release(session_id, event.participant_id)
                    if held is not None:
                        lost.append((held[0], None))
        return lost
