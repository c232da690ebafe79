"""The bus inside one process: a single-node server, or several "nodes" in one test.

It keeps the Redis bus's observable rules, so code tested against it meets no surprise in a
cluster: messages travel as the same compact JSON with the same size cap (a dict shared
between nodes, or a value Redis could not carry, would pass here and fail there), what was
sent to a node before it started is never delivered, and `MemoryNetwork.cut`/`restore` let
tests stage the outages and losses the Redis bus reports through `on_resync`.

The wire format and the delivery rule (a failing handler is logged by type and location,
never with the message, which may carry PHI) are shared by every bus and live here, with the
reference implementation, because `signaling` may not depend on the Redis adapter.
"""

from __future__ import annotations

import asyncio
import json
import logging
import traceback

from signaling.ports import BusHandler, BusUnavailable, JsonRecord, ResyncHandler

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 1 << 20
"""Large enough for any control message, small enough that one cannot stall an inbox."""


def encode_message(message: JsonRecord) -> bytes:
    """Compact UTF-8 JSON; ValueError over MAX_MESSAGE_BYTES or for NaN, which JSON lacks."""
    data = json.dumps(
        dict(message), separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()
    if len(data) > MAX_MESSAGE_BYTES:
        raise ValueError(f"a bus message of {len(data)} bytes exceeds {MAX_MESSAGE_BYTES}")
    return data


def decode_message(data: bytes) -> JsonRecord:
    """ValueError unless `data` is a JSON object (a handler must never see anything else)."""
    message = json.loads(data)
    if not isinstance(message, dict):
        raise ValueError("a bus message must be a JSON object")
    return message


def where(exc: BaseException) -> str:
    """The file and line an exception came from: enough to find a bug, no data in it."""
    frames = traceback.extract_tb(exc.__traceback__)
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"


async def deliver(handler: BusHandler, data: bytes, logger: logging.Logger) -> None:
    """Hand one message to `handler`; neither bad data nor a failing handler stops the reader."""
    try:
        message = decode_message(data)
    except ValueError:
        logger.warning("skipped an undecodable bus message")
        return
    try:
        await handler(message)
    except Exception as exc:
        logger.error("bus handler failed: %s at %s", type(exc).__name__, where(exc))


async def resync(on_resync: ResyncHandler, logger: logging.Logger) -> None:
    """Tell the node its messages may be incomplete; a failing rebuild must not stop reading."""
    logger.warning("bus messages may have been lost: resyncing")
    try:
        await on_resync()
    except Exception as exc:
        logger.error("bus resync handler failed: %s at %s", type(exc).__name__, where(exc))


class MemoryNetwork:
    """What the buses of one process share: the started inboxes, and whether the "wire" is up."""

    def __init__(self) -> None:
        self._inboxes: dict[str, MemoryBus] = {}
        self._up = asyncio.Event()
        self._up.set()

    @property
    def up(self) -> bool:
        return self._up.is_set()

    def cut(self) -> None:
        """An outage: sends raise BusUnavailable, readers pause, every bus is unhealthy."""
        self._up.clear()

    async def restore(self, lost: bool) -> None:
        """End an outage; with `lost`, what was still unread is dropped and every started bus
        runs `on_resync` before any later message, as after a Redis restart. Returns once
        all of them have."""
        done = [bus.lose_unread() for bus in self._inboxes.values()] if lost else []
        self._up.set()
        await asyncio.gather(*done)

    async def wait_up(self) -> None:
        await self._up.wait()

    def attach(self, bus: MemoryBus) -> None:
        """Make `bus` its node's reader; a later start under the same node id takes over."""
        self._inboxes[bus.node_id] = bus

    def detach(self, bus: MemoryBus) -> None:
        if self._inboxes.get(bus.node_id) is bus:
            del self._inboxes[bus.node_id]

    def post(self, node_id: str, data: bytes) -> None:
        """Queue `data` for `node_id`; with no reader started there it is gone, just as a
        Redis inbox's leftovers are skipped by the next start."""
        inbox = self._inboxes.get(node_id)
        if inbox is not None:
            inbox.enqueue(data)


class MemoryBus:
    """One node's end of a MemoryNetwork (implements signaling.ports.Bus)."""

    def __init__(self, network: MemoryNetwork, node_id: str) -> None:
        self.node_id = node_id
        self._network = network
        self._queue: asyncio.Queue[bytes | asyncio.Future[None]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    async def start(self, handler: BusHandler, on_resync: ResyncHandler) -> None:
        if self._task is not None or self._closed:
            raise RuntimeError("a bus starts once")
        self._network.attach(self)
        self._task = asyncio.create_task(
            self._read(handler, on_resync), name=f"bus-reader:{self.node_id}"
        )

    async def send(self, node_id: str, message: JsonRecord) -> None:
        data = encode_message(message)
        if self._closed:
            raise BusUnavailable("the bus is closed")
        if not self._network.up:
            raise BusUnavailable("the network is cut")
        self._network.post(node_id, data)

    def healthy(self) -> bool:
        return self._network.up and self._task is not None and not self._task.done()

    async def close(self) -> None:
        self._closed = True
        self._network.detach(self)
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])
        self._release_markers()

    def enqueue(self, data: bytes) -> None:
        self._queue.put_nowait(data)

    def lose_unread(self) -> asyncio.Future[None]:
        """Drop what is queued and queue a resync in its place; the future is done once the
        reader has run `on_resync` (or the bus closed first). A resync still queued from an earlier
        loss covers this one too, since it has not run yet."""
        owed: asyncio.Future[None] | None = None
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if isinstance(item, asyncio.Future):
                owed = item
        marker = asyncio.get_running_loop().create_future() if owed is None else owed
        self._queue.put_nowait(marker)
        return marker

    async def _read(self, handler: BusHandler, on_resync: ResyncHandler) -> None:
        while True:
            await self._network.wait_up()
            item = await self._queue.get()
            if isinstance(item, bytes):
                await deliver(handler, item, log)
                continue
            try:
                await resync(on_resync, log)
            finally:
                if not item.done():
                    item.set_result(None)

    def _release_markers(self) -> None:
        """Nobody may wait forever on a resync a closed bus will never run."""
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if isinstance(item, asyncio.Future) and not item.done():
                item.set_result(None)
