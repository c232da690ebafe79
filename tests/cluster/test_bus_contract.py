"""The cluster bus's contract, held by the in-memory bus and the Redis Streams bus alike.

One suite runs against both, so a single-node server (memory) and a cluster (Redis) cannot
drift apart; then each implementation's own failures: a cut network for the memory bus, and
for Redis a killed or restarted server of the test's own, a reader that fell behind the
length cap, and a reader that crashed. Waits are on conditions with deadlines, never sleeps.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from redis.exceptions import RedisError

from server.cluster import redis_bus
from server.cluster.redis_bus import SEND_BUDGET_S, RedisStreamsBus
from server.cluster.redis_client import open_redis
from signaling.cluster.memory_bus import MAX_MESSAGE_BYTES, MemoryBus, MemoryNetwork, deliver
from signaling.ports import Bus, BusHandler, BusUnavailable, JsonRecord
from tests.ci import unavailable
from tests.cluster.redis_server import RedisServer, redis_server, shared_redis_url

BLOCK_MS = 200
MakeBus = Callable[..., Bus]


async def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        # Conditions read what crossed a real Redis, or `healthy()`: nothing to wait on.
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


class Recorder:
    """A node's view of its inbox: messages and resyncs, in the order they happened."""

    def __init__(self) -> None:
        self.events: list[JsonRecord | str] = []

    @property
    def messages(self) -> list[JsonRecord]:
        return [e for e in self.events if not isinstance(e, str)]

    @property
    def resyncs(self) -> int:
        return self.events.count("resync")

    async def handler(self, message: JsonRecord) -> None:
        self.events.append(message)

    async def on_resync(self) -> None:
        self.events.append("resync")


async def started(bus: Bus, handler: BusHandler | None = None) -> Recorder:
    recorder = Recorder()
    await bus.start(handler or recorder.handler, recorder.on_resync)
    return recorder


async def require_redis(url: str) -> None:
    client = open_redis(url)
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        unavailable(f"no Redis at {url} ({type(exc).__name__})")
    finally:
        await client.aclose()


async def delete_keys(url: str, prefix: str) -> None:
    client = open_redis(url)
    try:
        async for key in client.scan_iter(match=f"{prefix}*"):
            await client.delete(key)
    finally:
        await client.aclose()


@pytest.fixture
async def memory_buses() -> AsyncIterator[tuple[MemoryNetwork, Callable[[str], MemoryBus]]]:
    network = MemoryNetwork()
    buses: list[MemoryBus] = []

    def make(node_id: str) -> MemoryBus:
        buses.append(MemoryBus(network, node_id))
        return buses[-1]

    yield network, make
    for bus in buses:
        await bus.close()


@pytest.fixture
async def redis_buses() -> AsyncIterator[Callable[..., RedisStreamsBus]]:
    """Buses on the shared Redis under a prefix of their own, whose keys go afterwards."""
    url = shared_redis_url()
    await require_redis(url)
    prefix = f"test:bus:{secrets.token_hex(6)}:"
    buses: list[RedisStreamsBus] = []

    def make(node_id: str, **options: Any) -> RedisStreamsBus:
        buses.append(RedisStreamsBus(url, node_id, prefix, block_ms=BLOCK_MS, **options))
        return buses[-1]

    yield make
    for bus in buses:
        await bus.close()
    await delete_keys(url, prefix)


@pytest.fixture(params=["memory", "redis"])
def make_bus(request: pytest.FixtureRequest) -> MakeBus:
    if request.param == "memory":
        _, make = request.getfixturevalue("memory_buses")
        return make  # type: ignore[no-any-return]
    return request.getfixturevalue("redis_buses")  # type: ignore[no-any-return]


# -- the contract ----------------------------------------------------------------------------


async def test_a_message_reaches_only_the_node_it_is_addressed_to(make_bus: MakeBus) -> None:
    a, b, c = make_bus("a"), make_bus("b"), make_bus("c")
    at_a, at_b, at_c = await started(a), await started(b), await started(c)

    await a.send("b", {"to": "b"})
    await a.send("c", {"to": "c"})
    await b.send("a", {"to": "a"})
    await wait_until(lambda: bool(at_a.messages and at_b.messages and at_c.messages))

    # Anything misrouted from one sender would have arrived before its later message.
    assert at_b.messages == [{"to": "b"}]
    assert at_c.messages == [{"to": "c"}]
    assert at_a.messages == [{"to": "a"}]


