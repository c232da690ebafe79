"""One way to open Redis connections, with the timeouts the cluster's parts rely on.

redis-py >= 8 gives every connection a socket timeout, which breaks long blocking reads
(XREAD BLOCK): the bus's reader asks for `blocking=True` and gets none, relying on
`health_check_interval` and its own block timeout to notice a dead server instead.
"""

from __future__ import annotations

from redis.asyncio import Redis

CONNECT_TIMEOUT_S = 2.0
COMMAND_TIMEOUT_S = 2.0
HEALTH_CHECK_INTERVAL_S = 5


def open_redis(url: str, *, blocking: bool = False) -> Redis:
    """A client for `url` (redis://host:port/db); `blocking` for a reader that blocks."""
    return Redis.from_url(
        url,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        socket_timeout=None if blocking else COMMAND_TIMEOUT_S,
        health_check_interval=HEALTH_CHECK_INTERVAL_S,
        decode_responses=False,
    )
