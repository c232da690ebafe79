"""Session leases in Redis: `{prefix}lease:{session_id}` holds the owner's node id, with a TTL.

Every change is one Lua script (one round trip) that decides on the value it reads, so a
node never acts on a lease another node holds, and each is safe to repeat after a broken
connection left its outcome unknown: a repeated claim finds the key already this node's.

A key held by this node counts as free to this node: the holder is the node id, not one
claim. That is what a node restarting under the same id needs (its old process's leases are
its own, and the sessions routed to it must not wait out the TTL), and a second claim in one
process supersedes the first; either way the new claim takes a new fence, so appends still
carrying the old one fail. It also means node ids must not be shared by two live processes:
they would take sessions from each other, and only the fence would keep the ledger whole.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import replace

from redis.asyncio import Redis
from redis.exceptions import RedisError

from signaling.cluster.memory_leases import FenceSource
from signaling.ports import Lease

BELIEVED_FRACTION = 0.9
"""A node believes a lease for this share of its TTL, counted from before the command is sent.

Counting from before the send already covers the trip to Redis; the rest covers Redis's clock
running faster than this host's and the pause between checking `Lease.held` and acting.
"""

RENEW_BATCH = 500
"""Leases per renewal script: Redis runs a script alone, so a node with thousands of sessions
must not stall it (and the bus) for the whole batch at once."""

_CLAIM = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

_RENEW = """
local renewed = {}
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
    renewed[i] = 1
  else
    renewed[i] = 0
  end
end
return renewed
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisLeases:
    """One node's leases in a Redis shared by every node (a single instance, not a cluster:
    a renewal script spans many keys)."""

    def __init__(
        self, redis: Redis, node_id: str, fence_source: FenceSource, *,
        ttl_s: float = 6.0, prefix: str = "circle:",
    ) -> None:
        self._node_id = node_id
        self._fence_source = fence_source
        self._ttl_s = ttl_s
        self._ttl_ms = round(ttl_s * 1000)
        self._prefix = prefix
        self._claim = redis.register_script(_CLAIM)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)
        self._redis = redis

    def _key(self, session_id: str) -> str:
        return f"{self._prefix}lease:{session_id}"

    def _believed_until(self, sent_at: float) -> float:
        return sent_at + self._ttl_s * BELIEVED_FRACTION

    async def claim(self, session_id: str) -> Lease | None:
        """Take the session (one round trip), then its fence from `fence_source`.

        If the claim's outcome is unknown (an error, a cancellation) or the fence cannot be
        taken, the key is deleted again if it is this node's, so the session stays claimable
        rather than owned by a node that does not know it; should that fail too, the key
        lapses within the TTL.
        """
        key = self._key(session_id)
        sent_at = time.monotonic()
        try:
            won = await self._claim(keys=[key], args=[self._node_id, self._ttl_ms])
            if not won:
                return None
            fence = await self._fence_source(session_id)
        except BaseException:
            with contextlib.suppress(RedisError):
                await self._release(keys=[key], args=[self._node_id])
            raise
        return Lease(session_id, self._node_id, fence, self._believed_until(sent_at))

    async def renew(self, leases: Sequence[Lease]) -> list[Lease | None]:
        """One round trip per `RENEW_BATCH` leases; None where the key is gone or not ours."""
        renewed: list[Lease | None] = []
        for start in range(0, len(leases), RENEW_BATCH):
            batch = leases[start:start + RENEW_BATCH]
            sent_at = time.monotonic()
            kept = await self._renew(
                keys=[self._key(lease.session_id) for lease in batch],
                args=[self._node_id, self._ttl_ms],
            )
            until = self._believed_until(sent_at)
            renewed.extend(
                replace(lease, expires=until) if ok else None
                for lease, ok in zip(batch, kept, strict=True)
            )
        return renewed

    async def release(self, lease: Lease) -> None:
        await self._release(keys=[self._key(lease.session_id)], args=[self._node_id])

    async def owner(self, session_id: str) -> str | None:
        holder: bytes | str | None = await self._redis.get(self._key(session_id))
        return holder.decode() if isinstance(holder, bytes) else holder