async def test_messages_from_one_sender_arrive_in_the_order_sent(make_bus: MakeBus) -> None:
    target, first, second = make_bus("target"), make_bus("first"), make_bus("second")
    inbox = await started(target)
    await started(first)
    await started(second)

    async def send_all(sender: Bus) -> None:
        for n in range(30):
            await sender.send("target", {"from": sender.node_id, "n": n})

    await asyncio.gather(send_all(first), send_all(second))
    await wait_until(lambda: len(inbox.messages) == 60)

    for sender in ("first", "second"):
        assert [m["n"] for m in inbox.messages if m["from"] == sender] == list(range(30))


async def test_a_started_bus_skips_what_was_left_for_its_node_id(make_bus: MakeBus) -> None:
    sender = make_bus("sender")
    await started(sender)
    await sender.send("n", {"left": "before any start"})
    earlier = make_bus("n")
    at_earlier = await started(earlier)
    await sender.send("n", {"for": "earlier"})
    await wait_until(lambda: bool(at_earlier.messages))
    await earlier.close()
    await sender.send("n", {"left": "after close"})

    later = make_bus("n")
    at_later = await started(later)
    await sender.send("n", {"for": "later"})
    await wait_until(lambda: bool(at_later.messages))

    assert at_earlier.messages == [{"for": "earlier"}]
    assert at_later.messages == [{"for": "later"}]


async def test_a_failing_handler_is_logged_without_the_message_and_reading_goes_on(
    make_bus: MakeBus, caplog: pytest.LogCaptureFixture
) -> None:
    sender, receiver = make_bus("sender"), make_bus("receiver")
    await started(sender)
    seen: list[JsonRecord] = []

    async def handler(message: JsonRecord) -> None:
        seen.append(message)
        if "secret" in message:
            raise RuntimeError(message["secret"])

    await started(receiver, handler)
    await sender.send("receiver", {"secret": "Jane Doe, DOB 1970-01-01"})
    await sender.send("receiver", {"n": 2})
    await wait_until(lambda: len(seen) == 2)

    assert seen[1] == {"n": 2}
    assert "RuntimeError" in caplog.text
    assert "Jane" not in caplog.text


async def test_a_message_over_the_size_cap_is_refused(make_bus: MakeBus) -> None:
    sender, receiver = make_bus("sender"), make_bus("receiver")
    await started(sender)
    inbox = await started(receiver)
    at_cap = {"x": "a" * (MAX_MESSAGE_BYTES - len('{"x":""}'))}

    with pytest.raises(ValueError):
        await sender.send("receiver", {"x": at_cap["x"] + "a"})
    await sender.send("receiver", at_cap)
    await wait_until(lambda: bool(inbox.messages))

    assert inbox.messages == [at_cap]


async def test_close_stops_delivery_and_sends(make_bus: MakeBus) -> None:
    sender, closing, witness = make_bus("sender"), make_bus("closing"), make_bus("witness")
    await started(sender)
    at_closing = await started(closing)
    at_witness = await started(witness)

    await closing.close()
    await sender.send("closing", {"n": 1})
    await sender.send("witness", {"n": 2})
    await wait_until(lambda: bool(at_witness.messages))

    assert at_closing.events == []
    assert not closing.healthy()
    with pytest.raises(BusUnavailable):
        await closing.send("witness", {"n": 3})


async def test_json_round_trips_nested_values_and_unicode(make_bus: MakeBus) -> None:
    sender, receiver = make_bus("sender"), make_bus("receiver")
    await started(sender)
    inbox = await started(receiver)
    message = {
        "kind": "view", "nested": {"list": [1, 2.5, True, None, "x", {"deep": []}], "e": {}},
        "unicode": "Zoë 🙂 中文 \u2028 \"quoted\"", "big": 2**53,
    }

    await sender.send("receiver", message)
    await wait_until(lambda: bool(inbox.messages))

    assert inbox.messages == [message]
    assert inbox.messages[0] is not message


