"""What each session costs the clinic's shared Redis and PostgreSQL, and where they run out.

    .venv/bin/python -m bench.cluster_model [--nodes 1000 --sessions-per-node 10 --clients 14]
                                            [--events-per-min 12 --changes-per-min 6]
                                            [--storm-s 60] [--measure-s 1.5]

Two halves. First it MEASURES, on this machine, the unit costs of the operations the cluster
code issues, through the real classes against a redis-server of its own and a fresh
database on the real PostgreSQL: lease renew batches (`RedisLeases.renew`, 10 and 500
leases), claims and lease GETs, directory announce / list (`RedisDirectory.nodes` with 100
and 1000 nodes listed), interest SADD / SMEMBERS, bus messages (`RedisStreamsBus.send` to a
node whose real reader is running: call-sized and view-sized messages, one at a time and
16 at once), an idle bus reader, fenced ledger appends (`Ledger.append` after
`claim_fence`), claims of fences, ledger loads. Redis's cost is read from Redis itself
(INFO cpu and stats before and after: server CPU seconds and network bytes per operation),
so it does not depend on how fast this Python client is; the "ceiling" of one Redis is one
core of that CPU (a single-threaded server), checked against a tight pipelined GET loop.
PostgreSQL's ceiling is a raw asyncpg loop of the same fenced-append transaction on 32
connections (client-limited when the client's CPU share says so: then it is a floor).

Then it MODELS a clinic of `--nodes` nodes owning `--sessions-per-node` sessions of
`--clients` participants each, counting per unit what the code as built does (ClusterNode,
RedisLeases, RedisDirectory, RedisStreamsBus, SqlLedgerStore; see COUNTS below), at steady
state and during a "9 am" storm (everyone joins within `--storm-s`), in three socket layouts:

* co-located: every socket of a session on its owner (the best case);
* split: every socket on one other node. What nginx's `hash $arg_session` gives for the
  (N-1)/N of sessions whose owner is not the node the hash picks: the owner is whichever
  node the session was created through (any node, `circle_any`), and only a drain or a
  crash moves it;
* spread: half on the owner, half on one other node (what bench.failover sets up).

It prints Redis commands/s, Redis CPU as a fraction of one core, Redis network egress,
inbox memory once the streams are full (a fraction of this machine's RAM) and PostgreSQL
transactions/s as a fraction of the measured ceiling, and the node count at which each
shared resource runs out. Figures are this machine's (shared and noisy); ratios and
growth orders are what carry over.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from redis.asyncio import Redis
from sqlalchemy.engine import make_url

from bench.control_common import PG_DEFAULT, machine_note, table
from bench.failover import RedisProcess
from bench.join import postgres_database
from server.cluster.redis_bus import RedisStreamsBus
from server.cluster.redis_client import open_redis
from server.cluster.redis_directory import RedisDirectory
from server.cluster.redis_leases import RENEW_BATCH, RedisLeases
from server.crypto.keyring import KeyRing
from server.ledger import Ledger
from server.storage.database import open_database
from signaling.cluster.memory_bus import encode_message
from signaling.core import commands as c
from signaling.core.session import Accepted, apply, decide, replay
from signaling.core.views import view_for
from signaling.edge.fanout import Item
from signaling.ports import JsonRecord, Lease, NodeInfo

INBOX_MAXLEN = 10_000
"""RedisStreamsBus's default `maxlen`: entries are never deleted once read, only trimmed."""
BUS_BLOCK_S = 1.0
WATCH_EVERY_S = 1.0
POOL_MAX = 15
"""SQLAlchemy's default pool (5 + 10 overflow): at most this many appends at once per node."""
HAND = {"type": "hand_changed", "at": "2026-11-25T15:00:00+00:00",
        "participant_id": "p_5f2c9a1e77d0", "raised": True}

COUNTS = """\
Per node, every lease_ttl/3 (renew loop): ceil(owned/500) renew scripts (Lua; GET+PEXPIRE
  per key). Every lease_ttl/3 (heartbeat loop): one announce (MULTI SET+ZADD) AND one
  directory listing (MULTI ZREMRANGEBYSCORE+ZRANGE, then MGET of every node's record:
  O(nodes) per node, O(nodes^2) for the clinic). Every second: the bus reader's XREAD BLOCK
  1000 returns and one snapshot (MULTI INFO server + XREAD + XINFO STREAM, the last returning
  the inbox's first and last entries in full). Every second (watch loop): one lease GET per
  session it holds sockets of but does not own.
Per client event on a non-owner node: lease GET + call XADD (MULTI XADD+EXPIRE) + reply XADD,
  each waking the receiving node's reader (snapshot + XREAD).
Per state change (an accepted command with events): one PostgreSQL transaction (pool
  pre-ping, BEGIN, fence UPDATE, head UPDATE, record INSERT, COMMIT) and one deliver XADD
  (the changed views) per other node holding the session's sockets.
Per join: interest SADD (once per session and node), the connect (a call when the owner is
  elsewhere), the Connect append, views to the holders; admit_all: one append + views.
Per takeover: claim (Lua) + claim_fence upsert (PG) + ledger load (2 SELECTs) + announce +
  census (SMEMBERS + directory listing + one call per interested live node) + Recover."""

