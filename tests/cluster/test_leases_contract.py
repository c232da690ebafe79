"""Leases and the node directory keep one contract, in memory and in Redis alike.

The contract is what makes ownership safe: one holder per session, a fresh and higher fence
for every claim (and none for a lost one, which would shut out the holder), a lease lost
once lapsed or released, and nothing left held when a claim fails halfway. The Redis tests
after the contract check what only Redis can get wrong: the lease believed for less time
than Redis keeps it, renewal batches, expired node keys, and a Redis restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from server.cluster import redis_leases
from server.cluster.redis_client import open_redis
from server.cluster.redis_directory import RedisDirectory
from server.cluster.redis_leases import RedisLeases
from signaling.cluster.memory_leases import MemoryDirectory, MemoryLeases, MemoryLeaseTable
from signaling.ports import Directory, Lease, Leases, NodeInfo
from tests.ci import unavailable
from tests.cluster.redis_server import redis_server, shared_redis_url

LONG_TTL_S = 30.0
SHORT_TTL_S = 0.3
WAIT_S = 5.0

T = TypeVar("T")


class FenceUnavailable(Exception):
    pass


class Fences:
    """The ledger's fence counters, one per session, shared by every node as the database is."""

    def __init__(self) -> None:
        self.taken: dict[str, int] = {}
        self.failing = False
        self.stalled = False
        self.asked = asyncio.Event()

    async def __call__(self, session_id: str) -> int:
        self.asked.set()
        if self.failing:
            raise FenceUnavailable("the database is unreachable")
        if self.stalled:
            await asyncio.Event().wait()
        self.taken[session_id] = self.taken.get(session_id, 0) + 1
        return self.taken[session_id]


class WallClock:
    """A unix clock the test moves, so heartbeat expiry needs no waiting."""

    def __init__(self) -> None:
        self.t = 1_700_000_000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@dataclass
class Backend:
    leases: Callable[[str, Fences, float], Leases]
    """(node id, fences, ttl_s): one node's leases, contending with every other node's."""
    directory: Callable[[Callable[[], float]], Directory]
    """Called once per test, with its wall clock."""


@contextlib.asynccontextmanager
async def shared_redis() -> AsyncIterator[tuple[Redis, str]]:
    """The machine's Redis and a key prefix of this test's own, whose keys go afterwards."""
    url = shared_redis_url()
    client = open_redis(url)
    try:
        await client.ping()
    except (RedisError, OSError) as error:
        await client.aclose()
        unavailable(f"no Redis at {url}: {error}")
    prefix = f"circle-test:{secrets.token_hex(8)}:"
    try:
        yield client, prefix
    finally:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


