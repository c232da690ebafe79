"""Join, admit and command latency of a real `circle serve`, against a bare Socket.IO floor.

    .venv/bin/python -m bench.join [--groups 4] [--clients 12] [--hands 100] [--seconds 5]
                                   [--postgres postgresql://postgres@127.0.0.1:5432/test]
                                   [--no-relay]

Starts `circle serve` (SQLite in a temp dir, or a throw-away PostgreSQL database) and, in
the same run, a bare python-socketio AsyncServer on aiohttp (this module with
`--serve-floor PORT`) that only acks events and emits one message: the transport floor.
Both get the same client code (python-socketio AsyncClient, websocket only, one process),
the same groups of `--clients` clients plus one therapist, in this order:

1. connect -> first `state`: each group's clients connect at once (the burst at the top of
   the hour); the floor emits its first message as soon as the connection is live.
2. admit: the therapist sends `admit_all`; we time its ack and each client's first
   `admitted` state (the floor's `admit_all` emits one message to each group member).
3. `hand` round trip: one client toggles its hand `--hands` times, one at a time.
4. events/s from one session owner: every client of group 0 toggles its hand in a closed
   loop for `--seconds`; each accepted toggle is one ledger append (durable) and a fresh
   view for everyone in the session. The loaded round trip is reported too.
5. server RSS (VmRSS) before the first connection and with everyone admitted.

The per-connection rate limit is lifted (CIRCLE_EVENTS_BURST/PER_SECOND) so step 4
measures the owner, not the limiter. The ratios Circle/floor are what to compare between
runs: the machine is shared and noisy, absolute numbers move, ratios much less.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import socketio

from bench.control_common import (
    CircleProcess,
    Dist,
    call_ok,
    disconnect_quietly,
    free_port,
    machine_note,
    ratio,
    rss_kib,
    stop,
    table,
    wait_listening,
)

now = time.perf_counter


# -- the floor server (runs in its own process) ---------------------------------------------


def serve_floor(port: int) -> None:
    """A bare Socket.IO server: what any Socket.IO app pays before doing any work.

    Same engine settings as Circle's (server/app.py). `connect` takes `auth.token` as
    "group:role:index", sends one `state` once the connection is live, `admit_all` sends one
    `state` to each member of the group then acks, `hand` acks and sends the sender one
    `state`. Nothing is stored.
    """
    from aiohttp import web

    sio = socketio.AsyncServer(async_mode="aiohttp", max_http_buffer_size=1_000_000,
                               ping_interval=10, ping_timeout=10)
    app = web.Application()
    sio.attach(app)
    groups: dict[str, list[str]] = {}
    rev = 0
    background: set[asyncio.Task[None]] = set()

    def view(status: str) -> dict[str, Any]:
        nonlocal rev
        rev += 1
        return {"rev": rev, "you": {"status": status}}

    async def first_message(sid: str) -> None:
        for _ in range(10_000):  # the tightest possible wait for the CONNECT packet
            if sio.manager.is_connected(sid, "/"):
                break
            await asyncio.sleep(0)
        await sio.emit("state", view("waiting"), to=sid)

    @sio.on("connect")  # type: ignore[untyped-decorator]
    async def connect(sid: str, environ: dict[str, Any], auth: Any) -> None:
        group = str(auth["token"]).split(":", 1)[0]
        groups.setdefault(group, []).append(sid)
        await sio.save_session(sid, {"group": group})
        task = asyncio.ensure_future(first_message(sid))
        background.add(task)
        task.add_done_callback(background.discard)

    @sio.on("admit_all")  # type: ignore[untyped-decorator]
    async def admit_all(sid: str, data: Any) -> dict[str, Any]:
        group = (await sio.get_session(sid))["group"]
        for member in groups[group]:
            if member != sid:
                await sio.emit("state", view("admitted"), to=member)
        return {"ok": True}

    @sio.on("hand")  # type: ignore[untyped-decorator]
    async def hand(sid: str, data: Any) -> dict[str, Any]:
        await sio.emit("state", view("admitted"), to=sid)
        return {"ok": True}

    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


# -- the client side -------------------------------------------------------------------------


@dataclass
class Probe:
    """One participant: a plain AsyncClient that timestamps every `state` it receives."""

    url: str
    token: str
    sio: socketio.AsyncClient = field(default_factory=lambda: socketio.AsyncClient(
        reconnection=False))
    first_state: asyncio.Event = field(default_factory=asyncio.Event)
    admitted: asyncio.Event = field(default_factory=asyncio.Event)
    first_state_at: float = 0.0
    admitted_at: float = 0.0
    state_bytes: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sio.on("state", self._on_state)

    async def _on_state(self, data: dict[str, Any]) -> None:
        at = now()
        if len(self.state_bytes) < 50:
            self.state_bytes.append(len(json.dumps(data, separators=(",", ":"))))
        if not self.first_state.is_set():
            self.first_state_at = at
            self.first_state.set()
        if not self.admitted.is_set() and data["you"]["status"] == "admitted":
            self.admitted_at = at
            self.admitted.set()

    async def connect(self) -> float:
        """Seconds from starting the connection to the first `state`."""
        start = now()
        await self.sio.connect(self.url, auth={"token": self.token}, transports=["websocket"],
                               wait_timeout=30, retry=False)
        await asyncio.wait_for(self.first_state.wait(), 30)
        return self.first_state_at - start

    async def call(self, event: str, data: Any) -> dict[str, Any]:
        return await call_ok(self.sio, event, data)

    async def close(self) -> None:
        await disconnect_quietly(self.sio)


@dataclass
class Group:
    therapist: Probe
    clients: list[Probe]


@dataclass
class Results:
    """Every series one server produced; all latencies in seconds."""

    name: str
    connect: list[float] = field(default_factory=list)
    admit_ack: list[float] = field(default_factory=list)
    admitted: list[float] = field(default_factory=list)
    hand_idle: list[float] = field(default_factory=list)
    hand_loaded: list[float] = field(default_factory=list)
    events_per_s: float = 0.0
    rss_before_kib: int = 0
    rss_after_kib: int = 0
    participants: int = 0
    view_bytes: float = 0.0

    @property
    def kib_per_participant(self) -> float:
        return (self.rss_after_kib - self.rss_before_kib) / max(1, self.participants)


TokenSource = Callable[[int, str, int], Awaitable[str]]
"""(group, role, index) -> join token (an invite for Circle, a label for the floor)."""


async def run_scenario(name: str, url: str, pid: int, tokens: TokenSource,
                       args: argparse.Namespace) -> Results:
    """The same five steps against either server (see the module docstring)."""
    res = Results(name)
    groups: list[Group] = []
    res.rss_before_kib = rss_kib(pid)
    try:
        for g in range(args.groups):
            therapist = Probe(url, await tokens(g, "therapist", 0))
            clients = [Probe(url, await tokens(g, "client", i)) for i in range(args.clients)]
            groups.append(Group(therapist, clients))
            await therapist.connect()
            res.connect += await asyncio.gather(*(c.connect() for c in clients))
            start = now()
            await therapist.call("admit_all", {})
            res.admit_ack.append(now() - start)
            await asyncio.wait_for(asyncio.gather(*(c.admitted.wait() for c in clients)), 30)
            res.admitted += [c.admitted_at - start for c in clients]
        res.participants = sum(1 + len(g.clients) for g in groups)
        await asyncio.sleep(0.5)  # let the server settle (GC, buffers) before reading RSS
        res.rss_after_kib = rss_kib(pid)

        one = groups[0].clients[0]
        for i in range(args.hands):
            start = now()
            await one.call("hand", {"raised": i % 2 == 0})
            res.hand_idle.append(now() - start)
        if args.hands % 2:
            await one.call("hand", {"raised": False})

        res.events_per_s = await closed_loop(groups[0].clients, args.seconds, res.hand_loaded)
        sizes = [b for g in groups for c in g.clients for b in c.state_bytes]
        res.view_bytes = sum(sizes) / max(1, len(sizes))
    finally:
        await asyncio.gather(*(p.close() for g in groups for p in [g.therapist, *g.clients]))
    return res


async def closed_loop(clients: list[Probe], seconds: float, rtts: list[float]) -> float:
    """Every client toggles its hand as fast as acks come back; accepted toggles per second."""
    done = 0
    stop_at = now() + seconds

    async def worker(client: Probe) -> None:
        nonlocal done
        raised = True
        while now() < stop_at:
            start = now()
            await client.call("hand", {"raised": raised})
            rtts.append(now() - start)
            done += 1
            raised = not raised

    start = now()
    await asyncio.gather(*(worker(c) for c in clients))
    return done / (now() - start)


# -- the two servers -------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def postgres_database(url: str) -> AsyncIterator[str]:
    """A fresh database on the PostgreSQL at `url` for one run, dropped afterwards."""
    from sqlalchemy import text
    from sqlalchemy.engine import make_url
    from sqlalchemy.ext.asyncio import create_async_engine

    admin_url = make_url(url).set(drivername="postgresql+asyncpg")
    name = f"circle_bench_{secrets.token_hex(4)}"
    admin = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


async def bench_circle(args: argparse.Namespace, work: Path, db_url: str | None) -> Results:
    env = {"CIRCLE_EVENTS_BURST": "1000000", "CIRCLE_EVENTS_PER_SECOND": "1000000",
           "CIRCLE_MEDIA": "false" if args.no_relay else "true"}
    if db_url:
        env["CIRCLE_DATABASE_URL"] = db_url
    server = CircleProcess(work / "circle" / "data", env=env, profile=args.profile)
    server.start()
    try:
        async with aiohttp.ClientSession() as http:
            headers = {"Authorization": f"Bearer {server.api_key}"}
            sessions: dict[int, str] = {}

            async def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
                async with http.post(server.url + path, json=body, headers=headers) as r:
                    data = await r.json()
                    if r.status != 201:
                        raise RuntimeError(f"{path}: {r.status} {data}")
                    return dict(data)

            starts = time.strftime("%Y-%m-%dT%H:00:00Z", time.gmtime())
            for g in range(args.groups):
                created = await post("/api/v1/sessions", {
                    "title": f"bench group {g}", "kind": "group", "program": "IOP",
                    "starts_at": starts, "minutes": 90})
                sessions[g] = str(created["id"])

            async def invite(g: int, role: str, i: int) -> str:
                pid = f"{role[0]}-{g}-{i}"
                data = await post(f"/api/v1/sessions/{sessions[g]}/invites", {
                    "participant_id": pid, "display_name": f"Pat Doe{i}", "role": role})
                return str(data["token"])

            return await run_scenario("circle", server.url, server.pid, invite, args)
    finally:
        server.stop()


async def bench_floor(args: argparse.Namespace) -> Results:
    port = free_port()
    # Popen returns once the floor server is forked; it is waited for by its port.
    process = subprocess.Popen(  # noqa: ASYNC220
        [sys.executable, "-m", "bench.join", "--serve-floor", str(port)],
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        wait_listening(process, port)

        async def label(g: int, role: str, i: int) -> str:
            return f"{g}:{role}:{i}"

        return await run_scenario("floor", f"http://127.0.0.1:{port}", process.pid, label, args)
    finally:
        stop(process)


# -- report ----------------------------------------------------------------------------------


def report(circle: Results, floor: Results, args: argparse.Namespace, backend: str) -> str:
    rows = []
    for label, attr in [("connect -> first state", "connect"),
                        ("admit_all ack (therapist)", "admit_ack"),
                        ("admit_all -> client admitted", "admitted"),
                        ("hand round trip, idle", "hand_idle"),
                        (f"hand round trip, {args.clients} clients looping", "hand_loaded")]:
        c, f = Dist.of(getattr(circle, attr)), Dist.of(getattr(floor, attr))
        rows.append([label, c.n, f"{c.p50:.2f}", f"{c.p99:.2f}", f"{f.p50:.2f}",
                     f"{f.p99:.2f}", ratio(c.p50, f.p50), ratio(c.p99, f.p99)])
    lat = table(["measure (ms)", "n", "circle p50", "circle p99", "floor p50", "floor p99",
                 "ratio p50", "ratio p99"], rows)
    thr = table(["measure", "circle", "floor", "circle/floor"], [
        [f"events/s, one session ({args.clients} clients looping)",
         f"{circle.events_per_s:.0f}", f"{floor.events_per_s:.0f}",
         ratio(circle.events_per_s, floor.events_per_s)],
        ["server RSS before, MiB", f"{circle.rss_before_kib / 1024:.1f}",
         f"{floor.rss_before_kib / 1024:.1f}", ratio(circle.rss_before_kib, floor.rss_before_kib)],
        [f"server RSS with {circle.participants} admitted, MiB",
         f"{circle.rss_after_kib / 1024:.1f}", f"{floor.rss_after_kib / 1024:.1f}",
         ratio(circle.rss_after_kib, floor.rss_after_kib)],
        ["RSS per participant, KiB", f"{circle.kib_per_participant:.0f}",
         f"{floor.kib_per_participant:.0f}",
         ratio(circle.kib_per_participant, floor.kib_per_participant)],
        ["mean `state` payload, bytes", f"{circle.view_bytes:.0f}", f"{floor.view_bytes:.0f}",
         ratio(circle.view_bytes, floor.view_bytes)],
    ])
    relay = "off" if args.no_relay else "on (no client publishes media)"
    return (f"bench.join: {args.groups} groups x ({args.clients} clients + 1 therapist), "
            f"store {backend}, relay {relay}\n{machine_note()}\n\n{lat}\n\n{thr}\n")


async def main_async(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="circle-bench-join-") as tmp:
        work = Path(tmp)
        if args.postgres:
            async with postgres_database(args.postgres) as db_url:
                circle = await bench_circle(args, work, db_url)
            backend = "PostgreSQL"
        else:
            circle = await bench_circle(args, work, None)
            backend = "SQLite (WAL, synchronous=FULL)"
        floor = await bench_floor(args)
    print(report(circle, floor, args, backend))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--groups", type=int, default=4)
    parser.add_argument("--clients", type=int, default=12, help="clients per group")
    parser.add_argument("--hands", type=int, default=100, help="idle hand round trips")
    parser.add_argument("--seconds", type=float, default=5.0, help="closed-loop duration")
    parser.add_argument("--postgres", metavar="URL", help="use this PostgreSQL (a fresh "
                        "database is created and dropped) instead of SQLite")
    parser.add_argument("--no-relay", action="store_true", help="CIRCLE_MEDIA=false")
    parser.add_argument("--profile", type=Path, metavar="FILE",
                        help="run circle serve under cProfile, stats written to FILE")
    parser.add_argument("--serve-floor", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_floor:
        serve_floor(args.serve_floor)
        return
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