MOVES = """\
What would move each limit (from the code; not measured here):
- Inbox memory: an entry stays after it is read until the 10,000-entry cap trims it, and a
  deliver carries whole views (~3 KB each). Trim what was read (XTRIM MINID to the last id
  handled, or XDEL), cap by age rather than count, send view diffs; and put a session's
  owner where nginx sends its sockets (claim on first join there) to avoid most bus traffic.
- Redis CPU: every node lists the whole directory (MGET of every node's record, session ids
  included) every lease_ttl/3 to refresh the URLs it gives clients: O(nodes^2). List ids and
  URLs only, refresh them every ~30 s or on a version bump; cache a session's owner instead
  of a lease GET per forwarded event (NotOwner already tells when it moved); the reader's
  INFO server + XINFO STREAM every second is paid by every idle node.
- PostgreSQL: one transaction per accepted command, so the 9 am storm is one per join.
  Commit the commands queued for one session together (one transaction, several records);
  past one primary, shard sessions over databases (a session's stream never spans two).
- Redis Cluster: claims and GETs shard by session key, inboxes by node, but the renew script
  spans many keys (refused across slots): it would need one script per slot, or leases
  hash-tagged by node (then found by session through another key); the directory's one
  sorted set stays a hot key on one shard."""


# -- sizes of what goes over the bus ---------------------------------------------------------


def sample_views(clients: int) -> list[dict[str, Any]]:
    """The `state` views of a session of `clients` participants, all admitted, built by the
    real core: the bulk of every deliver message."""
    now = datetime.now(UTC)
    state = replay([])
    staff = c.Actor.staff("key_1")

    def run(command: c.Command, actor: c.Actor) -> None:
        nonlocal state
        decision = decide(state, command, actor, now)
        assert isinstance(decision, Accepted), decision
        for event in decision.events:
            state = apply(state, event)

    run(c.CreateSession("s_" + secrets.token_hex(8), "Tuesday DBT skills group", "group",
                        "IOP", now - timedelta(minutes=1), 90, 60), staff)
    people = [(f"p_{secrets.token_hex(6)}", "therapist" if i == 0 else "client")
              for i in range(clients)]
    for i, (pid, role) in enumerate(people):
        run(c.IssueInvite(pid, f"Pat Doe{i}", role, f"tok{i}",  # type: ignore[arg-type]
                          now + timedelta(days=1)), staff)
    for i, (pid, role) in enumerate(people):
        run(c.Connect(pid, f"Pat Doe{i}", role, f"tok{i}"),  # type: ignore[arg-type]
            c.Actor.participant(pid, role))  # type: ignore[arg-type]
    run(c.AdmitAll(), c.Actor.participant(people[0][0], "therapist"))
    return [view_for(state, pid) for pid, _ in people]


def deliver_message(views: Sequence[dict[str, Any]]) -> JsonRecord:
    sent_at = datetime.now(UTC).isoformat()
    return {"op": "deliver", "session": "s_" + secrets.token_hex(8),
            "items": [Item(secrets.token_urlsafe(15), "state",
                           {**v, "server_time": sent_at}).record() for v in views]}


def call_message() -> JsonRecord:
    """A client's `hand` forwarded to the owner (signaling.cluster.calls + ClusterNode.event)."""
    return {"op": "call", "id": secrets.token_hex(8), "from": "10.0.0.12:8080",
            "kind": "event", "deadline": time.time() + 5,
            "body": {"where": {"node": "10.0.0.12:8080", "sid": secrets.token_urlsafe(15)},
                     "session": "s_" + secrets.token_hex(8), "participant": "p_5f2c9a1e77d0",
                     "role": "client", "event": "hand", "data": {"raised": True}}}


# -- Redis unit costs ------------------------------------------------------------------------


@dataclass(frozen=True)
class RedisCost:
    """One operation as the code issues it: Redis CPU and bytes per operation, and the rate
    this one Python client reached (client-limited, for reference)."""

    name: str
    units: int
    wall_s: float
    cpu_us: float
    commands: float
    out_bytes: float
    in_bytes: float

    @property
    def client_rate(self) -> float:
        return self.units / self.wall_s if self.wall_s else float("nan")


@dataclass(frozen=True)
class Snapshot:
    cpu_s: float
    out_bytes: int
    in_bytes: int
    commands: int
    memory: int


async def snapshot(redis: Redis) -> Snapshot:
    cpu = await redis.info("cpu")
    stats = await redis.info("stats")
    memory = await redis.info("memory")
    return Snapshot(float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"]),
                    int(stats["total_net_output_bytes"]), int(stats["total_net_input_bytes"]),
                    int(stats["total_commands_processed"]), int(memory["used_memory"]))