async def test_healthy_between_start_and_close_and_start_only_once(make_bus: MakeBus) -> None:
    bus = make_bus("n")
    assert not bus.healthy()
    recorder = await started(bus)
    assert bus.healthy()
    with pytest.raises(RuntimeError):
        await bus.start(recorder.handler, recorder.on_resync)
    await bus.close()
    assert not bus.healthy()


# -- the memory bus's simulated failures -------------------------------------------------------


async def test_a_cut_network_refuses_sends_and_restore_delivers_what_waited(
    memory_buses: tuple[MemoryNetwork, Callable[[str], MemoryBus]],
) -> None:
    network, make = memory_buses
    sender, receiver = make("sender"), make("receiver")
    await started(sender)
    gate = asyncio.Event()
    inbox = Recorder()

    async def slow(message: JsonRecord) -> None:
        await inbox.handler(message)
        await gate.wait()

    await receiver.start(slow, inbox.on_resync)
    await sender.send("receiver", {"n": 1})
    await wait_until(lambda: bool(inbox.messages))
    await sender.send("receiver", {"n": 2})
    network.cut()

    assert not sender.healthy() and not receiver.healthy()
    with pytest.raises(BusUnavailable):
        await sender.send("receiver", {"n": 3})
    gate.set()
    await network.restore(lost=False)
    await wait_until(lambda: len(inbox.messages) == 2)

    assert inbox.events == [{"n": 1}, {"n": 2}]
    assert sender.healthy() and receiver.healthy()


async def test_a_restore_after_loss_drops_the_unread_and_resyncs_every_bus_once(
    memory_buses: tuple[MemoryNetwork, Callable[[str], MemoryBus]],
) -> None:
    network, make = memory_buses
    sender, receiver = make("sender"), make("receiver")
    at_sender = await started(sender)
    gate = asyncio.Event()
    inbox = Recorder()

    async def slow(message: JsonRecord) -> None:
        await inbox.handler(message)
        await gate.wait()

    await receiver.start(slow, inbox.on_resync)
    await sender.send("receiver", {"n": 1})
    await wait_until(lambda: bool(inbox.messages))
    await sender.send("receiver", {"n": "unread"})
    network.cut()
    gate.set()
    await network.restore(lost=True)

    assert inbox.events == [{"n": 1}, "resync"]
    assert at_sender.events == ["resync"]
    await sender.send("receiver", {"n": 2})
    await wait_until(lambda: len(inbox.messages) == 2)
    assert inbox.events == [{"n": 1}, "resync", {"n": 2}]


# -- the Redis bus's real failures -------------------------------------------------------------


@pytest.fixture
async def own_redis(tmp_path: Path) -> AsyncIterator[RedisServer]:
    async with redis_server(tmp_path / "redis") as server:
        yield server


@pytest.fixture
async def own_buses(own_redis: RedisServer) -> AsyncIterator[Callable[[str], RedisStreamsBus]]:
    buses: list[RedisStreamsBus] = []

    def make(node_id: str) -> RedisStreamsBus:
        buses.append(RedisStreamsBus(own_redis.url, node_id, block_ms=BLOCK_MS))
        return buses[-1]

    yield make
    for bus in buses:
        await bus.close()


async def test_a_redis_restart_is_resynced_once_and_later_messages_arrive(
    own_redis: RedisServer, own_buses: Callable[[str], RedisStreamsBus]
) -> None:
    sender, receiver = own_buses("sender"), own_buses("receiver")
    at_sender = await started(sender)
    inbox = await started(receiver)
    await sender.send("receiver", {"n": 1})
    await wait_until(lambda: bool(inbox.messages))

    await own_redis.restart()
    await sender.send("receiver", {"n": 2})  # may land before the reader is back: not lost
    await wait_until(lambda: len(inbox.messages) == 2 and at_sender.resyncs == 1, timeout=10)
    await wait_until(lambda: receiver.healthy() and sender.healthy())

    assert inbox.events == [{"n": 1}, "resync", {"n": 2}]
    assert at_sender.events == ["resync"]


