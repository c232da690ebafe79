"""The cluster's parts for this node: on Redis when `CIRCLE_REDIS_URL` is set, else in memory.

One node without Redis runs the very same ownership and routing code, with leases, the
node directory and the bus in this process: there is one code path, and the cluster's
behaviour is exercised by every single-node test too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from server.config import Settings
from signaling.cluster.memory_bus import MemoryBus, MemoryNetwork
from signaling.cluster.memory_leases import MemoryDirectory, MemoryLeases, MemoryLeaseTable
from signaling.ports import Bus, Directory, Leases

PING_TIMEOUT_S = 2.0


@dataclass
class ClusterParts:
    leases: Leases
    directory: Directory
    bus: Bus
    redis_ok: Callable[[], Awaitable[bool | None]]
    """True/False: Redis answered a PING; None: no Redis is configured."""
    close: Callable[[], Awaitable[None]]


def open_cluster(settings: Settings, fence_source: Callable[[str], Awaitable[int]]
                 ) -> ClusterParts:
    node_id = settings.node_name
    if settings.redis_url is None:
        async def no_redis() -> bool | None:
            return None

        async def nothing() -> None:
            return None

        return ClusterParts(
            leases=MemoryLeases(MemoryLeaseTable(), node_id, fence_source,
                                ttl_s=settings.lease_ttl_s),
            directory=MemoryDirectory(),
            bus=MemoryBus(MemoryNetwork(), node_id),
            redis_ok=no_redis,
            close=nothing,
        )

    from server.cluster.redis_bus import RedisStreamsBus
    from server.cluster.redis_client import open_redis
    from server.cluster.redis_directory import RedisDirectory
    from server.cluster.redis_leases import RedisLeases

    redis = open_redis(settings.redis_url)
    prefix = settings.redis_prefix

    async def ping() -> bool | None:
        try:
            return bool(await asyncio.wait_for(redis.ping(), PING_TIMEOUT_S))
        except Exception:
            return False

    async def close() -> None:
        await redis.aclose()

    return ClusterParts(
        leases=RedisLeases(redis, node_id, fence_source, ttl_s=settings.lease_ttl_s,
                           prefix=prefix),
        directory=RedisDirectory(redis, prefix=prefix),
        bus=RedisStreamsBus(settings.redis_url, node_id, prefix),
        redis_ok=ping,
        close=close,
    )