async def measure(redis: Redis, name: str, body: Callable[[], Awaitable[int]], seconds: float,
                  concurrency: int = 1, settle: Callable[[], Awaitable[None]] | None = None
                  ) -> RedisCost:
    """Run `body` (returns the units it did) in `concurrency` loops for `seconds`; Redis's
    own counters before and after give its cost per unit (the three INFO calls that read
    them are subtracted from the command count; their CPU is noise at this length)."""
    before = await snapshot(redis)
    units = 0
    start = time.perf_counter()
    stop_at = start + seconds

    async def loop() -> None:
        nonlocal units
        while time.perf_counter() < stop_at:
            done = await body()  # not `units += await ...`: that reads units before the await
            units += done

    await asyncio.gather(*(loop() for _ in range(concurrency)))
    if settle is not None:
        await settle()
    wall = time.perf_counter() - start
    after = await snapshot(redis)
    n = max(1, units)
    return RedisCost(name, units, wall, (after.cpu_s - before.cpu_s) * 1e6 / n,
                     (after.commands - before.commands - 3) / n,
                     (after.out_bytes - before.out_bytes) / n,
                     (after.in_bytes - before.in_bytes) / n)


@dataclass
class RedisUnits:
    costs: dict[str, RedisCost] = field(default_factory=dict)
    entry_bytes: dict[str, float] = field(default_factory=dict)
    """Redis memory per inbox entry, by message kind."""
    message_bytes: dict[str, int] = field(default_factory=dict)
    idle_cpu_us_per_s: float = 0.0

    def add(self, cost: RedisCost) -> None:
        self.costs[cost.name] = cost

    def cpu(self, name: str) -> float:
        return self.costs[name].cpu_us

    def out(self, name: str) -> float:
        return self.costs[name].out_bytes

    def cmds(self, name: str) -> float:
        return self.costs[name].commands


def linear(x: float, x0: float, y0: float, x1: float, y1: float) -> float:
    """y at x on the line through two measured points (costs that grow with size)."""
    if x1 == x0:
        return y0
    return max(0.0, y0 + (y1 - y0) * (x - x0) / (x1 - x0))


async def measure_redis(args: argparse.Namespace, work: Path) -> RedisUnits:
    server = RedisProcess(work / "redis")
    server.start()
    units = RedisUnits()
    redis = open_redis(server.url)
    secs = args.measure_s
    try:
        before = await snapshot(redis)
        await asyncio.sleep(1.0)
        after = await snapshot(redis)
        units.idle_cpu_us_per_s = (after.cpu_s - before.cpu_s) * 1e6

        fences = iter(range(1, 10**9))

        async def fence(session_id: str) -> int:
            return next(fences)

        leases = RedisLeases(redis, "10.0.0.12:8080", fence, ttl_s=args.lease_ttl,
                             prefix="m:")
        held: dict[int, list[Lease]] = {}
        for size in (10, RENEW_BATCH):
            held[size] = [lease for i in range(size)
                          if (lease := await leases.claim(f"s_{size}_{i}")) is not None]

        for size in (10, RENEW_BATCH):
            async def renew(size: int = size) -> int:
                await leases.renew(held[size])
                return 1
            units.add(await measure(redis, f"renew{size}", renew, secs))

        claimed = iter(range(10**9))

        async def claim() -> int:
            await leases.claim(f"new_{next(claimed)}")
            return 1

        async def owner() -> int:
            await leases.owner("s_10_3")
            return 1

        units.add(await measure(redis, "claim", claim, secs, concurrency=4))
        units.add(await measure(redis, "get", owner, secs, concurrency=4))

        session_ids = tuple(f"s_{secrets.token_hex(8)}" for _ in range(args.sessions_per_node))
        for listed in (100, 1000):
            directory = RedisDirectory(redis, prefix=f"d{listed}:")
            for i in range(listed):
                await directory.announce(NodeInfo(
                    f"10.0.{i // 250}.{i % 250}:8080", f"http://10.0.{i // 250}.{i % 250}:8080",
                    False, len(session_ids), args.clients * len(session_ids), 0.4,
                    time.time(), session_ids), 600)

            async def listing(directory: RedisDirectory = directory) -> int:
                await directory.nodes()
                return 1
            units.add(await measure(redis, f"nodes{listed}", listing, secs, concurrency=2))
        directory = RedisDirectory(redis, prefix="d100:")
        me = NodeInfo("10.0.0.12:8080", "http://10.0.0.12:8080", False, len(session_ids),
                      140, 0.4, time.time(), session_ids)

        async def announce() -> int:
            await directory.announce(me, args.lease_ttl)
            return 1

        async def add_interest() -> int:
            await directory.add_interest(session_ids[0], "10.0.0.12:8080")
            return 1

        async def interested() -> int:
            await directory.interested(session_ids[0])
            return 1

        units.add(await measure(redis, "announce", announce, secs, concurrency=4))
        units.add(await measure(redis, "sadd", add_interest, secs, concurrency=4))
        units.add(await measure(redis, "smembers", interested, secs, concurrency=4))

        await measure_bus(redis, server.url, units, args)

        async def pipelined() -> int:
            async with redis.pipeline(transaction=False) as pipe:
                for _ in range(1000):
                    pipe.get("s_10_3")
                await pipe.execute()
            return 1000
        units.add(await measure(redis, "pipelined GET (ceiling check)", pipelined, secs))
    finally:
        await redis.aclose()
        if server.process is not None:
            server.process.kill()
            server.process.wait(10)
    return units