async def test_a_restart_while_the_reader_is_busy_is_not_missed(
    own_redis: RedisServer, own_buses: Callable[[str], RedisStreamsBus]
) -> None:
    """A restart during a handler is seen on the reader's next read, whatever connection that
    read gets: redis-py may have reopened one to the new, empty server without a word."""
    sender, receiver = own_buses("sender"), own_buses("receiver")
    await started(sender)
    gate = asyncio.Event()
    inbox = Recorder()

    async def busy(message: JsonRecord) -> None:
        await inbox.handler(message)
        await gate.wait()

    await receiver.start(busy, inbox.on_resync)
    await sender.send("receiver", {"n": 1})
    await wait_until(lambda: bool(inbox.messages))
    await own_redis.restart()
    await sender.send("receiver", {"n": 2})
    gate.set()
    await wait_until(lambda: len(inbox.messages) == 2, timeout=10)

    assert inbox.events == [{"n": 1}, "resync", {"n": 2}]


async def test_a_send_while_redis_is_down_fails_in_bounded_time(
    own_redis: RedisServer, own_buses: Callable[[str], RedisStreamsBus],
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = own_buses("n")
    inbox = await started(bus)
    own_redis.stop()

    began = time.monotonic()
    for _ in range(2):
        with pytest.raises(BusUnavailable):
            await bus.send("n", {"n": 1})
    assert time.monotonic() - began < 2 * SEND_BUDGET_S + 1.0
    await wait_until(lambda: not bus.healthy())
    with pytest.raises(BusUnavailable):
        await own_buses("late").start(inbox.handler, inbox.on_resync)

    await own_redis.start()
    await wait_until(bus.healthy, timeout=10)
    await bus.send("n", {"n": 2})
    await wait_until(lambda: bool(inbox.messages))

    assert inbox.events == ["resync", {"n": 2}]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("sends to Redis are failing" in w for w in warnings) == 1
    assert sum("reconnecting" in w for w in warnings) == 1


async def test_a_reader_that_fell_behind_the_length_cap_resyncs(
    redis_buses: Callable[..., RedisStreamsBus],
) -> None:
    sender, receiver = redis_buses("sender", maxlen=10), redis_buses("receiver", maxlen=10)
    await started(sender)
    gate = asyncio.Event()
    inbox = Recorder()

    async def stuck_once(message: JsonRecord) -> None:
        await inbox.handler(message)
        await gate.wait()

    await receiver.start(stuck_once, inbox.on_resync)
    await sender.send("receiver", {"n": 0})
    await wait_until(lambda: bool(inbox.messages))
    for n in range(1, 300):
        await sender.send("receiver", {"n": n})
    gate.set()
    await wait_until(lambda: inbox.messages[-1] == {"n": 299})

    assert inbox.resyncs == 1
    assert inbox.events.index("resync") == 1
    assert len(inbox.messages) < 300


async def test_read_messages_do_not_stay_in_redis(
    redis_buses: Callable[..., RedisStreamsBus],
) -> None:
    """Views carry whole rosters: an inbox keeping 10,000 read ones per node was the first
    thing to run out at a few hundred nodes (bench.cluster_model)."""
    sender, receiver = redis_buses("sender"), redis_buses("receiver")
    await started(sender)
    inbox = await started(receiver)
    for n in range(200):
        await sender.send("receiver", {"n": n, "view": "x" * 1000})
    await wait_until(lambda: len(inbox.messages) == 200)
    redis = open_redis(shared_redis_url())
    try:
        keys = [k async for k in redis.scan_iter(match=b"test:bus:*inbox:receiver")]
        lengths = [await redis.xlen(k) for k in keys if b"inbox:receiver" in k]
    finally:
        await redis.aclose()
    assert lengths and max(lengths) <= 2, lengths


async def test_a_crashed_reader_restarts_and_keeps_reading(
    redis_buses: Callable[..., RedisStreamsBus], monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = 0

    async def buggy_once(handler: BusHandler, data: bytes, logger: logging.Logger) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise AssertionError("a bug in the reader")
        await deliver(handler, data, logger)

    monkeypatch.setattr(redis_bus, "deliver", buggy_once)
    bus = redis_buses("n")
    inbox = await started(bus)
    await bus.send("n", {"n": 1})
    await bus.send("n", {"n": 2})
    await wait_until(lambda: bool(inbox.messages))
    await wait_until(bus.healthy)

    assert inbox.events == [{"n": 2}]
    assert "crashed (AssertionError" in caplog.text

