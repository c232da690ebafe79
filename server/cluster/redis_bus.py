"""The cluster bus on Redis Streams: one capped stream per node's inbox, read with XREAD.

Not python-socketio's Redis manager: it drops a publish after two tries and its listener can
die without a word (python-socketio #1581), leaving a node deaf while it looks alive. Here a
send lands or raises BusUnavailable, the reader reconnects until close(), and whenever
messages may have been lost (Redis restarted empty, the reader fell behind the length cap,
an outage outlived an inbox's expiry) the node hears it once, through `on_resync`.

redis-py's own retries are switched off: they would hide from the reader that it reconnected
(possibly to a restarted, empty Redis) and stretch a send far past its budget.
Needs Redis >= 7.0: XINFO STREAM's entries-added is what tells that unread entries were trimmed.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from server.cluster.redis_client import COMMAND_TIMEOUT_S, open_redis
from signaling.cluster.memory_bus import deliver, encode_message, resync, where
from signaling.ports import BusHandler, BusUnavailable, JsonRecord, ResyncHandler

log = logging.getLogger(__name__)

INBOX_TTL_S = 3600
"""An inbox nobody has sent to for this long (its node is gone) is dropped by Redis."""
SEND_BUDGET_S = 1.0
SEND_RETRY_FIRST_S = 0.05
SEND_RETRY_CAP_S = 0.3
READ_BATCH = 100
RECONNECT_FIRST_S = 0.05
RECONNECT_CAP_S = 2.0
READ_GRACE_S = 1.0
"""How much longer than its BLOCK a read may take before the connection counts as dead."""
REDIS_DOWN = (RedisError, OSError)
"""What an unreachable, restarting or overloaded Redis raises (OSError: timeouts, resets)."""

Entry = tuple[bytes, dict[bytes, bytes]]


def _unretried(client: Redis) -> Redis:
    client.set_retry(Retry(NoBackoff(), 0))
    return client


class _Backoff:
    """Capped exponential delays with jitter, so nodes do not reconnect in lockstep."""

    def __init__(self) -> None:
        self._next = RECONNECT_FIRST_S

    def reset(self) -> None:
        self._next = RECONNECT_FIRST_S

    def delay(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, RECONNECT_CAP_S)
        return random.uniform(delay / 2, delay)  # noqa: S311 (jitter, not a secret)


class RedisStreamsBus:
    """One node's inbox `{prefix}inbox:{node_id}` and its sends (implements ports.Bus).

    `maxlen` caps every inbox this node sends to (approximately, as XADD MAXLEN ~ does), so
    all nodes should use one value. `block_ms` is how long one XREAD waits: the reader shows
    a sign of life at least that often, which is what `healthy()` watches.
    """

    def __init__(
        self, url: str, node_id: str, prefix: str = "circle:", *,
        maxlen: int = 10_000, block_ms: int = 1000,
    ) -> None:
        self.node_id = node_id
        self._prefix = prefix
        self._inbox = self._inbox_key(node_id)
        self._maxlen = maxlen
        self._block_ms = block_ms
        self._commands = _unretried(open_redis(url))
        self._reading = _unretried(open_redis(url, blocking=True))
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._run_id = ""
        self._last_id = b"0-0"
        self._added_up_to = 0
        """How many entries the inbox had been given up to and including `_last_id`."""
        self._connected = False
        self._alive_at = 0.0
        self._down_since: float | None = None
        self._sends_failing = False
        self._backoff = _Backoff()

    def _inbox_key(self, node_id: str) -> str:
        return f"{self._prefix}inbox:{node_id}"

    async def start(self, handler: BusHandler, on_resync: ResyncHandler) -> None:
        """Raises BusUnavailable if Redis cannot be reached: the node cannot join without it."""
        if self._task is not None or self._closed:
            raise RuntimeError("a bus starts once")
        try:
            server, _, stream = await self._snapshot(b"$")
        except REDIS_DOWN as exc:
            raise BusUnavailable(f"Redis unreachable ({type(exc).__name__})") from None
        self._run_id = server["run_id"]
        if isinstance(stream, dict):
            self._last_id, self._added_up_to = stream["last-generated-id"], stream["entries-added"]
        self._back_in_touch()
        self._task = asyncio.create_task(
            self._read_forever(handler, on_resync), name=f"bus-reader:{self.node_id}"
        )

    async def send(self, node_id: str, message: JsonRecord) -> None:
        """Retries for up to SEND_BUDGET_S. A send that raised may still have landed (its
        reply was lost), and one retried after a lost reply may, rarely, arrive twice."""
        data = encode_message(message)
        if self._closed:
            raise BusUnavailable("the bus is closed")
        key = self._inbox_key(node_id)
        pause = SEND_RETRY_FIRST_S
        try:
            async with asyncio.timeout(SEND_BUDGET_S):
                while True:
                    try:
                        await self._append(key, data)
                        break
                    except REDIS_DOWN:
                        await asyncio.sleep(pause)
                        pause = min(pause * 2, SEND_RETRY_CAP_S)
        except TimeoutError:
            if not self._sends_failing:
                log.warning("bus sends to Redis are failing")
            self._sends_failing = True
            raise BusUnavailable(f"Redis did not take the message in {SEND_BUDGET_S} s") from None
        if self._sends_failing:
            log.info("bus sends to Redis work again")
        self._sends_failing = False

    def healthy(self) -> bool:
        if self._task is None or self._task.done() or not self._connected:
            return False
        stale_after = 2 * self._block_ms / 1000 + READ_GRACE_S
        return not self._sends_failing and time.monotonic() - self._alive_at <= stale_after

    async def close(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])
        await self._reading.aclose()
        await self._commands.aclose()

    async def _append(self, key: str, data: bytes) -> None:
        """XADD and the inbox's expiry in one transaction: a dead node's inbox goes away."""
        async with self._commands.pipeline(transaction=True) as pipe:
            pipe.xadd(key, {b"m": data}, maxlen=self._maxlen, approximate=True)
            pipe.expire(key, INBOX_TTL_S)
            await pipe.execute()

    # -- the reader -------------------------------------------------------------------------

    async def _read_forever(self, handler: BusHandler, on_resync: ResyncHandler) -> None:
        """Never gives up before close(): a deaf node that looks alive is the failure to avoid."""
        while True:
            try:
                await self._read(handler, on_resync)
            except REDIS_DOWN as exc:
                self._lost_touch(f"lost Redis ({type(exc).__name__})")
            except Exception as exc:
                self._lost_touch(f"crashed ({type(exc).__name__} at {where(exc)})")
            await asyncio.sleep(self._backoff.delay())

    async def _read(self, handler: BusHandler, on_resync: ResyncHandler) -> None:
        while True:
            lost, entries = await self._next_batch()
            if self._back_in_touch() >= INBOX_TTL_S or lost:
                await resync(on_resync, log)
            for entry_id, fields in entries:
                # First: an entry that crashes the reader is not retried.
                self._last_id, self._added_up_to = entry_id, self._added_up_to + 1
                await deliver(handler, fields.get(b"m", b""), log)
                self._alive_at = time.monotonic()
            if entries:
                # Read entries are only memory (views carry whole rosters): drop them, keeping
                # the last one, so the inbox still holds at least what is unread and the
                # length check above still tells a trim by the cap from this one.
                await self._reading.xtrim(self._inbox, minid=self._last_id)
            else:
                await self._wait_for_news()

    async def _next_batch(self) -> tuple[bool, list[Entry]]:
        """The entries after the last id, and whether any were lost before them.

        The server's run id, the entries and the stream's counters come from one
        transaction, so they describe one moment on one server: a connection redis-py reopened
        to a restarted Redis (it reconnects on the next command) cannot pass for the old one.
        """
        lost = False
        while True:
            server, reply, stream = await self._snapshot(self._last_id)
            if server["run_id"] == self._run_id:
                break
            # Redis restarted empty: all its inbox holds was sent since, from its first id on.
            self._run_id, self._last_id, self._added_up_to = server["run_id"], b"0-0", 0
            lost = True
        if isinstance(stream, dict):
            lost = self._trimmed(stream["entries-added"], stream["length"]) or lost
        entries: list[Entry] = reply[0][1] if reply else []
        return lost, entries

    def _trimmed(self, added: int, length: int) -> bool:
        """Whether the length cap dropped entries after the last id before they were read.

        Trimming drops the oldest first, so then the inbox holds fewer entries than it was
        given after the last id; the position moves past the lost ones.
        """
        if added < self._added_up_to:  # the inbox expired and was made anew: none of it read
            self._added_up_to = 0
        if length >= added - self._added_up_to:
            return False
        self._added_up_to = added - length
        return True

    async def _snapshot(self, after: bytes) -> tuple[dict[str, Any], Any, Any]:
        """INFO server, XREAD (not blocking, inside MULTI) and XINFO STREAM, atomically.

        XINFO fails on a missing inbox, and only then (XREAD would fail on a wrong type), so
        its error just means "no stream".
        """
        async with asyncio.timeout(COMMAND_TIMEOUT_S), self._reading.pipeline() as pipe:
            pipe.info("server")
            pipe.xread({self._inbox: after}, count=READ_BATCH)
            pipe.xinfo_stream(self._inbox)
            server, reply, stream = await pipe.execute(raise_on_error=False)
        for result in (server, reply):
            if isinstance(result, Exception):
                raise result
        return server, reply, stream

    async def _wait_for_news(self) -> None:
        """Block until the inbox has something past the last id (read again by the next
        batch) or BLOCK ends; a read that outlives BLOCK means a dead connection."""
        async with asyncio.timeout(self._block_ms / 1000 + READ_GRACE_S):
            await self._reading.xread({self._inbox: self._last_id}, count=1, block=self._block_ms)
        self._alive_at = time.monotonic()

    def _back_in_touch(self) -> float:
        """Mark the reader connected; returns how long it had been out of touch (0 if not)."""
        now = time.monotonic()
        outage = 0.0 if self._down_since is None else now - self._down_since
        if self._down_since is not None:
            log.info("bus reader reading again after %.1f s", outage)
            self._down_since = None
            self._sends_failing = False  # a fresh connection worked; the next send will tell
            self._backoff.reset()
        self._connected = True
        self._alive_at = now
        return outage

    def _lost_touch(self, why: str) -> None:
        """One warning per outage, however many reconnect attempts it takes."""
        self._connected = False
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning("bus reader %s; reconnecting", why)