async def measure_bus(redis: Redis, url: str, units: RedisUnits,
                      args: argparse.Namespace) -> None:
    """Messages to a node whose real reader runs (its wake-up and snapshot are part of the
    cost), one at a time (every message wakes it: sparse traffic) and 16 at once (reads
    batch: a storm); an idle reader on a full-sized inbox; memory per stored entry."""
    views = sample_views(args.clients)
    messages: dict[str, JsonRecord] = {
        "call": call_message(),
        "view1": deliver_message(views[1:2]),
        f"view{args.clients}": deliver_message(views),
    }
    units.message_bytes = {k: len(encode_message(m)) for k, m in messages.items()}
    received = 0

    async def count(message: JsonRecord) -> None:
        nonlocal received
        received += 1

    async def nothing() -> None:
        return None

    receiver = RedisStreamsBus(url, "10.0.0.13:8080", "b:")
    sender = RedisStreamsBus(url, "10.0.0.12:8080", "b:")
    await receiver.start(count, nothing)
    await sender.start(count, nothing)
    sent = 0

    async def settle() -> None:
        deadline = time.monotonic() + 20
        # Messages cross a real Redis to the reader task; the wait is inside the timed window,
        # so its 10 ms poll stays as measured.
        while received < sent and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)

    try:
        for kind, message in messages.items():
            for concurrency in (1, 16):
                async def send(message: JsonRecord = message) -> int:
                    nonlocal sent
                    sent += 1
                    await sender.send("10.0.0.13:8080", message)
                    return 1
                units.add(await measure(redis, f"send {kind} x{concurrency}", send,
                                        args.measure_s, concurrency, settle))
        for kind, message in messages.items():
            key = f"entries:{kind}"
            before = await snapshot(redis)
            async with redis.pipeline(transaction=False) as pipe:
                data = encode_message(message)
                for _ in range(2000):
                    pipe.xadd(key, {b"m": data})
                await pipe.execute()
            after = await snapshot(redis)
            units.entry_bytes[kind] = (after.memory - before.memory) / 2000
            await redis.delete(key)
    finally:
        await sender.close()
        await receiver.close()

    # Idle readers: on empty inboxes, and on inboxes holding full-sized views (XINFO STREAM
    # returns the first and last entries whole, every second).
    big = encode_message(messages[f"view{args.clients}"])
    for kind, entry in (("empty", b""), ("full", big)):
        idle = [RedisStreamsBus(url, f"10.1.0.{i}:8080", f"i{kind}:") for i in range(20)]
        if entry:
            for i in range(20):
                await redis.xadd(f"i{kind}:inbox:10.1.0.{i}:8080", {b"m": entry})
        for bus in idle:
            await bus.start(count, nothing)
        try:
            async def wait(idle: list[RedisStreamsBus] = idle) -> int:
                await asyncio.sleep(1.0)
                return len(idle)
            units.add(await measure(redis, f"idle reader ({kind} inbox), per node-second",
                                    wait, max(3.0, 2 * args.measure_s)))
        finally:
            for bus in idle:
                await bus.close()


# -- PostgreSQL unit costs -------------------------------------------------------------------


@dataclass
class PgUnits:
    rates: dict[str, float] = field(default_factory=dict)
    """Operations per second."""
    latency_ms: dict[str, float] = field(default_factory=dict)
    client_cpu: dict[str, float] = field(default_factory=dict)
    """This process's CPU share (of one core) in each loop: ~1 means it was the limit."""

    def put(self, name: str, measured: tuple[float, float, float]) -> None:
        self.rates[name], self.latency_ms[name], self.client_cpu[name] = measured

    @property
    def ceiling(self) -> float:
        return max(self.rates.get("raw fenced txn x32", 0.0),
                   self.rates.get(f"Ledger.append x{POOL_MAX}", 0.0))


async def timed_loop(body: Callable[[], Awaitable[None]], seconds: float, concurrency: int
                     ) -> tuple[float, float, float]:
    """(operations/s, mean ms per operation, this process's CPU share of one core) of
    `concurrency` loops running `body`: a share near 1 means the client was the limit."""
    done = 0
    spent = 0.0
    stop_at = time.perf_counter() + seconds

    async def loop() -> None:
        nonlocal done, spent
        while time.perf_counter() < stop_at:
            t = time.perf_counter()
            await body()
            spent += time.perf_counter() - t
            done += 1

    start, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(loop() for _ in range(concurrency)))
    wall = time.perf_counter() - start
    return done / wall, spent / max(1, done) * 1000, (time.process_time() - cpu) / wall


