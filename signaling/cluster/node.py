"""This node's part in a clinic of several: which sessions it owns, and the way to the rest.

Exactly one node owns a live session, by a lease (Redis in a cluster, a dict on one node)
that comes with a fence: every append carries it, and the database refuses an older one,
so a node that lost its lease cannot write even if it does not know yet. It also stops by
itself: it never appends once its own, conservative, count of the lease has run out.

Any node takes any client's socket. What the socket asks goes to the session's owner:
here, or as a call over the bus. The owner's `SessionService` decides and delivers to the
sockets wherever they are (`fanout` places). A node that claims a session somebody else
owned asks the nodes holding its sockets which participants are still there ("census"),
so a failover writes no false disconnect; everyone else is disconnected as of now and has
the grace period to come back. The relay is the owner's, so every participant with media
is told to offer again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from signaling.cluster.calls import CallFailed, Calls, NotOwner
from signaling.cluster.forms import (
    actor_of,
    actor_record,
    claims_of,
    claims_record,
    command_of,
    command_record,
    decision_of,
    decision_record,
    rejected_of,
    rejected_record,
)
from signaling.core import commands as c
from signaling.core.events import from_record
from signaling.core.model import Role, SessionState
from signaling.core.policy import Rejected
from signaling.core.session import Decision, replay
from signaling.edge.fanout import Connection, Fanout, Item, Place
from signaling.edge.media import MediaCoordinator
from signaling.edge.runtime import SessionHub
from signaling.edge.sessions import NOT_PLACED, Found, SessionService
from signaling.ports import (
    Bus,
    Directory,
    EventLog,
    FencedOut,
    JoinClaims,
    JsonRecord,
    Lease,
    Leases,
    NodeInfo,
)
from signaling.protocol import error

log = logging.getLogger("circle.cluster")

T = TypeVar("T")

UNREACHABLE = "the session's server did not answer; try again"
COORDINATION_DOWN = "the clinic's coordination service is unreachable; try again"
DRAIN_MESSAGE = "this server is restarting; reconnecting you to another one"


@dataclass(frozen=True)
class ClusterTimings:
    """How fast the cluster notices and reacts. A lease lapses `lease_ttl_s` after its
    owner's last renewal: the bound on how long a dead node's sessions stay unowned."""

    lease_ttl_s: float = 6.0
    renew_every_s: float = 2.0
    heartbeat_every_s: float = 2.0
    node_ttl_s: float = 6.0
    call_timeout_s: float = 5.0
    census_timeout_s: float = 1.5
    watch_every_s: float = 1.0
    drain_wait_s: float = 3.0


class _Unavailable(Exception):
    """Ownership could not be decided (Redis unreachable, or nobody answered)."""


class ClusterNode:
    """Routes every session's work to its owner and owns some sessions itself."""

    def __init__(
        self,
        node_id: str,
        url: str,
        *,
        event_log: EventLog,
        leases: Leases,
        directory: Directory,
        bus: Bus,
        fanout: Fanout,
        clock: Callable[[], datetime],
        timings: ClusterTimings = ClusterTimings(),
        load: Callable[[], float] = lambda: 0.0,
    ) -> None:
        self.node_id = node_id
        self.url = url
        self.draining = False
        self._log = event_log
        self._leases = leases
        self._directory = directory
        self._bus = bus
        self._fanout = fanout
        self._timings = timings
        self._load = load
        self._calls = Calls(bus, timings.call_timeout_s)
        self._held: dict[str, Lease] = {}
        self._adopting: dict[str, asyncio.Event] = {}
        self._claiming: dict[str, asyncio.Future[bool]] = {}
        self._live_nodes: set[str] | None = None
        """Node ids of the last directory read (None: not read, or unreadable)."""
        self._missing_since: dict[str, int] = {}
        """Nodes absent from consecutive directory reads, and for how many."""
        self._interest: set[str] = set()
        self.node_urls: list[str] = [url]
        """The clinic's live nodes that take sessions (this one first), as of the last
        heartbeat: clients get them in `config` to reconnect to."""
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[Any]] = set()
        self.hub = SessionHub(event_log, clock, fence_of=self._fence_of,
                              on_exit=self._actor_exited)
        self._service: SessionService | None = None
        self._media: MediaCoordinator | None = None
        fanout.attach_remote(self)

    def attach(self, service: SessionService, media: MediaCoordinator) -> None:
        """The owner-side parts, built on this node's hub."""
        self._service = service
        self._media = media

    # -- life -------------------------------------------------------------------------------

    async def start(self, recent_sessions: Sequence[str] = ()) -> int:
        """Join the clinic; claim the recent sessions nobody owns (a restart of the whole
        clinic, or of a single node). Returns how many live sessions were taken over."""
        await self._bus.start(self._on_message, self._on_resync)
        await self._announce()
        await self._refresh_node_urls()
        for loop in (self._renew_loop, self._heartbeat_loop, self._watch_loop):
            self._tasks.append(asyncio.create_task(loop(), name=f"cluster-{loop.__name__}"))
        taken = 0
        for session_id in recent_sessions:
            try:
                if await self._leases.owner(session_id) is None and await self._claim(
                        session_id):
                    state = await self.hub.state(session_id)
                    taken += int(state.exists and not state.ended)
            except Exception as exc:
                log.warning("could not take a recent session over at start (%s)",
                            type(exc).__name__)
        return taken

    async def drain(self) -> None:
        """SIGTERM: hand every owned session to another node, send the clients there."""
        self.draining = True
        with contextlib.suppress(Exception):
            await self._announce()
        for session_id in list(self._held):
            target = await self._placement_target()
            await self._give_up(session_id, release=True)
            if target is not None:
                try:
                    await self._calls.call(target, "adopt", {"session": session_id})
                except (CallFailed, NotOwner):
                    log.warning("node %s did not take a session over; it will on next use",
                                target)
        conns = self._fanout.connections()
        for conn in conns:
            after_ms = random.randint(0, 1000)  # noqa: S311 (jitter, not a secret)
            await self._fanout.emit(conn.sid, "reconnect",
                                    {"reason": DRAIN_MESSAGE, "after_ms": after_ms})
        deadline = time.monotonic() + self._timings.drain_wait_s
        # Fanout offers no "emptied" signal to wait on: poll its count until the deadline.
        while self._fanout.count() and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        for conn in self._fanout.connections():
            with contextlib.suppress(Exception):
                await self._fanout.disconnect(conn.sid)

    async def close(self) -> None:
        for task in [*self._tasks, *self._background]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._background, return_exceptions=True)
        await self.hub.close()
        for session_id, lease in list(self._held.items()):
            with contextlib.suppress(Exception):
                await self._leases.release(lease)
            del self._held[session_id]
        with contextlib.suppress(Exception):
            await self._directory.withdraw(self.node_id)
        await self._calls.close()
        await self._bus.close()

    def live_sessions(self) -> list[str]:
        return sorted(self._held)

    def healthy(self) -> bool:
        return self._bus.healthy()

    # -- what the HTTP API asks -------------------------------------------------------------

    async def submit(self, session_id: str, actor: c.Actor, command: c.Command) -> Decision:
        body = {"session": session_id, "actor": actor_record(actor),
                "command": command_record(command)}
        try:
            return await self._on_owner(
                session_id, "submit", body, lambda: self.hub.submit(session_id, actor, command),
                decision_of)
        except _Unavailable as exc:
            return Rejected("conflict", str(exc))

    async def state(self, session_id: str) -> SessionState:
        """The owner's state when it is here, else the ledger's (durable) state."""
        if self._owns(session_id):
            return await self.hub.state(session_id)
        return replay(from_record(r) for r in await self._log.load(session_id))

    async def nodes(self) -> list[NodeInfo]:
        return await self._directory.nodes()

    # -- SessionRouter: what the gateway asks -----------------------------------------------

    async def connect(self, where: Place, claims: JoinClaims) -> Rejected | None:
        session_id = claims.session_id
        await self._note_interest(session_id)
        service = self._require_service()
        body = {"where": _place_record(where), "claims": claims_record(claims)}
        try:
            return await self._on_owner(session_id, "connect", body,
                                        lambda: service.connect(where, claims), rejected_of)
        except _Unavailable as exc:
            return Rejected("conflict", str(exc))

    async def disconnect(self, where: Place, session_id: str, participant_id: str,
                         role: Role) -> None:
        service = self._require_service()
        body = {"where": _place_record(where), "session": session_id,
                "participant": participant_id, "role": role}
        if not self._fanout.local_in_session(session_id):
            self._spawn(self._drop_interest(session_id))
        # A lost disconnect would leave a participant "connected" for ever: keep trying
        # until the owner has it (a new owner's census would also find the socket gone).
        for attempt in range(6):
            try:
                await self._on_owner(
                    session_id, "disconnect", body,
                    lambda: service.disconnect(where, session_id, participant_id, role),
                    lambda result: None)
                return
            except _Unavailable:
                await asyncio.sleep(min(0.25 * 2 ** attempt, 4.0))
        log.warning("a disconnect could not reach the session's owner")

    async def event(self, where: Place, session_id: str, participant_id: str, role: Role,
                    event: str, data: Any) -> dict[str, Any]:
        service = self._require_service()
        body = {"where": _place_record(where), "session": session_id,
                "participant": participant_id, "role": role, "event": event, "data": data}
        for attempt in range(2):
            try:
                reply: dict[str, Any] = await self._on_owner(
                    session_id, "event", body,
                    lambda: service.event(where, session_id, participant_id, role, event, data),
                    lambda result: result)
            except _Unavailable as exc:
                return error("conflict", str(exc))
            if attempt or reply.get("error", {}).get("message") != NOT_PLACED:
                return reply
            conn = self._fanout.get(where.sid)
            if conn is None or conn.claims is None:
                return reply
            refused = await self.connect(where, conn.claims)
            if refused is not None:
                return error(refused.code, refused.message)
        return reply

    # -- RemoteDelivery (fanout's way to sockets on other nodes) ----------------------------

    async def deliver(self, node_id: str, session_id: str, items: list[Item]) -> None:
        await self._bus.send(node_id, {"op": "deliver", "session": session_id,
                                       "items": [item.record() for item in items]})

    # -- ownership ----------------------------------------------------------------------------

    def _owns(self, session_id: str) -> bool:
        lease = self._held.get(session_id)
        return lease is not None and lease.held(time.monotonic())

    def _fence_of(self, session_id: str) -> int | None:
        lease = self._held.get(session_id)
        if lease is None or not lease.held(time.monotonic()):
            raise FencedOut(f"this node's lease on session {session_id!r} has run out")
        return lease.fence

    async def _on_owner(self, session_id: str, kind: str, body: dict[str, Any],
                        run_here: Callable[[], Awaitable[Any]],
                        decode: Callable[[Any], T]) -> T:
        """Run `run_here` if this node owns the session, else `kind` on the owner."""
        for _ in range(3):
            owner = await self._route(session_id)
            if owner == self.node_id:
                return decode(await _as_result(run_here, kind))
            try:
                return decode(await self._calls.call(owner, kind, body))
            except NotOwner:
                continue  # ownership moved between the look-up and the call
            except CallFailed as exc:
                log.warning("a %s call to node %s failed: %s", kind, owner, exc)
                raise _Unavailable(UNREACHABLE) from None
        raise _Unavailable(UNREACHABLE)

    async def _route(self, session_id: str) -> str:
        """The node that owns the session now, claiming it when nobody does."""
        for _ in range(3):
            if self._owns(session_id):
                await self._adopted(session_id)
                return self.node_id
            try:
                owner = await self._leases.owner(session_id)
            except Exception as exc:
                log.warning("lease look-up failed (%s)", type(exc).__name__)
                raise _Unavailable(COORDINATION_DOWN) from None
            if owner is not None and owner != self.node_id:
                return owner
            if owner is None and self.draining:
                target = await self._placement_target()
                if target is not None:
                    return target
            if await self._claim(session_id):
                return self.node_id
        raise _Unavailable(UNREACHABLE)

    async def _adopted(self, session_id: str) -> None:
        adopting = self._adopting.get(session_id)
        if adopting is not None:
            await adopting.wait()

    async def _claim(self, session_id: str) -> bool:
        """Claim and take over; callers racing for one session share one claim (a second
        claim while the first awaits its fence would find the lease "ours" and take the
        session over twice)."""
        claiming = self._claiming.get(session_id)
        if claiming is None:
            claiming = asyncio.ensure_future(self._claim_once(session_id))
            self._claiming[session_id] = claiming
            claiming.add_done_callback(lambda _: self._claiming.pop(session_id, None))
        return await asyncio.shield(claiming)

    async def _claim_once(self, session_id: str) -> bool:
        try:
            lease = await self._leases.claim(session_id)
        except Exception as exc:
            log.warning("lease claim failed (%s)", type(exc).__name__)
            raise _Unavailable(COORDINATION_DOWN) from None
        if lease is None:
            return False
        self._held[session_id] = lease
        self._spawn(self._announce_quietly())
        done = self._adopting[session_id] = asyncio.Event()
        try:
            await self._adopt(session_id)
        except Exception as exc:
            log.error("taking a session over failed (%s); giving it up", type(exc).__name__)
            await self._give_up(session_id, release=True)
            raise _Unavailable(UNREACHABLE) from None
        finally:
            done.set()
            self._adopting.pop(session_id, None)
        return True

    async def _adopt(self, session_id: str) -> None:
        """Rebuild the session from the ledger and find out who is still connected."""
        state = await self.hub.state(session_id)
        if not state.exists or state.ended:
            return
        still_there = await self._census(session_id)
        # Each socket back where the state has it: a seat's, or a waiting second device's.
        keep, keep_pending = self._require_service().place_found(state, still_there)
        decision = await self.hub.submit(session_id, c.SYSTEM,
                                         c.Recover(keep=keep, keep_pending=keep_pending))
        if isinstance(decision, Rejected):
            raise RuntimeError(f"recover refused: {decision.code}")
        state = await self.hub.state(session_id)
        self._fanout.resend_views(session_id)
        await self._fanout.push_views(state)
        if self._media is not None:
            self._media.update(state)
            await self._media.reset_all(state)
        log.info("took session over (%d participant(s) still connected)", len(keep))

    async def _census(self, session_id: str) -> list[Found]:
        """The sockets of the session's participants that live nodes hold, wherever they
        are, with their devices (a participant may have a seat's and a waiting one)."""
        found: list[Found] = [
            (conn.participant_id, Place(self.node_id, conn.sid), _device(conn))
            for conn in self._fanout.local_in_session(session_id) if conn.accepted]
        try:
            interested = await self._directory.interested(session_id)
            live = {n.node_id for n in await self._directory.nodes()}
        except Exception as exc:
            log.warning("census: directory unreachable (%s)", type(exc).__name__)
            return found
        others = sorted((interested & live) - {self.node_id})

        async def ask(node_id: str) -> list[Any]:
            try:
                result = await self._calls.call(node_id, "census", {"session": session_id},
                                                timeout_s=self._timings.census_timeout_s)
            except (CallFailed, NotOwner):
                log.warning("census: node %s did not answer", node_id)
                return []
            return list(result or [])

        for node_id, answer in zip(others, await asyncio.gather(*(ask(n) for n in others)),
                                   strict=True):
            for entry in answer:
                found.append((str(entry["participant"]), Place(node_id, str(entry["sid"])),
                              str(entry.get("device") or "")))
        return found

    async def _give_up(self, session_id: str, *, release: bool) -> None:
        """This node stops owning the session (lease lost, handed over, or done with)."""
        lease = self._held.pop(session_id, None)
        self._spawn(self._announce_quietly())
        await self.hub.evict(session_id)
        self._fanout.drop_places(session_id)
        if self._media is not None:
            self._media.forget(session_id)
        if release and lease is not None:
            try:
                await self._leases.release(lease)
            except Exception as exc:
                log.warning("lease release failed (%s); it will lapse", type(exc).__name__)

    def _actor_exited(self, session_id: str, fenced: bool) -> None:
        if session_id not in self._held:
            return  # evicted by this node
        if fenced:
            log.warning("lost the lease of a session while writing; giving it up")
            self._spawn(self._give_up(session_id, release=False))
        else:
            self._spawn(self._release_if_idle(session_id, self._held[session_id]))

    async def _release_if_idle(self, session_id: str, lease: Lease) -> None:
        """An ended or never-created session needs no owner, but a command may be on its
        way (a session is created by its first command): let a lease's length pass first."""
        await asyncio.sleep(self._timings.lease_ttl_s)
        if self._held.get(session_id) is lease and session_id not in self.hub.live_sessions():
            await self._give_up(session_id, release=True)

    async def _placement_target(self) -> str | None:
        """The least busy live node that takes new sessions, other than this one."""
        try:
            nodes = await self._directory.nodes()
        except Exception:
            return None
        candidates = [n for n in nodes if not n.draining and n.node_id != self.node_id]
        if not candidates:
            return None
        return min(candidates, key=lambda n: (n.sessions, n.load, n.node_id)).node_id

    # -- interest: which nodes hold sockets of a session --------------------------------------

    async def _note_interest(self, session_id: str) -> None:
        if session_id in self._interest:
            return
        try:
            await self._directory.add_interest(session_id, self.node_id)
            self._interest.add(session_id)
        except Exception as exc:
            log.warning("could not record interest (%s)", type(exc).__name__)

    async def _drop_interest(self, session_id: str) -> None:
        if session_id not in self._interest or self._fanout.local_in_session(session_id):
            return
        self._interest.discard(session_id)
        with contextlib.suppress(Exception):
            await self._directory.remove_interest(session_id, self.node_id)

    # -- the inbox ----------------------------------------------------------------------------

    async def _on_message(self, message: JsonRecord) -> None:
        op = message.get("op")
        if op == "reply":
            self._calls.resolve(message)
        elif op == "deliver":
            items = [Item.of(dict(i)) for i in message.get("items", [])]
            await self._fanout.receive(str(message.get("session")), items)
        elif op == "call":
            self._calls.serve(message, self._serve)

    async def _serve(self, kind: str, body: dict[str, Any]) -> Any:
        session_id = str(body.get("session") or body.get("claims", {}).get("session_id"))
        if kind == "census":
            # Only sockets the session has taken: a connect still on its way to a dead owner
            # will be refused, and must not be kept "connected" by the new one.
            return [{"participant": conn.participant_id, "sid": conn.sid,
                     "device": _device(conn)}
                    for conn in self._fanout.local_in_session(session_id) if conn.accepted]
        if await self._route(session_id) != self.node_id:
            raise NotOwner(session_id)
        service = self._require_service()
        if kind == "adopt":
            return None
        if kind == "submit":
            decision = await self.hub.submit(session_id, actor_of(body["actor"]),
                                             command_of(body["command"]))
            return decision_record(decision)
        where = _place_of(body["where"])
        if kind == "connect":
            return rejected_record(await service.connect(where, claims_of(body["claims"])))
        role: Role = body["role"]
        if kind == "disconnect":
            await service.disconnect(where, session_id, str(body["participant"]), role)
            return None
        if kind == "event":
            return await service.event(where, session_id, str(body["participant"]), role,
                                       str(body["event"]), body.get("data"))
        raise ValueError(f"unknown call {kind!r}")

    async def _on_resync(self) -> None:
        """The bus may have lost messages, or Redis its data (interest, leases, directory):
        say again where this node's sockets are. Each connection takes its place again at
        its session's owner (a reconnect, not a new arrival), which also brings its view
        up to date, so what was lost in flight was at most a view, a notice or a chat."""
        self._spawn(self._reannounce())

    async def _reannounce(self) -> None:
        for attempt in range(8):
            try:
                await self._announce()
                break
            except Exception:
                await asyncio.sleep(min(0.1 * 2 ** attempt, 2.0))
        self._interest.clear()
        for conn in self._fanout.connections():
            if conn.claims is None or not conn.accepted:
                continue  # a connect still on its way finishes by itself
            for attempt in range(6):
                refused = await self.connect(Place(self.node_id, conn.sid), conn.claims)
                if refused is None or refused.code != "conflict":
                    break
                await asyncio.sleep(min(0.2 * 2 ** attempt, 3.0))
            if refused is not None:
                log.warning("a connection could not take its place again: %s", refused.code)

    # -- loops ----------------------------------------------------------------------------------

    async def _announce(self) -> None:
        await self._directory.announce(
            NodeInfo(self.node_id, self.url, self.draining, len(self._held),
                     self._fanout.count(), self._load(), time.time(),
                     tuple(sorted(self._held))),
            self._timings.node_ttl_s)

    async def _announce_quietly(self) -> None:
        """Tell the directory at once when what this node owns changed."""
        try:
            await self._announce()
        except Exception as exc:
            log.warning("announce failed (%s)", type(exc).__name__)

    async def _refresh_node_urls(self) -> None:
        try:
            nodes = await self._directory.nodes()
        except Exception:
            self._live_nodes = None
            return  # keep the last list
        others = [n.url for n in nodes if not n.draining and n.node_id != self.node_id]
        self.node_urls = [self.url, *sorted(set(others) - {self.url})]
        live = {n.node_id for n in nodes}
        # A directory that does not list this node itself was just emptied (a Redis
        # restart): it says nothing about the others.
        self._live_nodes = live if self.node_id in live else None

    async def _reap_dead_places(self) -> None:
        """Sockets on a node that stopped heartbeating are gone: nobody else will tell this
        owner, and a participant left "connected" would be billed for ever. Two directory
        reads in a row must miss the node (a heartbeat may just be late)."""
        live = self._live_nodes
        if live is None:
            return
        places = [(s, pid, where) for s in list(self._held)
                  for pid, where in [*self._fanout.places_in(s), *self._fanout.pending_in(s)]]
        absent = {where.node_id for _, _, where in places} - live - {self.node_id}
        self._missing_since = {n: self._missing_since.get(n, 0) + 1 for n in absent}
        service = self._require_service()
        for session_id, participant_id, where in places:
            if self._missing_since.get(where.node_id, 0) < 2 or not self._owns(session_id):
                continue
            state = await self.hub.state(session_id)
            participant = state.participants.get(participant_id)
            if participant is not None:
                log.info("a socket's node is gone; recording its participant as dropped")
                await service.disconnect(where, session_id, participant_id, participant.role)

    async def _renew_loop(self) -> None:
        outage = False
        while True:
            await asyncio.sleep(self._timings.renew_every_s)
            held = list(self._held.values())
            if not held:
                continue
            try:
                renewed = await self._leases.renew(held)
            except Exception as exc:
                if not outage:
                    log.warning("lease renewal failed (%s); sessions stop at their lease's end",
                                type(exc).__name__)
                outage = True
                now = time.monotonic()
                for lease in held:
                    if not lease.held(now) and self._held.get(lease.session_id) is lease:
                        await self._give_up(lease.session_id, release=False)
                continue
            outage = False
            for old, new in zip(held, renewed, strict=True):
                if self._held.get(old.session_id) is not old:
                    continue  # given up or re-claimed meanwhile
                if new is None:
                    log.warning("a session's lease was lost; giving it up")
                    await self._give_up(old.session_id, release=False)
                else:
                    self._held[old.session_id] = new

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self._timings.heartbeat_every_s)
            await self._announce_quietly()
            await self._refresh_node_urls()
            try:
                await self._reap_dead_places()
            except Exception as exc:
                log.warning("reaping dead nodes' sockets failed (%s)", type(exc).__name__)

    async def _watch_loop(self) -> None:
        """Take over sessions of this node's sockets that nobody owns (a dead owner's lease
        lapsed): timers and grace periods need an owner to run, even if nobody speaks."""
        while True:
            await asyncio.sleep(self._timings.watch_every_s)
            if self.draining:
                continue
            for session_id in self._fanout.local_sessions() - set(self._held):
                try:
                    if await self._leases.owner(session_id) is None:
                        await self._claim(session_id)
                except Exception as exc:
                    log.warning("watch: could not check a session (%s)", type(exc).__name__)

    def _require_service(self) -> SessionService:
        if self._service is None:
            raise RuntimeError("ClusterNode.attach was not called")
        return self._service

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


async def _as_result(run_here: Callable[[], Awaitable[Any]], kind: str) -> Any:
    """What a served call would return, so local and remote results decode alike."""
    result = await run_here()
    if kind == "submit":
        return decision_record(result)
    if kind == "connect":
        return rejected_record(result)
    return result


def _device(conn: Connection) -> str:
    return conn.claims.device if conn.claims is not None else ""


def _place_record(where: Place) -> dict[str, str]:
    return {"node": where.node_id, "sid": where.sid}


def _place_of(record: dict[str, Any]) -> Place:
    return Place(str(record["node"]), str(record["sid"]))
