"""Leases and the node directory inside one process, for one node or for nodes in a test.

They keep the rules of the Redis versions (server/cluster/) so one contract suite holds for
both: several `MemoryLeases` contend through one `MemoryLeaseTable` as nodes contend through
Redis, and one `MemoryDirectory` is shared by every node the way one Redis is.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace

from signaling.ports import Lease, NodeInfo

FenceSource = Callable[[str], Awaitable[int]]
"""Takes the next fence of a session from the ledger (`EventLog.claim_fence`)."""


class MemoryLeaseTable:
    """Which node holds each session and until when: what Redis keeps in a cluster.

    It owns the clock (`now`, monotonic seconds) because expiry is the store's judgement,
    not each node's, exactly as Redis expires keys on its own clock.
    """

    def __init__(self, *, now: Callable[[], float] = time.monotonic) -> None:
        self.now = now
        self._held: dict[str, tuple[str, float]] = {}

    def holder(self, session_id: str) -> str | None:
        entry = self._held.get(session_id)
        if entry is None:
            return None
        node_id, until = entry
        if self.now() >= until:
            del self._held[session_id]
            return None
        return node_id

    def hold(self, session_id: str, node_id: str, until: float) -> None:
        self._held[session_id] = (node_id, until)

    def drop(self, session_id: str, node_id: str) -> None:
        """Forget the session's lease only if `node_id` holds it, so a late release by a node
        that already lost it cannot free the new holder's session."""
        if self.holder(session_id) == node_id:
            del self._held[session_id]


class MemoryLeases:
    """One node's view of a `MemoryLeaseTable`.

    As with Redis, a claim of a session this node already holds succeeds with a new fence:
    the holder is a node, not one claim, so the newer claim supersedes the older one and its
    fence shuts out appends still carrying the old one.
    """

    def __init__(
        self, table: MemoryLeaseTable, node_id: str, fence_source: FenceSource, *,
        ttl_s: float = 6.0,
    ) -> None:
        self._table = table
        self._node_id = node_id
        self._fence_source = fence_source
        self._ttl_s = ttl_s

    async def claim(self, session_id: str) -> Lease | None:
        if self._table.holder(session_id) not in (None, self._node_id):
            return None
        until = self._table.now() + self._ttl_s
        # Held before the fence is awaited, so no other node can claim in between.
        self._table.hold(session_id, self._node_id, until)
        try:
            fence = await self._fence_source(session_id)
        except BaseException:
            self._table.drop(session_id, self._node_id)
            raise
        return Lease(session_id, self._node_id, fence, until)

    async def renew(self, leases: Sequence[Lease]) -> list[Lease | None]:
        until = self._table.now() + self._ttl_s
        renewed: list[Lease | None] = []
        for lease in leases:
            if self._table.holder(lease.session_id) == self._node_id:
                self._table.hold(lease.session_id, self._node_id, until)
                renewed.append(replace(lease, expires=until))
            else:
                renewed.append(None)
        return renewed

    async def release(self, lease: Lease) -> None:
        self._table.drop(lease.session_id, self._node_id)

    async def owner(self, session_id: str) -> str | None:
        return self._table.holder(session_id)


class MemoryDirectory:
    """The live nodes and each session's interested nodes; share one instance among nodes.

    `now` is the wall clock (unix seconds) that stamps `seen_at` and judges expiry, so tests
    can move it instead of waiting.
    """

    def __init__(self, *, now: Callable[[], float] = time.time) -> None:
        self._now = now
        self._nodes: dict[str, tuple[NodeInfo, float]] = {}
        self._interest: dict[str, set[str]] = {}

    async def announce(self, info: NodeInfo, ttl_s: float) -> None:
        """Store `info` with `seen_at` set to now: the heartbeat's time is the directory's."""
        now = self._now()
        self._nodes[info.node_id] = (replace(info, seen_at=now), now + ttl_s)

    async def withdraw(self, node_id: str) -> None:
        self._nodes.pop(node_id, None)

    async def nodes(self) -> list[NodeInfo]:
        now = self._now()
        for node_id in [n for n, (_, until) in self._nodes.items() if until <= now]:
            del self._nodes[node_id]
        return [info for _, (info, _) in sorted(self._nodes.items())]

    async def add_interest(self, session_id: str, node_id: str) -> None:
        self._interest.setdefault(session_id, set()).add(node_id)

    async def remove_interest(self, session_id: str, node_id: str) -> None:
        nodes = self._interest.get(session_id)
        if nodes is None:
            return
        nodes.discard(node_id)
        if not nodes:
            del self._interest[session_id]

    async def interested(self, session_id: str) -> set[str]:
        return set(self._interest.get(session_id, ()))