async def measure_pg(args: argparse.Namespace, work: Path) -> PgUnits:
    units = PgUnits()
    secs = args.measure_s
    async with postgres_database(args.postgres) as url:
        db = await open_database(url)
        try:
            ledger = Ledger(db.ledger, KeyRing.load_or_create(work / "keys.json"))
            claims = iter(range(10**9))

            async def claim() -> None:
                await ledger.claim_fence(f"claim_{next(claims) % 50}")

            units.put("claim_fence x1", await timed_loop(claim, secs, 1))

            for concurrency in (1, POOL_MAX):
                units.put(f"Ledger.append x{concurrency}",
                          await appends(ledger, concurrency, secs))

            stream = "load_40"
            for seq in range(1, 41):
                await ledger.append(stream, seq, [HAND])

            async def load() -> None:
                await ledger.load(stream)

            units.put("load (40 records) x1", await timed_loop(load, secs, 1))
        finally:
            await db.close()
        await raw_ceiling(url, units, secs)
    return units


async def appends(ledger: Ledger, concurrency: int, seconds: float
                  ) -> tuple[float, float, float]:
    """Fenced one-record appends, as a session owner makes them, on `concurrency` streams
    at once (one writer per stream, as one owner per session)."""
    heads: dict[str, int] = {}
    streams = [f"append{concurrency}_{i}" for i in range(concurrency)]
    fence = {s: await ledger.claim_fence(s) for s in streams}
    free = list(streams)

    async def append() -> None:
        stream = free.pop()
        seq = heads.get(stream, 0) + 1
        await ledger.append(stream, seq, [HAND], fence=fence[stream])
        heads[stream] = seq
        free.append(stream)

    return await timed_loop(append, seconds, concurrency)


async def raw_ceiling(url: str, units: PgUnits, seconds: float) -> None:
    """The fenced append's statements straight through asyncpg on 32 connections, no
    crypto, no ORM: roughly what this PostgreSQL commits when the client is not the limit."""
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    conns = [await asyncpg.connect(dsn) for _ in range(32)]
    try:
        for i, conn in enumerate(conns):
            await conn.execute("INSERT INTO ledger_fences VALUES ($1, 1)", f"raw{i}")
            await conn.execute("INSERT INTO ledger_heads VALUES ($1, 0, $2, $3)", f"raw{i}",
                               b"\0" * 32, b"\0" * 64)
        seqs = [0] * len(conns)
        free = list(range(len(conns)))

        async def txn() -> None:
            i = free.pop()
            conn, stream, seq = conns[i], f"raw{i}", seqs[i] + 1
            async with conn.transaction():
                await conn.execute("UPDATE ledger_fences SET fence = fence "
                                   "WHERE stream = $1 AND fence = 1", stream)
                await conn.execute("UPDATE ledger_heads SET seq = $2, mac = $3, signature = $4 "
                                   "WHERE stream = $1 AND seq = $5", stream, seq,
                                   os.urandom(32), os.urandom(64), seq - 1)
                await conn.execute("INSERT INTO ledger_records VALUES ($1, $2, 'k1', $3, $4, $5)",
                                   stream, seq, os.urandom(12), os.urandom(160), os.urandom(32))
            seqs[i] = seq
            free.append(i)

        units.put("raw fenced txn x32", await timed_loop(txn, seconds, len(conns)))
    finally:
        for conn in conns:
            with contextlib.suppress(Exception):
                await conn.close()


# -- the model --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    name: str
    holders: int
    """Other nodes holding sockets of a session."""
    remote_share: float
    """Share of a session's client events that arrive on a node other than its owner."""
    per_holder: float
    """Sockets of the session on each holder: the views in one deliver message."""


@dataclass
class Load:
    """Per second, the whole clinic."""

    commands: float = 0.0
    cpu_us: float = 0.0
    out_bytes: float = 0.0
    messages: float = 0.0
    """Bus messages (inbox entries written)."""
    entry_bytes: float = 0.0
    """Summed Redis memory of those entries (for the mean entry size)."""
    pg_txn: float = 0.0
    parts: dict[str, float] = field(default_factory=dict)
    """Redis CPU µs/s by what caused it."""

    def redis(self, what: str, rate: float, cost: RedisCost) -> None:
        self.commands += rate * cost.commands
        self.cpu_us += rate * cost.cpu_us
        self.out_bytes += rate * cost.out_bytes
        self.parts[what] = self.parts.get(what, 0.0) + rate * cost.cpu_us