@pytest.fixture(params=["memory", "redis"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    if request.param == "memory":
        table = MemoryLeaseTable()
        yield Backend(
            lambda node, fences, ttl: MemoryLeases(table, node, fences, ttl_s=ttl),
            lambda now: MemoryDirectory(now=now),
        )
        return
    async with shared_redis() as (client, prefix):
        yield Backend(
            lambda node, fences, ttl: RedisLeases(client, node, fences, ttl_s=ttl, prefix=prefix),
            lambda now: RedisDirectory(client, prefix=prefix, now=now),
        )


async def eventually(attempt: Callable[[], Awaitable[T | None]]) -> T:
    """The first result of `attempt` that is not None, retried until WAIT_S has passed."""
    deadline = time.monotonic() + WAIT_S
    while (result := await attempt()) is None:
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)
    return result


async def reconnected(attempt: Callable[[], Awaitable[T]]) -> T:
    """The result of `attempt` once Redis answers again: the first command after a restart
    fails on the dead connection (open_redis does not retry), as a node's next tick would."""
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            return await attempt()
        except RedisConnectionError:
            assert time.monotonic() < deadline, "Redis did not come back in time"
            await asyncio.sleep(0.01)


async def sleep_until(moment: float) -> None:
    """Wait for a time.monotonic() moment: for tests whose condition is time itself."""
    await asyncio.sleep(max(0.0, moment - time.monotonic()))


async def claimed(leases: Leases, session_id: str) -> Lease:
    lease = await leases.claim(session_id)
    assert lease is not None, f"{session_id} could not be claimed"
    return lease


# -- leases ----------------------------------------------------------------------------------


async def test_one_node_holds_a_session_and_owner_names_it(backend: Backend) -> None:
    fences = Fences()
    a, b = backend.leases("a", fences, LONG_TTL_S), backend.leases("b", fences, LONG_TTL_S)
    before = time.monotonic()
    lease = await claimed(a, "s1")
    after = time.monotonic()
    assert (lease.session_id, lease.node_id, lease.fence) == ("s1", "a", 1)
    assert before < lease.expires <= after + LONG_TTL_S
    assert lease.held(after) and not lease.held(lease.expires)
    assert await b.claim("s1") is None
    assert await a.owner("s1") == await b.owner("s1") == "a"
    assert await b.owner("s2") is None
    assert fences.taken == {"s1": 1}, "a lost claim must take no fence: it would fence out a"


async def test_every_claim_takes_a_higher_fence(backend: Backend) -> None:
    fences = Fences()
    a, b = backend.leases("a", fences, LONG_TTL_S), backend.leases("b", fences, LONG_TTL_S)
    first = await claimed(a, "s1")
    await a.release(first)
    second = await claimed(b, "s1")
    # The holder claiming again (a restart under the same id) takes the session over.
    again = await claimed(b, "s1")
    assert await a.claim("s1") is None
    await b.release(again)
    third = await claimed(a, "s1")
    assert first.fence < second.fence < again.fence < third.fence


async def test_renewal_keeps_a_lease_past_its_first_expiry(backend: Backend) -> None:
    ttl = 0.6
    fences = Fences()
    a, b = backend.leases("a", fences, ttl), backend.leases("b", fences, ttl)
    claimed_at = time.monotonic()
    lease = await claimed(a, "s1")
    await sleep_until(claimed_at + ttl / 2)
    [renewed] = await a.renew([lease])
    assert renewed is not None and renewed.fence == lease.fence
    assert renewed.expires > lease.expires
    await sleep_until(lease.expires)
    assert not lease.held(time.monotonic()) and renewed.held(time.monotonic())
    assert await b.claim("s1") is None
    assert await b.owner("s1") == "a"


async def test_a_lapsed_lease_goes_to_another_node_and_is_lost(backend: Backend) -> None:
    fences = Fences()
    lapsing_a = backend.leases("a", fences, SHORT_TTL_S)
    a, b = backend.leases("a", fences, LONG_TTL_S), backend.leases("b", fences, LONG_TTL_S)
    lapsing = await claimed(lapsing_a, "s1")
    kept = await claimed(a, "s2")
    await sleep_until(lapsing.expires)
    assert not lapsing.held(time.monotonic())
    taken = await eventually(lambda: b.claim("s1"))
    assert taken.fence > lapsing.fence
    assert await a.owner("s1") == "b"
    renewed_kept, renewed_lapsed = await a.renew([kept, lapsing])
    assert renewed_kept is not None and renewed_kept.session_id == "s2"
    assert renewed_lapsed is None
    assert await lapsing_a.renew([lapsing]) == [None]


async def test_release_frees_the_session_at_once_and_only_for_its_holder(
    backend: Backend,
) -> None:
    fences = Fences()
    a, b = backend.leases("a", fences, LONG_TTL_S), backend.leases("b", fences, LONG_TTL_S)
    lease = await claimed(a, "s1")
    await a.release(lease)
    assert await a.owner("s1") is None
    await claimed(b, "s1")
    await a.release(lease)
    assert await a.owner("s1") == "b", "a late release must not free the new holder's session"
    assert await a.renew([lease]) == [None]
    assert await a.renew([]) == []


async def test_a_fence_that_cannot_be_taken_leaves_the_session_claimable(
    backend: Backend,
) -> None:
    fences = Fences()
    a, b = backend.leases("a", fences, LONG_TTL_S), backend.leases("b", fences, LONG_TTL_S)
    fences.failing = True
    with pytest.raises(FenceUnavailable):
        await a.claim("s1")
    assert await a.owner("s1") is None
    fences.failing = False
    assert (await claimed(b, "s1")).fence == 1


async def test_a_claim_cancelled_while_taking_its_fence_leaves_the_session_claimable(
    backend: Backend,
) -> None:
    fences = Fences()
    a, b = backend.leases("a", fences, LONG_TTL_S), backend.leases("b", fences, LONG_TTL_S)
    fences.stalled = True
    claiming = asyncio.create_task(a.claim("s1"))
    await asyncio.wait_for(fences.asked.wait(), WAIT_S)
    claiming.cancel()
    with pytest.raises(asyncio.CancelledError):
        await claiming
    assert await a.owner("s1") is None
    fences.stalled = False
    assert (await claimed(b, "s1")).fence == 1


# -- the directory ---------------------------------------------------------------------------


async def test_nodes_are_listed_until_their_heartbeat_expires(backend: Backend) -> None:
    clock = WallClock()
    directory = backend.directory(clock)
    assert await directory.nodes() == []
    n1 = NodeInfo("n1", "http://10.0.0.1:8080", draining=True)
    n2 = NodeInfo("n2", "http://10.0.0.2:8080", sessions=3, connections=7, load=0.25)
    await directory.announce(n2, ttl_s=10)
    await directory.announce(n1, ttl_s=2)
    started = clock.t
    assert await directory.nodes() == [
        NodeInfo("n1", "http://10.0.0.1:8080", draining=True, seen_at=started),
        NodeInfo("n2", "http://10.0.0.2:8080", sessions=3, connections=7, load=0.25,
                 seen_at=started),
    ]
    clock.advance(3)
    assert [n.node_id for n in await directory.nodes()] == ["n2"]
    await directory.announce(NodeInfo("n1", "http://10.0.0.1:8080"), ttl_s=2)
    listed = [(n.node_id, n.draining, n.seen_at) for n in await directory.nodes()]
    assert listed == [("n1", False, started + 3), ("n2", False, started)]
    await directory.withdraw("n2")
    assert [n.node_id for n in await directory.nodes()] == ["n1"]


async def test_interest_is_a_set_of_nodes_per_session(backend: Backend) -> None:
    directory = backend.directory(WallClock())
    assert await directory.interested("s1") == set()
    for session_id, node_id in [("s1", "n1"), ("s1", "n2"), ("s1", "n1"), ("s2", "n3")]:
        await directory.add_interest(session_id, node_id)
    assert await directory.interested("s1") == {"n1", "n2"}
    await directory.remove_interest("s1", "n1")
    assert await directory.interested("s1") == {"n2"}
    await directory.remove_interest("s1", "n2")
    await directory.remove_interest("s1", "n9")
    await directory.remove_interest("s9", "n1")
    assert await directory.interested("s1") == set()
    assert await directory.interested("s2") == {"n3"}


# -- Redis only ------------------------------------------------------------------------------


async def test_a_redis_lease_is_believed_for_less_time_than_redis_keeps_it() -> None:
    async with shared_redis() as (client, prefix):
        leases = RedisLeases(client, "a", Fences(), ttl_s=LONG_TTL_S, prefix=prefix)
        lease = await claimed(leases, "s1")
        for held in (lease, (await leases.renew([lease]))[0]):
            assert held is not None
            checked_at = time.monotonic()
            kept_s = await client.pttl(f"{prefix}lease:s1") / 1000
            assert held.expires < checked_at + kept_s - 0.05 * LONG_TTL_S


async def test_redis_renews_in_batches_and_keeps_the_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(redis_leases, "RENEW_BATCH", 2)
    async with shared_redis() as (client, prefix):
        leases = RedisLeases(client, "a", Fences(), ttl_s=LONG_TTL_S, prefix=prefix)
        held = [await claimed(leases, f"s{i}") for i in range(5)]
        await leases.release(held[2])
        renewed = await leases.renew(held)
        assert [r.session_id if r else None for r in renewed] == ["s0", "s1", None, "s3", "s4"]


async def test_redis_directory_leaves_out_expired_keys_and_reads_newer_nodes() -> None:
    clock = WallClock()
    async with shared_redis() as (client, prefix):
        directory = RedisDirectory(client, prefix=prefix, now=clock)
        await directory.announce(NodeInfo("n1", "http://10.0.0.1:8080"), ttl_s=0.2)
        newer = {"node_id": "n2", "url": "http://10.0.0.2:8080", "zone": "b"}
        await client.set(f"{prefix}node:n2", json.dumps(newer))
        await client.zadd(f"{prefix}nodes", {"n2": clock.t + LONG_TTL_S})

        async def n1_gone() -> list[NodeInfo] | None:
            nodes = await directory.nodes()
            return nodes if [n.node_id for n in nodes] == ["n2"] else None

        assert (await eventually(n1_gone))[0].url == "http://10.0.0.2:8080"
        assert await client.zscore(f"{prefix}nodes", "n1") is not None
        clock.advance(1)
        await directory.nodes()
        assert await client.zscore(f"{prefix}nodes", "n1") is None, "expired ids are trimmed"
        await directory.add_interest("s1", "n1")
        assert 0 < await client.ttl(f"{prefix}interest:s1") <= 86_400


async def test_after_a_redis_restart_leases_are_gone_and_fences_keep_rising(
    tmp_path: Path,
) -> None:
    fences = Fences()
    async with redis_server(tmp_path) as server:
        client = open_redis(server.url)
        try:
            a = RedisLeases(client, "a", fences, ttl_s=LONG_TTL_S)
            b = RedisLeases(client, "b", fences, ttl_s=LONG_TTL_S)
            held = [await claimed(a, f"s{i}") for i in range(3)]
            await server.restart()
            assert await reconnected(lambda: a.renew(held)) == [None, None, None]
            taken = await claimed(b, "s0")
            assert taken.fence > held[0].fence
            assert await a.owner("s0") == "b"
        finally:
            await client.aclose()
