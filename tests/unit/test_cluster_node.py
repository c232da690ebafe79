"""Two ClusterNodes in one process on the in-memory leases, directory and bus: commands go
to the owner, views reach sockets on the other node, and a draining node places nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from signaling.cluster.memory_bus import MemoryBus, MemoryNetwork
from signaling.cluster.memory_leases import MemoryDirectory, MemoryLeases, MemoryLeaseTable
from signaling.cluster.node import ClusterNode, ClusterTimings
from signaling.core import commands as c
from signaling.core.ratelimit import TokenBucket
from signaling.core.session import Accepted
from signaling.edge.fanout import Connection, Fanout, Place
from signaling.edge.media import MediaCoordinator
from signaling.edge.sessions import SessionService
from signaling.ports import JoinClaims

from .core_helpers import STAFF, T0
from .memory_log import MemoryLog


@dataclass
class FakeManager:
    def is_connected(self, sid: str, namespace: str) -> bool:
        return True


@dataclass
class FakeSio:
    """What Fanout uses of python-socketio's server: emits are recorded per sid."""

    emitted: list[tuple[str, str, Any]] = field(default_factory=list)
    manager: FakeManager = field(default_factory=FakeManager)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def emit(self, event: str, data: Any, to: str) -> None:
        self.emitted.append((to, event, data))
        self.changed.set()

    async def disconnect(self, sid: str) -> None:
        self.emitted.append((sid, "<disconnect>", None))

    async def wait_for(self, sid: str, event: str, check: Any = lambda data: True) -> Any:
        async def found() -> Any:
            while True:
                for to, name, data in self.emitted:
                    if to == sid and name == event and check(data):
                        return data
                self.changed.clear()
                await self.changed.wait()
        return await asyncio.wait_for(found(), 5)


@dataclass
class Node:
    cluster: ClusterNode
    fanout: Fanout
    sio: FakeSio


@pytest.fixture
async def nodes() -> AsyncIterator[tuple[Node, Node]]:
    log, network, table, directory = MemoryLog(), MemoryNetwork(), MemoryLeaseTable(), \
        MemoryDirectory()
    built = []
    for name in ("a", "b"):
        sio = FakeSio()
        fanout = Fanout(sio, lambda: T0, name)  # type: ignore[arg-type]
        cluster = ClusterNode(
            name, f"http://{name}", event_log=log,
            leases=MemoryLeases(table, name, log.claim_fence), directory=directory,
            bus=MemoryBus(network, name), fanout=fanout, clock=lambda: T0,
            timings=ClusterTimings(renew_every_s=0.2, heartbeat_every_s=0.2, watch_every_s=0.2,
                                   drain_wait_s=0.2),
        )
        media = MediaCoordinator(fanout, cluster.hub)
        cluster.attach(SessionService(cluster.hub, fanout, media, lambda: T0), media)
        await cluster.start()
        built.append(Node(cluster, fanout, sio))
    yield built[0], built[1]
    for node in built:
        await node.cluster.close()


def create(session_id: str = "s1") -> c.CreateSession:
    return c.CreateSession(session_id, "Group", "group", "IOP", T0, 90, 60)


def socket_on(node: Node, sid: str, pid: str, role: str = "client") -> tuple[Place, JoinClaims]:
    claims = JoinClaims(pid, f"Name {pid}", role, "s1", f"tok-{pid}")  # type: ignore[arg-type]
    node.fanout.add(Connection(sid, "s1", pid, claims.role, TokenBucket(10, 10), live=True,
                               claims=claims, accepted=True))
    return Place(node.cluster.node_id, sid), claims


async def therapist_on_a_client_on_b(a: Node, b: Node) -> tuple[Place, Place]:
    """Session s1 created on a (its owner), its therapist's socket on a, c1's on b."""
    await a.cluster.submit("s1", STAFF, create())
    t_place, t_claims = socket_on(a, "sid-t", "t1", "therapist")
    c_place, c_claims = socket_on(b, "sid-c", "c1")
    assert await a.cluster.connect(t_place, t_claims) is None
    assert await b.cluster.connect(c_place, c_claims) is None
    return t_place, c_place


async def test_a_command_made_on_any_node_is_decided_by_the_owner(
    nodes: tuple[Node, Node],
) -> None:
    a, b = nodes
    assert isinstance(await a.cluster.submit("s1", STAFF, create()), Accepted)
    invite = c.IssueInvite("c1", "Ann Lee", "client", "tok-c1", T0)
    assert isinstance(await b.cluster.submit("s1", STAFF, invite), Accepted)
    assert a.cluster.live_sessions() == ["s1"] and b.cluster.live_sessions() == []
    state = await b.cluster.state("s1")
    assert "c1" in {i.id for i in state.invitees.values()}


async def test_a_socket_on_the_other_node_gets_its_views_from_the_owner(
    nodes: tuple[Node, Node],
) -> None:
    a, b = nodes
    t_place, c_place = await therapist_on_a_client_on_b(a, b)
    waiting = await b.sio.wait_for("sid-c", "state", lambda v: v["you"]["status"] == "waiting")
    assert waiting["participants"] == []
    ack = await a.cluster.event(t_place, "s1", "t1", "therapist", "admit",
                                {"participant_id": "c1"})
    assert ack == {"ok": True}
    await b.sio.wait_for("sid-c", "state", lambda v: v["you"]["status"] == "admitted")
    ack = await b.cluster.event(c_place, "s1", "c1", "client", "chat", {"text": "hi"})
    assert ack == {"ok": True}
    chat = await a.sio.wait_for("sid-t", "chat")
    assert chat["text"] == "hi"
    assert b.cluster.live_sessions() == [], "the socket's node did not take the session"


async def test_a_draining_node_places_new_sessions_on_another(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    a.cluster.draining = True  # b announced itself at start: it is a live, taking node
    assert isinstance(await a.cluster.submit("s2", STAFF, create("s2")), Accepted)
    assert a.cluster.live_sessions() == [] and b.cluster.live_sessions() == ["s2"]


async def test_a_handover_keeps_the_sockets_of_both_nodes_in_place(
    nodes: tuple[Node, Node],
) -> None:
    a, b = nodes
    t_place, _ = await therapist_on_a_client_on_b(a, b)
    await a.cluster.event(t_place, "s1", "t1", "therapist", "admit", {"participant_id": "c1"})
    await a.cluster.drain()
    assert b.cluster.live_sessions() == ["s1"]
    state = await b.cluster.state("s1")
    assert state.participants["c1"].connected and state.participants["c1"].status == "admitted"
    assert ("sid-t", "<disconnect>", None) in a.sio.emitted, "a sent its own sockets away"
    reconnect = [d for to, e, d in a.sio.emitted if to == "sid-t" and e == "reconnect"]
    assert reconnect and reconnect[0]["after_ms"] >= 0


async def test_the_owner_drops_the_participants_of_a_node_that_died(
    nodes: tuple[Node, Node],
) -> None:
    """Nobody else would tell the owner: the node's heartbeat stops, and after two
    directory reads without it its participants are recorded as disconnected."""
    a, b = nodes
    t_place, _ = await therapist_on_a_client_on_b(a, b)
    await a.cluster.event(t_place, "s1", "t1", "therapist", "admit", {"participant_id": "c1"})
    await b.cluster.close()  # withdraws b from the directory, as its heartbeat's expiry would
    for _ in range(100):
        if not (await a.cluster.state("s1")).participants["c1"].connected:
            break
        await asyncio.sleep(0.05)
    state = await a.cluster.state("s1")
    assert not state.participants["c1"].connected and state.participants["t1"].connected