@dataclass
class Model:
    units: RedisUnits
    pg: PgUnits
    args: argparse.Namespace
    mem_total: int

    def listing(self, nodes: float) -> RedisCost:
        """`RedisDirectory.nodes()` with `nodes` listed: linear between the two measured."""
        a, b = self.units.costs["nodes100"], self.units.costs["nodes1000"]
        return RedisCost("nodes", 1, 0.0, linear(nodes, 100, a.cpu_us, 1000, b.cpu_us),
                         linear(nodes, 100, a.commands, 1000, b.commands),
                         linear(nodes, 100, a.out_bytes, 1000, b.out_bytes), 0.0)

    def renew(self, leases: float) -> RedisCost:
        a, b = self.units.costs["renew10"], self.units.costs[f"renew{RENEW_BATCH}"]
        return RedisCost("renew", 1, 0.0, linear(leases, 10, a.cpu_us, RENEW_BATCH, b.cpu_us),
                         1.0, linear(leases, 10, a.out_bytes, RENEW_BATCH, b.out_bytes), 0.0)

    def idle_reader(self, layout: Layout) -> RedisCost:
        """A reader's once-a-second snapshot costs more the bigger the inbox's first and last
        entries (XINFO STREAM returns them): interpolated on the layout's mean entry."""
        empty = self.units.costs["idle reader (empty inbox), per node-second"]
        full = self.units.costs["idle reader (full inbox), per node-second"]
        if not layout.holders:
            return empty
        big = self.units.entry_bytes[f"view{self.args.clients}"]
        mean = self.mean_entry(layout)
        return RedisCost("idle", 1, 0.0, linear(mean, 0, empty.cpu_us, big, full.cpu_us),
                         full.commands, linear(mean, 0, empty.out_bytes, big, full.out_bytes),
                         0.0)

    def mean_entry(self, layout: Layout) -> float:
        """Mean stored size of the bus messages of `layout` at steady state."""
        u, a = self.units, self.args
        calls: float = 2 * a.events_per_min * layout.remote_share
        views: float = a.changes_per_min * layout.holders
        if not calls + views:
            return 0.0
        view = linear(layout.per_holder, 1, u.entry_bytes["view1"], a.clients,
                      u.entry_bytes[f"view{a.clients}"])
        return (calls * u.entry_bytes["call"] + views * view) / (calls + views)

    def send(self, kind: str, batched: bool) -> RedisCost:
        """A bus message with the receiving reader's wake-up: one message per wake-up, or
        batched (16 sent at once, read together)."""
        return self.units.costs[f"send {kind} x{16 if batched else 1}"]

    def view_send(self, views: float, batched: bool) -> tuple[RedisCost, float]:
        """A deliver of `views` views (cost and stored entry size interpolated in size)."""
        full = f"view{self.args.clients}"
        one, many = self.send("view1", batched), self.send(full, batched)
        e1, en = self.units.entry_bytes["view1"], self.units.entry_bytes[full]
        n = self.args.clients
        cost = RedisCost("deliver", 1, 0.0, linear(views, 1, one.cpu_us, n, many.cpu_us),
                         one.commands, linear(views, 1, one.out_bytes, n, many.out_bytes), 0.0)
        return cost, linear(views, 1, e1, n, en)

    def load(self, nodes: float, layout: Layout, storm: bool) -> Load:
        a, u = self.args, self.units
        s, n_c = a.sessions_per_node, a.clients
        sessions = nodes * s
        period = a.lease_ttl / 3
        out = Load()
        # per node, whatever happens
        out.redis("renew", nodes * math.ceil(s / RENEW_BATCH) / period,
                  self.renew(min(s, RENEW_BATCH)))
        out.redis("announce", nodes / period, u.costs["announce"])
        out.redis("directory listing", nodes / period, self.listing(nodes))
        out.redis("idle bus readers", nodes, self.idle_reader(layout))
        out.redis("watch GETs", sessions * layout.holders / WATCH_EVERY_S, u.costs["get"])
        call_entry = u.entry_bytes["call"]
        # The day's traffic is priced one message per reader wake-up (sparse); the storm's
        # extra messages as batched reads (16 in flight): the steady part is not made
        # cheaper by the storm, so the storm never costs less than the steady state.

        def calls(rate: float, batched: bool = False) -> None:
            out.redis("lease GET + call + reply", rate, u.costs["get"])
            out.redis("lease GET + call + reply", 2 * rate, self.send("call", batched))
            out.messages += 2 * rate
            out.entry_bytes += 2 * rate * call_entry

        def changes(rate: float, views: float, batched: bool = False) -> None:
            out.pg_txn += rate
            if layout.holders:
                cost, entry = self.view_send(views, batched)
                out.redis("deliver views", rate * layout.holders, cost)
                out.messages += rate * layout.holders
                out.entry_bytes += rate * layout.holders * entry

        calls(sessions * a.events_per_min / 60 * layout.remote_share)
        changes(sessions * a.changes_per_min / 60, layout.per_holder)
        if storm:
            joins = sessions * n_c / a.storm_s
            calls(joins * layout.remote_share, True)  # each connect of a socket off the owner
            # A join into the waiting room changes two views: the joiner's and the
            # therapist's (its waiting list); clients see nobody waiting.
            changes(joins, min(2.0, layout.per_holder), True)
            changes(sessions / a.storm_s, layout.per_holder, True)  # admit_all
            out.redis("interest SADD", sessions * layout.holders / a.storm_s, u.costs["sadd"])
        return out

    def failure(self, nodes: float, layout: Layout) -> tuple[float, float]:
        """(Redis CPU µs, PostgreSQL transactions) of one node's death: its sessions are
        claimed, loaded and recovered, with a census each, and its clients reconnect."""
        u, a = self.units, self.args
        s, n_c = a.sessions_per_node, a.clients
        per_session = (u.cpu("claim") + u.cpu("announce") + u.cpu("smembers")
                       + self.listing(nodes).cpu_us
                       + 2 * layout.holders * self.send("call", batched=True).cpu_us)
        per_reconnect = (layout.remote_share * (u.cpu("get") + 2 * self.send("call", True).cpu_us)
                         + layout.holders * self.view_send(layout.per_holder, True)[0].cpu_us)
        redis = s * per_session + s * n_c * per_reconnect
        pg = s * (1 + 1 + 1) + s * n_c  # claim_fence, load, Recover; one append per reconnect
        return redis, pg

    def inbox_memory(self, nodes: float, layout: Layout) -> tuple[float, float]:
        """(bytes of every inbox once full, seconds of steady traffic to fill one)."""
        steady = self.load(nodes, layout, storm=False)
        if not steady.messages:
            return 0.0, float("inf")
        mean_entry = steady.entry_bytes / steady.messages
        per_node = steady.messages / nodes
        return nodes * INBOX_MAXLEN * mean_entry, INBOX_MAXLEN / per_node

    def first_limit(self, layout: Layout, storm: bool, what: str) -> float:
        """The node count at which `what` reaches 100% (bisection: every use grows with
        the node count), or infinity if not below 10^5 nodes."""
        lo, hi = 1.0, 1e5
        if self.fraction(hi, layout, storm, what) < 1.0:
            return float("inf")
        if self.fraction(lo, layout, storm, what) >= 1.0:
            return lo
        while hi - lo > 1:
            mid = (lo + hi) / 2
            lo, hi = (lo, mid) if self.fraction(mid, layout, storm, what) >= 1.0 else (mid, hi)
        return hi

    def fraction(self, nodes: float, layout: Layout, storm: bool, what: str) -> float:
        load = self.load(nodes, layout, storm)
        if what == "redis cpu":
            return load.cpu_us / 1e6
        if what == "pg":
            return load.pg_txn / self.pg.ceiling
        if what == "redis memory":
            return self.inbox_memory(nodes, layout)[0] / self.mem_total
        raise ValueError(what)


