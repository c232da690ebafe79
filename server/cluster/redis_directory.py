"""The node directory in Redis: one expiring key per node, listed by a sorted set.

`{prefix}node:{id}` holds the node's `NodeInfo` as JSON and expires with the heartbeat's TTL;
`{prefix}nodes` scores each id by the unix time its heartbeat ends, so listing the nodes
needs no SCAN and expired ids are trimmed by score. The score is the writer's wall clock and
the trim the reader's, so the nodes' clocks must agree to well within a TTL (NTP does).
`{prefix}interest:{session_id}` is the set of nodes holding sockets of the session.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, fields, replace

from redis.asyncio import Redis

from signaling.ports import NodeInfo

INTEREST_TTL_S = 86_400
"""Refreshed by every add: the set of a session nobody joins any more (its nodes died, or
never removed themselves) is gone a day later, while sessions last hours."""

_FIELDS = frozenset(f.name for f in fields(NodeInfo))


def _text(value: bytes | str) -> str:
    """Whether the client decodes responses or not is its owner's choice, not this module's."""
    return value.decode() if isinstance(value, bytes) else value


def _decode(raw: bytes | str) -> NodeInfo:
    """Unknown fields are dropped so a node of a newer version, announcing more, does not
    break the listing for older ones during a rolling upgrade."""
    data = json.loads(raw)
    known = {k: v for k, v in data.items() if k in _FIELDS}
    known["session_ids"] = tuple(known.get("session_ids", ()))
    return NodeInfo(**known)


class RedisDirectory:
    """`now` (unix seconds) stamps `seen_at` and scores expiry; give every node the same clock."""

    def __init__(
        self, redis: Redis, *, prefix: str = "circle:", now: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self._now = now
        self._nodes_key = f"{prefix}nodes"

    def _node_key(self, node_id: str) -> str:
        return f"{self._prefix}node:{node_id}"

    def _interest_key(self, session_id: str) -> str:
        return f"{self._prefix}interest:{session_id}"

    async def announce(self, info: NodeInfo, ttl_s: float) -> None:
        """One round trip; `seen_at` is set to now, the heartbeat's time by this directory."""
        now = self._now()
        stamped = replace(info, seen_at=now)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self._node_key(info.node_id), json.dumps(asdict(stamped)),
                     px=round(ttl_s * 1000))
            pipe.zadd(self._nodes_key, {info.node_id: now + ttl_s})
            await pipe.execute()

    async def withdraw(self, node_id: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._node_key(node_id))
            pipe.zrem(self._nodes_key, node_id)
            await pipe.execute()

    async def nodes(self) -> list[NodeInfo]:
        """Two round trips (one when no node is live): trim and list the ids, then their info.

        An id whose key has already expired (Redis's clock ran ahead of the score) is left
        out; its member goes with the next trim.
        """
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zremrangebyscore(self._nodes_key, "-inf", self._now())
            pipe.zrange(self._nodes_key, 0, -1)
            _, ids = await pipe.execute()
        if not ids:
            return []
        raws: list[bytes | str | None] = await self._redis.mget(
            [self._node_key(_text(node_id)) for node_id in ids]
        )
        infos = [_decode(raw) for raw in raws if raw is not None]
        return sorted(infos, key=lambda info: info.node_id)

    async def add_interest(self, session_id: str, node_id: str) -> None:
        key = self._interest_key(session_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.sadd(key, node_id)
            pipe.expire(key, INTEREST_TTL_S)
            await pipe.execute()

    async def remove_interest(self, session_id: str, node_id: str) -> None:
        await self._redis.srem(self._interest_key(session_id), node_id)

    async def interested(self, session_id: str) -> set[str]:
        members: set[bytes | str] = await self._redis.smembers(self._interest_key(session_id))
        return {_text(member) for member in members}