def layouts(clients: int) -> list[Layout]:
    others = clients - 1
    return [
        Layout("co-located", 0, 0.0, 0),
        Layout("split", 1, 1.0, clients),
        Layout("spread", 1, 0.5, clients / 2),
    ][: None if others else 1]


# -- report ----------------------------------------------------------------------------------


def fmt_n(value: float) -> str:
    return "never (< 10^5 nodes)" if value == float("inf") else f"{value:,.0f}"


def report(units: RedisUnits, pg: PgUnits, args: argparse.Namespace, mem_total: int) -> str:
    model = Model(units, pg, args, mem_total)
    lines = [
        f"bench.cluster_model: {args.nodes} nodes x {args.sessions_per_node} sessions x "
        f"{args.clients} participants; {args.events_per_min} client events and "
        f"{args.changes_per_min} state changes per session-minute; storm: everyone joins in "
        f"{args.storm_s:g} s; lease TTL {args.lease_ttl:g} s",
        "command: .venv/bin/python -m bench.cluster_model " + " ".join(sys.argv[1:]),
        machine_note(),
        "",
        "Measured Redis unit costs (Redis's own CPU and bytes per operation; the client "
        "rate is this one Python process, the limit in every row):",
        "",
    ]
    rows = []
    for cost in units.costs.values():
        rows.append([cost.name, f"{cost.client_rate:,.0f}", f"{cost.cpu_us:.1f}",
                     f"{cost.commands:.1f}", f"{cost.out_bytes:,.0f}", f"{cost.in_bytes:,.0f}"])
    lines.append(table(["operation", "client ops/s", "Redis CPU µs/op", "Redis commands/op",
                        "Redis out B/op", "Redis in B/op"], rows))
    ceiling = units.costs["pipelined GET (ceiling check)"]
    lines += [
        "",
        f"Message sizes (bytes): {units.message_bytes}; Redis memory per inbox entry: "
        + ", ".join(f"{k} {v:,.0f} B" for k, v in units.entry_bytes.items())
        + f". Idle Redis: {units.idle_cpu_us_per_s:.0f} µs CPU/s. Ceiling check: pipelined "
        f"GETs cost {ceiling.cpu_us:.2f} µs each, i.e. one Redis core does "
        f"~{1e6 / max(ceiling.cpu_us, 1e-9):,.0f} GETs/s; the model's ceiling is one core "
        "of Redis CPU (1,000,000 µs/s).",
        "",
        "Measured PostgreSQL (fresh database on the shared server):",
        "",
        table(["operation", "ops/s", "ms/op", "client CPU (of 1 core)"],
              [[k, f"{v:,.0f}", f"{pg.latency_ms[k]:.2f}", f"{pg.client_cpu[k]:.0%}"]
               for k, v in pg.rates.items()]),
        "",
        f"PostgreSQL ceiling used: {pg.ceiling:,.0f} fenced transactions/s (the raw loop on "
        "32 connections; "
        + ("its client was near a full core, so this is a floor"
           if pg.client_cpu.get("raw fenced txn x32", 0) > 0.8 else "its client was not the "
           "limit") + "). One node's own ceiling is its Ledger.append rate: the node's "
        "process, not PostgreSQL, limits it (SQLAlchemy async, six round trips per append).",
        "",
        "What the code issues (counted from signaling/cluster/node.py and server/cluster/*):",
        "",
        "```",
        COUNTS,
        "```",
        "",
    ]
    rows = []
    for layout in layouts(args.clients):
        for storm in (False, True):
            load = model.load(args.nodes, layout, storm)
            memory, fill_s = model.inbox_memory(args.nodes, layout)
            top = max(load.parts, key=lambda k: load.parts[k])
            rows.append([
                layout.name, "9 am storm" if storm else "steady",
                f"{load.commands:,.0f}", f"{load.cpu_us / 1e6:.2f}",
                f"{top} ({load.parts[top] / max(load.cpu_us, 1e-9):.0%})",
                f"{load.out_bytes / 1e6:,.0f}",
                "-" if storm else f"{memory / 1e9:,.1f} ({memory / mem_total:.1f}x RAM, "
                f"full after {fill_s / 3600:.1f} h)",
                f"{load.pg_txn:,.0f}", f"{load.pg_txn / pg.ceiling:.2f}",
            ])
    lines += [
        f"The clinic of {args.nodes} nodes ({args.nodes * args.sessions_per_node:,} sessions, "
        f"{args.nodes * args.sessions_per_node * args.clients:,} participants):",
        "",
        table(["layout", "phase", "Redis cmds/s", "Redis CPU (cores)", "largest Redis share",
               "Redis out MB/s", "inbox memory GB when full", "PG txn/s", "PG (x ceiling)"],
              rows),
        "",
        "Node count at which each shared resource is used up:",
        "",
    ]
    rows = []
    for layout in layouts(args.clients):
        for storm in (False, True):
            rows.append([layout.name, "9 am storm" if storm else "steady",
                         fmt_n(model.first_limit(layout, storm, "redis cpu")),
                         fmt_n(model.first_limit(layout, storm, "pg")),
                         "-" if storm else fmt_n(model.first_limit(layout, storm,
                                                                   "redis memory"))])
    lines.append(table(["layout", "phase", "Redis CPU = 1 core at", "PG = ceiling at",
                        "inbox memory = this RAM at"], rows))
    limits = [(model.first_limit(layout, storm, what), what, layout.name,
               "9 am storm" if storm else "steady")
              for layout in layouts(args.clients) for storm in (False, True)
              for what in ("redis cpu", "pg", "redis memory")
              if not (storm and what == "redis memory")]
    lines.append("")
    for name in [x.name for x in layouts(args.clients)]:
        n, what, _, phase = min(x for x in limits if x[2] == name)
        lines.append(f"First shared limit, {name}: {what} at ~{fmt_n(n)} nodes "
                     f"({fmt_n(n * args.sessions_per_node)} sessions), {phase}.")
    for layout in layouts(args.clients):
        redis_us, pg_txn = model.failure(args.nodes, layout)
        lines.append(f"One node failing ({layout.name}): {redis_us / 1000:,.0f} ms of Redis CPU "
                     f"and {pg_txn:,.0f} PostgreSQL transactions over about a lease TTL "
                     f"({args.lease_ttl:g} s): {pg_txn / args.lease_ttl / pg.ceiling:.2f} of "
                     "the PG ceiling while it lasts.")
    lines += ["", "Redis CPU by cause at the given size, steady, split layout (µs/s):", ""]
    moves = ["", MOVES]
    split = model.load(args.nodes, layouts(args.clients)[min(1, len(layouts(args.clients)) - 1)],
                       storm=False)
    lines.append(table(["cause", "µs/s", "share"],
                       [[k, f"{v:,.0f}", f"{v / max(split.cpu_us, 1e-9):.0%}"]
                        for k, v in sorted(split.parts.items(), key=lambda kv: -kv[1])]))
    return "\n".join(lines + moves) + "\n"


async def main_async(args: argparse.Namespace) -> str:
    with tempfile.TemporaryDirectory(prefix="circle-bench-model-") as tmp:
        work = Path(tmp)
        async with asyncio.timeout(args.timeout):
            units = await measure_redis(args, work)
            pg = await measure_pg(args, work)
    mem_total = 0
    for line in Path("/proc/meminfo").read_text().splitlines():  # noqa: ASYNC240 (procfs)
        if line.startswith("MemTotal:"):
            mem_total = int(line.split()[1]) * 1024
    return report(units, pg, args, mem_total or 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--sessions-per-node", type=int, default=10)
    parser.add_argument("--clients", type=int, default=14, help="participants per session")
    parser.add_argument("--events-per-min", type=float, default=12.0,
                        help="client events per session-minute (hands, chat, mutes...)")
    parser.add_argument("--changes-per-min", type=float, default=6.0,
                        help="state changes (ledger appends) per session-minute")
    parser.add_argument("--storm-s", type=float, default=60.0,
                        help="the 9 am storm: every participant joins within this")
    parser.add_argument("--lease-ttl", type=float, default=6.0)
    parser.add_argument("--measure-s", type=float, default=1.5,
                        help="seconds per measured operation")
    parser.add_argument("--timeout", type=float, default=240.0, help="bound on the whole run")
    parser.add_argument("--postgres", default=PG_DEFAULT, metavar="URL")
    parser.add_argument("--out", type=Path, metavar="FILE", help="also write the report here")
    args = parser.parse_args()
    text = asyncio.run(main_async(args))
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
