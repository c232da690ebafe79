"""Failover of a two-node clinic: how long until every participant has its seat back.

    .venv/bin/python -m bench.failover [--sessions 20] [--clients 14] [--lease-ttl 6]
                                       [--kill 0] [--timeout 280] [--out FILE]
                                       [--postgres postgresql://postgres@127.0.0.1:5432/test]

A clinic of two real `circle serve` nodes (media off, CIRCLE_MEDIA=false: this measures the
control plane) on a redis-server and a PostgreSQL database of the run's own, both thrown
away at the end. `--sessions` group sessions are created, half through each node (the node
a session is created on owns it); each gets one therapist and `--clients - 1` clients, all
`client.participant.CircleClient`s in this process, alternating between the two nodes and
given both URLs (their own node first), so every session has sockets on both nodes and
every (owner, therapist's node) pairing occurs. Everyone is admitted, then each session
gets state to lose: an audio mute, a video mute, a raised hand, and in every fourth session
breakouts open for 30 minutes (a known `ends_at`). Each client's seat (status, room,
breakout role, mutes) and every acknowledged command are recorded; then one node is killed
with SIGKILL (no drain: a crash).

Measured from the kill, per client: the time until it holds a `state` view equal to its
seat before. A client of the killed node must have reconnected (the view came on a new
socket); a client of the survivor whose session's owner died must have heard from the new
owner (any view after the kill); one whose session's owner survived counts as back at 0
unless a view after the kill differed from its seat. Also: how many sessions changed owner
and when the survivor listed them all (GET /api/v1/nodes, polled), and lost events: after
the failover every acknowledged command must still show (mutes, hands and `ends_at` in the
views of the participant and of the therapist, admitted counts in the session summary).
Last, every client sends a chat message: its ack proves the path to a live owner works.

Why these choices: the seat is what a participant would notice losing (a new admit, a mute
gone, thrown out of a role-play); clients are real CircleClients because their reconnect
(backoff, node rotation, transient refusals) is half of the failover; the target is every
client back with p95 under 15 s (LiveKit aims at ~1 s resume; the lease TTL bounds us).
The whole run is bounded by `--timeout` and everything it started (nodes, Redis, the
database) is removed on any exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from sqlalchemy import select

from bench.control_common import CIRCLE, PG_DEFAULT, free_port, machine_note, pct, table
from bench.join import postgres_database
from client.participant import CircleClient
from server.cluster.redis_client import open_redis
from server.crypto.keyring import KeyRing
from server.ledger import Ledger
from server.serve_lock import wait_for_listening
from server.storage.database import open_database
from server.storage.schema import ledger_fences
from signaling.core.events import Disconnected, from_record

T = TypeVar("T")
Seat = tuple[Any, ...]
"""(status, room, breakout_role, audio muted, video muted): what a participant would miss."""

ROLE_PLAY_MINUTES = 30
CONNECT_PARALLEL = 16
"""Connections opened at once during set-up (set-up is not what is measured)."""
POLL_S = 0.1
_CHILDREN: list[subprocess.Popen[bytes]] = []
"""Every process this run started: killed (by pid, one by one) on any exit."""


def seat(view: dict[str, Any]) -> Seat:
    you = view["you"]
    muted = you.get("muted") or {}
    return (you.get("status"), you.get("room"), you.get("breakout_role"),
            bool(muted.get("audio")), bool(muted.get("video")))


def _kill_children() -> None:
    for process in _CHILDREN:
        if process.poll() is None:
            process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(10)


# -- the clinic's processes -------------------------------------------------------------------


class RedisProcess:
    """A redis-server of the run's own on a free loopback port, keeping nothing on disk
    (as the clinic's Redis is configured): no other client's keys or load in the figures."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self._binary = binary
        self._workdir = workdir
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self._workdir.mkdir(parents=True, exist_ok=True)
        for _ in range(5):
            self.port = free_port()
            self.process = subprocess.Popen(
                [self._binary, "--bind", "127.0.0.1", "--port", str(self.port),
                 "--save", "", "--appendonly", "no", "--dir", str(self._workdir)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            _CHILDREN.append(self.process)
            if self._wait_ready():
                return
            self.process.kill()
            self.process.wait(10)
        raise RuntimeError("redis-server did not start")

    def _wait_ready(self) -> bool:
        assert self.process is not None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False  # e.g. the port was taken between probe and bind
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return True
            except OSError:
                pass
            time.sleep(0.05)
        return False


def node_environ(extra: dict[str, str]) -> dict[str, str]:
    """This environment without the caller's own CIRCLE_* settings (a shell pointed at a
    clinic's database must not point the bench there), plus the clinic's."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith("CIRCLE_")}
    return {**kept, **extra}


@dataclass
class Node:
    """One `circle serve --port 0` with a data dir of its own (the serve lock is per node)."""

    index: int
    root: Path
    env: dict[str, str]
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def data_dir(self) -> Path:
        return self.root / f"node{self.index}" / "data"

    @property
    def log_path(self) -> Path:
        return self.root / f"node{self.index}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def node_id(self) -> str:
        """Its name in the clinic (host:port, the default of CIRCLE_NODE_ID)."""
        return f"127.0.0.1:{self.port}"

    def make_dirs(self) -> None:
        """Owner-only, as `circle serve` demands of a data dir (it refuses a looser one)."""
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.data_dir.chmod(0o700)

    def cli(self, *args: str) -> str:
        self.make_dirs()
        out = subprocess.run([CIRCLE, *args, "--data-dir", str(self.data_dir)], check=True,
                             capture_output=True, env=node_environ(self.env), timeout=60)
        return out.stdout.decode().strip()

    def start(self) -> None:
        self.make_dirs()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [CIRCLE, "serve", "--port", "0", "--data-dir", str(self.data_dir)],
                stdout=log, stderr=subprocess.STDOUT, env=node_environ(self.env))
        _CHILDREN.append(self.process)
        process = self.process
        self.port = wait_for_listening(process.pid, self.data_dir,
                                       alive=lambda: process.poll() is None)
        self._wait_healthy(process)

    def _wait_healthy(self, process: subprocess.Popen[bytes]) -> None:
        """The port is recorded as soon as the socket listens, before the app's start-up
        (database, Redis, recovery) has run, which can still fail: wait for /healthz."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if process.poll() is not None:
                tail = self.log_path.read_text(errors="replace").strip().splitlines()[-1:]
                raise RuntimeError(f"node {self.index} exited at start-up: {tail}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                    if s.recv(64).startswith(b"HTTP/1."):
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"node {self.index} did not answer /healthz in 30 s")

    def kill(self) -> None:
        """SIGKILL: a crash, no drain, no lease released."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


class Api:
    """The admin's HTTP calls to one node."""

    def __init__(self, http: aiohttp.ClientSession, key: str) -> None:
        self.http = http
        self.headers = {"Authorization": f"Bearer {key}"}

    async def request(self, method: str, url: str, body: Any = None,
                      expect: int = 200) -> Any:
        async with self.http.request(method, url, json=body, headers=self.headers,
                                     timeout=aiohttp.ClientTimeout(total=30)) as r:
            data = await r.json()
            if r.status != expect:
                raise RuntimeError(f"{method} {url}: {r.status} {data}")
            return data

    async def owners(self, node: Node) -> dict[str, list[str]]:
        """session id -> the nodes listing it as theirs, as `node` sees the directory."""
        data = await self.request("GET", f"{node.url}/api/v1/nodes")
        found: dict[str, list[str]] = {}
        for info in data["nodes"]:
            for session_id in info["session_ids"]:
                found.setdefault(session_id, []).append(info["node_id"])
        return found


# -- participants -----------------------------------------------------------------------------


@dataclass
class Member:
    """One participant's client and what it saw after the kill."""

    session: int
    pid: str
    role: str
    home: int
    """The node it connected to first (its URL list starts there)."""
    client: CircleClient
    before: Seat = ()
    socket_before: object = None
    recording: bool = False
    views: list[tuple[float, bool, Seat]] = field(default_factory=list)
    """(monotonic time, on a socket opened after the kill, seat) of each view after it."""
    reconnected_at: float | None = None

    def __post_init__(self) -> None:
        self.client.on_state.append(self._saw)
        self.client.on_link.append(self._link)

    def _saw(self, view: dict[str, Any]) -> None:
        if self.recording:
            self.views.append((time.monotonic(), self.client.sio is not self.socket_before,
                               seat(view)))

    def _link(self, kind: str, detail: str) -> None:
        if self.recording and kind == "connected" and self.reconnected_at is None:
            self.reconnected_at = time.monotonic()

    def view(self) -> dict[str, Any]:
        assert self.client.state is not None
        return self.client.state


@dataclass
class Session:
    index: int
    id: str
    owner: int
    """The node it was created on."""
    members: list[Member] = field(default_factory=list)
    ends_at: str | None = None
    rooms: dict[str, str] = field(default_factory=dict)
    """participant id -> room id, when breakouts are open."""
    summary_before: dict[str, Any] = field(default_factory=dict)

    @property
    def therapist(self) -> Member:
        return self.members[0]

    def member(self, pid: str) -> Member:
        return next(m for m in self.members if m.pid == pid)


@dataclass(frozen=True)
class Ack:
    """A command the server acknowledged before the kill, and so must not lose."""

    session: int
    kind: str
    """One of admit_all, mute, hand, breakouts."""
    target: str = ""
    detail: str = ""


async def bounded(limit: int, jobs: Sequence[Callable[[], Awaitable[T]]]) -> list[T]:
    gate = asyncio.Semaphore(limit)

    async def one(job: Callable[[], Awaitable[T]]) -> T:
        async with gate:
            return await job()

    return list(await asyncio.gather(*(one(j) for j in jobs)))


async def ok(member: Member, event: str, data: Any) -> None:
    reply = await member.client.call(event, data, timeout=30)
    if not reply.get("ok"):
        raise RuntimeError(f"{event} by {member.pid} refused: {reply}")


def client_pid(session: int, n: int) -> str:
    return f"c-{session}-{n}"


async def build(api: Api, nodes: list[Node], args: argparse.Namespace
                ) -> tuple[list[Session], list[Ack]]:
    """Sessions, invites, connections, admits and the state to keep (see the docstring)."""
    starts = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    sessions: list[Session] = []
    for i in range(args.sessions):
        owner = i % 2
        created = await api.request("POST", f"{nodes[owner].url}/api/v1/sessions", {
            "title": f"failover group {i}", "kind": "group", "program": "IOP",
            "starts_at": starts, "minutes": 90}, expect=201)
        sessions.append(Session(i, str(created["id"]), owner))

    async def invite(s: Session, n: int) -> Member:
        role = "therapist" if n == 0 else "client"
        pid = f"t-{s.index}" if n == 0 else client_pid(s.index, n)
        data = await api.request("POST", f"{nodes[s.owner].url}/api/v1/sessions/{s.id}/invites",
                                 {"participant_id": pid, "display_name": f"Pat Doe{n}",
                                  "role": role}, expect=201)
        # Alternate nodes within a session, shifted every other pair of sessions so that the
        # therapist sits on the owner in some sessions and on the other node in the rest.
        home = (n + s.index // 2) % 2
        urls = [nodes[home].url, nodes[1 - home].url]
        return Member(s.index, pid, role, home, CircleClient(urls, str(data["token"])))

    for s in sessions:
        s.members = list(await asyncio.gather(*(invite(s, n) for n in range(args.clients))))
    # Therapists first: clients then wait in the waiting room, as in a real session.
    await bounded(CONNECT_PARALLEL, [partial(s.therapist.client.connect, timeout=30)
                                     for s in sessions])
    await bounded(CONNECT_PARALLEL, [partial(m.client.connect, timeout=30)
                                     for s in sessions for m in s.members[1:]])
    acks: list[Ack] = []
    waiting = args.clients - 1
    for s in sessions:
        await s.therapist.client.wait_for(lambda v: len(v.get("waiting") or []) == waiting, 60)
        await ok(s.therapist, "admit_all", {})
        acks.append(Ack(s.index, "admit_all"))
    for s in sessions:
        for m in s.members[1:]:
            await m.client.wait_for(lambda v: v["you"]["status"] == "admitted", 60)
        await give_state(s, acks)
    await converge(sessions, acks)
    return sessions, acks


async def give_state(s: Session, acks: list[Ack]) -> None:
    """Mutes, a hand and (every fourth session) two role-play rooms: state a failover could
    lose, all acknowledged before the kill."""
    i, t = s.index, s.therapist
    for n, kind in ((1, "audio"), (4, "video")):
        await ok(t, "mute", {"participant_id": client_pid(i, n), "kind": kind, "muted": True})
        acks.append(Ack(i, "mute", client_pid(i, n), kind))
    await ok(s.member(client_pid(i, 2)), "hand", {"raised": True})
    acks.append(Ack(i, "hand", client_pid(i, 2)))
    if i % 4:
        return
    c = [client_pid(i, n) for n in range(6)]
    rooms = [
        {"name": "Sister", "participant_ids": c[1:4], "scenario": "Asking your sister to stop",
         "roles": {c[1]: "protagonist", c[2]: "antagonist", c[3]: "observer"}},
        {"name": "Boss", "participant_ids": c[4:6], "scenario": "Asking for a day off",
         "roles": {c[4]: "protagonist", c[5]: "double"}},
    ]
    await ok(t, "breakouts_open", {"rooms": rooms, "minutes": ROLE_PLAY_MINUTES})
    view = await t.client.wait_for(lambda v: bool(v["breakouts"]["open"]), 30)
    s.ends_at = view["breakouts"]["ends_at"]
    s.rooms = {pid: room["id"] for room in view["breakouts"]["rooms"]
               for pid in room["members"]}
    acks.append(Ack(i, "breakouts", detail=str(s.ends_at)))


def expected(s: Session, m: Member, acks: Sequence[Ack]) -> Callable[[dict[str, Any]], bool]:
    """What `m`'s own view must show once every acknowledged command reached it."""
    mine = [a for a in acks if a.session == s.index]

    def holds(view: dict[str, Any]) -> bool:
        you = view["you"]
        if you["status"] != "admitted":
            return False
        for a in mine:
            if a.kind == "mute" and a.target == m.pid and not you["muted"][a.detail]:
                return False
            if a.kind == "hand" and a.target == m.pid and not you["hand"]:
                return False
            if a.kind == "breakouts" and (view["breakouts"]["ends_at"] != s.ends_at
                                          or you["room"] != s.rooms.get(m.pid, "main")):
                return False
        return True

    return holds


async def converge(sessions: Sequence[Session], acks: Sequence[Ack]) -> None:
    for s in sessions:
        for m in s.members:
            try:
                await m.client.wait_for(expected(s, m, acks), 30)
            except TimeoutError:
                raise RuntimeError(f"{m.pid} never saw the state given: {m.client.state}"
                                   ) from None


def lost_acks(sessions: Sequence[Session], acks: Sequence[Ack],
              summaries: dict[int, dict[str, Any]]) -> list[str]:
    """Acknowledged commands that do not show after the failover, each with what is wrong."""
    lost: list[str] = []
    for a in acks:
        s = sessions[a.session]
        therapist_view = s.therapist.view()
        peers = {p["id"]: p for p in therapist_view["participants"]}
        wrong = ""
        if a.kind == "admit_all":
            counts, before = summaries[a.session]["counts"], s.summary_before["counts"]
            if counts["admitted"] != before["admitted"] or any(
                    m.view()["you"]["status"] != "admitted" for m in s.members):
                wrong = f"admitted {counts['admitted']} (was {before['admitted']})"
        elif a.kind == "mute":
            own = s.member(a.target).view()["you"]["muted"][a.detail]
            seen = peers.get(a.target, {}).get("muted", {}).get(a.detail)
            if not (own and seen):
                wrong = f"{a.detail} mute of {a.target}: own view {own}, therapist's {seen}"
        elif a.kind == "hand":
            own = s.member(a.target).view()["you"]["hand"]
            seen = peers.get(a.target, {}).get("hand")
            if not (own and seen):
                wrong = f"hand of {a.target}: own view {own}, therapist's {seen}"
        elif a.kind == "breakouts":
            ends = {m.pid: m.view()["breakouts"]["ends_at"] for m in s.members
                    if m.role == "therapist" or m.pid in s.rooms}
            rooms = {pid: s.member(pid).view()["you"]["room"] for pid in s.rooms}
            if set(ends.values()) != {s.ends_at} or rooms != s.rooms:
                wrong = f"breakouts: ends_at {sorted(set(map(str, ends.values())))}, rooms moved"
        if wrong:
            lost.append(f"session {a.session} {a.kind}: {wrong}")
    return lost


# -- the measurement --------------------------------------------------------------------------


def back_after(m: Member, killed: int, owner_died: bool, killed_at: float) -> float | None:
    """Seconds from the kill until `m` held a view equal to its seat (the rules in the
    module docstring), or None if it never did."""
    if m.home == killed:
        return next((t - killed_at for t, new, s in m.views if new and s == m.before), None)
    if owner_died:
        return next((t - killed_at for t, _, s in m.views if s == m.before), None)
    lost_at = next((i for i, (_, _, s) in enumerate(m.views) if s != m.before), None)
    if lost_at is None:
        return 0.0
    return next((t - killed_at for t, _, s in m.views[lost_at:] if s == m.before), None)


async def watch_owners(api: Api, survivor: Node, sessions: Sequence[Session],
                       killed_at: float, until: float) -> dict[str, float]:
    """When (seconds after the kill) the survivor's directory entry first listed each
    session as its own; polled, so each figure is late by up to the poll period."""
    owned: dict[str, float] = {}
    ids = {s.id for s in sessions}
    while time.monotonic() < until and set(owned) != ids:
        with contextlib.suppress(Exception):
            found = await api.owners(survivor)
            now = time.monotonic() - killed_at
            for session_id in ids - set(owned):
                if survivor.node_id in found.get(session_id, []):
                    owned[session_id] = now
        await asyncio.sleep(0.2)
    return owned


def log_summary(path: Path, since_wall: float, limit: int = 12) -> list[str]:
    """The survivor's warnings and errors after the kill, grouped by message (ids and
    numbers blanked), with the first time each appeared relative to the kill."""
    pattern = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (\w+) (\S+): (.*)$")
    first: dict[str, float] = {}
    counts: Counter[str] = Counter()
    took: list[float] = []
    tracebacks = 0
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("Traceback"):
            tracebacks += 1
        match = pattern.match(line)
        if match is None:
            continue
        stamp, level, name, message = match.groups()
        at = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp() - since_wall
        if at < -1:
            continue
        if "took session over" in message:
            took.append(at)
        if level not in ("WARNING", "ERROR", "CRITICAL"):
            continue
        key = f"{level} {name}: " + re.sub(r"[0-9a-f]{6,}|\d+(\.\d+)?", "#", message)[:110]
        counts[key] += 1
        first.setdefault(key, at)
    lines = [f"took session over: {len(took)} time(s)"
             + (f", first at +{min(took):.1f} s, last at +{max(took):.1f} s" if took else "")]
    lines += [f"{n} x {key} (first at +{first[key]:.1f} s)" for key, n in counts.most_common(limit)]
    if tracebacks:
        lines.append(f"{tracebacks} traceback(s)")
    return lines


@dataclass
class Outcome:
    sessions: list[Session]
    killed: Node
    survivor: Node
    back: dict[str, float | None]
    owned_at: dict[str, float]
    lost: list[str]
    acks: int
    strays: dict[str, int]
    chat_ok: int
    chat_errors: Counter[str]
    logs: list[str]
    setup_s: float
    killed_at: float
    audit: LedgerAudit
    redis_note: str


async def run(args: argparse.Namespace, root: Path, db_url: str, redis: RedisProcess
              ) -> Outcome:
    env = {
        "CIRCLE_DATABASE_URL": db_url, "CIRCLE_REDIS_URL": redis.url,
        "CIRCLE_KEYS_FILE": str(root / "keys.json"), "CIRCLE_LEASE_TTL_S": str(args.lease_ttl),
        "CIRCLE_MEDIA": "false", "CIRCLE_MEDIA_WORKERS": "0", "CIRCLE_LOG_LEVEL": "INFO",
    }
    nodes = [Node(i, root, env) for i in range(2)]
    key = nodes[0].cli("keys", "create", "--role", "admin", "--name", "bench-failover")
    for node in nodes:
        node.start()
    killed, survivor = nodes[args.kill], nodes[1 - args.kill]
    members: list[Member] = []
    async with aiohttp.ClientSession() as http:
        api = Api(http, key)
        started = time.monotonic()
        try:
            sessions, acks = await build(api, nodes, args)
            members = [m for s in sessions for m in s.members]
            await settle_owners(api, nodes, sessions)
            for s in sessions:
                s.summary_before = await api.request(
                    "GET", f"{survivor.url}/api/v1/sessions/{s.id}")
            setup_s = time.monotonic() - started
            for m in members:
                m.before, m.socket_before, m.recording = seat(m.view()), m.client.sio, True

            killed_at, killed_wall = time.monotonic(), time.time()
            killed.kill()
            until = killed_at + args.recover_timeout
            owners = asyncio.create_task(watch_owners(api, survivor, sessions, killed_at, until))
            died = {s.index: s.owner == args.kill for s in sessions}

            def backs() -> dict[str, float | None]:
                return {m.pid: back_after(m, args.kill, died[m.session], killed_at)
                        for m in members}

            # The members are client processes: their views are polled, not signalled.
            while time.monotonic() < until and None in backs().values():  # noqa: ASYNC110
                await asyncio.sleep(POLL_S)
            owned_at = await owners
            await asyncio.sleep(2.0)  # late views (a seat lost after it came back) show here
            back = backs()
            summaries = {s.index: await api.request("GET", f"{survivor.url}/api/v1/sessions/{s.id}")
                         for s in sessions}
            lost = lost_acks(sessions, acks, summaries)
            strays = {
                "views differing from the seat": sum(
                    any(s != m.before for _, _, s in m.views) for m in members),
                "not connected at the end": sum(not m.client.connected for m in members),
                "seat differs at the end": sum(seat(m.view()) != m.before for m in members),
                "gave up": sum(m.client.gave_up is not None for m in members),
                "protocol errors": sum(bool(m.client.protocol_errors) for m in members),
            }
            chat_ok, chat_errors = await chat_probe(members)
            audit = await ledger_audit(db_url, root / "keys.json", sessions, killed_wall)
            redis_note = await redis_usage(redis.url)
        finally:
            await asyncio.gather(*(quiet_close(m.client) for m in members))
            for node in nodes:
                node.kill()
    return Outcome(sessions, killed, survivor, back, owned_at, lost, len(acks), strays,
                   chat_ok, chat_errors, log_summary(survivor.log_path, killed_wall), setup_s,
                   killed_at, audit, redis_note)


async def settle_owners(api: Api, nodes: Sequence[Node], sessions: Sequence[Session]) -> None:
    """Wait until the directory lists each session under its creator, and only there (the
    heartbeat refreshes it), so the kill finds the ownership the run set up."""
    want = {s.id: [nodes[s.owner].node_id] for s in sessions}
    deadline = time.monotonic() + 30
    while True:
        found = await api.owners(nodes[0])
        if all(found.get(k) == v for k, v in want.items()):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"ownership did not settle: {found}")
        await asyncio.sleep(0.2)


async def chat_probe(members: Sequence[Member]) -> tuple[int, Counter[str]]:
    """One chat message per client after the failover: an ack means its owner is live and
    knows this socket (a seat shown but not served would fail here)."""
    errors: Counter[str] = Counter()

    async def one(m: Member) -> bool:
        try:
            reply = await m.client.call("chat", {"text": "still here"}, timeout=15)
        except Exception as exc:
            errors[type(exc).__name__] += 1
            return False
        if not reply.get("ok"):
            errors[str(reply.get("error", {}).get("code"))] += 1
        return bool(reply.get("ok"))

    results = await bounded(40, [partial(one, m) for m in members])
    return sum(results), errors


@dataclass
class LedgerAudit:
    """What the ledger says happened: how often each session was claimed (its fence: one
    claim at creation, one per takeover) and the disconnects written after the kill."""

    fences: dict[str, int]
    disconnects: Counter[str]
    """participant id -> `disconnected` events dated after the kill."""


async def ledger_audit(db_url: str, keys: Path, sessions: Sequence[Session],
                       killed_wall: float) -> LedgerAudit:
    """Read back through the real Ledger (chain and MACs checked): a takeover that went
    twice shows as an extra fence, a false disconnect (a participant whose socket the
    survivor held all along) as a `disconnected` record, which attendance would bill."""
    db = await open_database(db_url)
    try:
        async with db.engine.connect() as conn:
            rows = (await conn.execute(
                select(ledger_fences.c.stream, ledger_fences.c.fence))).all()
        ledger = Ledger(db.ledger, KeyRing.load_or_create(keys))
        disconnects: Counter[str] = Counter()
        for s in sessions:
            for record in await ledger.load(s.id):
                event = from_record(record)
                if isinstance(event, Disconnected) and event.at.timestamp() > killed_wall - 1:
                    disconnects[event.participant_id] += 1
    finally:
        await db.close()
    return LedgerAudit({str(r.stream): int(r.fence) for r in rows}, disconnects)


async def redis_usage(url: str) -> str:
    """Redis memory and the inboxes' lengths at the end: read entries are never deleted,
    only trimmed at the inbox's cap, so this is what the bus keeps after a short run."""
    redis = open_redis(url)
    try:
        used = int((await redis.info("memory"))["used_memory"])
        lengths = [int(await redis.xlen(key)) async for key in redis.scan_iter("circle:inbox:*")]
        sizes = [int(await redis.memory_usage(key) or 0)
                 async for key in redis.scan_iter("circle:inbox:*")]
    finally:
        await redis.aclose()
    return (f"Redis used_memory {used / 1e6:.1f} MB at the end; inboxes: {len(lengths)}, "
            f"{sum(lengths)} entries, {sum(sizes) / 1e6:.1f} MB "
            f"({sum(sizes) / max(1, sum(lengths)):,.0f} B per entry)")


async def quiet_close(client: CircleClient) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(client.close(), 10)


# -- report -----------------------------------------------------------------------------------


def report(out: Outcome, args: argparse.Namespace) -> str:
    killed, survivor = out.killed, out.survivor
    died = {s.index for s in out.sessions if s.owner == args.kill}
    rows: list[list[object]] = []

    def on_killed(m: Member) -> bool:
        return bool(m.home == args.kill)

    classes: list[tuple[str, Callable[[Member], bool]]] = [
        (f"was on the killed node ({killed.node_id})", on_killed),
        ("- of which the session's owner was killed too",
         lambda m: on_killed(m) and m.session in died),
        ("- of which the session's owner survived",
         lambda m: on_killed(m) and m.session not in died),
        (f"on the survivor ({survivor.node_id})", lambda m: not on_killed(m)),
        ("- of which the session's owner was killed",
         lambda m: not on_killed(m) and m.session in died),
        ("- of which the session's owner survived",
         lambda m: not on_killed(m) and m.session not in died),
        ("all", lambda m: True),
    ]
    members = [m for s in out.sessions for m in s.members]
    for label, pick in classes:
        chosen = [m for m in members if pick(m)]
        times = [t for m in chosen if (t := out.back[m.pid]) is not None]
        sockets = [m.reconnected_at - out.killed_at for m in chosen
                   if m.reconnected_at is not None]
        rows.append([label, len(chosen), f"{len(times)}/{len(chosen)}",
                     f"{pct(times, 50):.2f}", f"{pct(times, 95):.2f}",
                     f"{max(times) if times else float('nan'):.2f}",
                     f"{pct(sockets, 50):.2f} / {pct(sockets, 95):.2f}" if sockets else "-"])
    moved = [s for s in out.sessions if s.owner == args.kill]
    kept = [s for s in out.sessions if s.owner != args.kill]

    def fence_counts(chosen: Sequence[Session]) -> str:
        counts = Counter(out.audit.fences.get(s.id, 0) for s in chosen)
        return ", ".join(f"{n} session(s) at {fence}" for fence, n in sorted(counts.items()))

    moved_at = [out.owned_at[s.id] for s in moved if s.id in out.owned_at]
    all_owned = (max(out.owned_at.values()) if len(out.owned_at) == len(out.sessions)
                 else float("nan"))
    back_all = [t for t in out.back.values() if t is not None]
    met = len(back_all) == len(members) and pct(back_all, 95) < 15
    text = [
        f"bench.failover: {args.sessions} sessions x {args.clients} participants "
        f"(1 therapist + {args.clients - 1} clients), 2 nodes, media off, "
        f"lease TTL {args.lease_ttl:g} s, node {args.kill} killed (SIGKILL)",
        "command: .venv/bin/python -m bench.failover " + " ".join(sys.argv[1:]),
        machine_note(),
        f"set-up (sessions, invites, {len(members)} connections, admits, state): "
        f"{out.setup_s:.1f} s",
        "",
        "Seconds from the kill until the client holds a `state` view equal to its seat "
        "before (status, room, breakout role, mutes):",
        "",
        table(["clients", "n", "back", "p50 s", "p95 s", "max s",
               "socket reopened p50 / p95 s"], rows),
        "",
        table(["failover", "value"], [
            ["sessions that changed owner", f"{len(moved_at)}/{len(moved)} "
             f"(of {len(out.sessions)}; the killed node owned {len(moved)})"],
            ["owner change, p50 / max s after the kill",
             f"{pct(moved_at, 50):.2f} / {max(moved_at) if moved_at else float('nan'):.2f}"],
            ["survivor lists every session as its own, s after the kill", f"{all_owned:.2f}"],
            ["acknowledged commands before the kill", out.acks],
            ["of them lost (not visible after)", len(out.lost)],
            ["chat acks after the failover", f"{out.chat_ok}/{len(members)}"
             + (f" ({dict(out.chat_errors)})" if out.chat_errors else "")],
            *[[k, v] for k, v in out.strays.items()],
            ["claims per moved session (ledger fence: 1 at creation + takeovers)",
             fence_counts(moved)],
            ["claims per session the survivor kept", fence_counts(kept)],
            ["`disconnected` written after the kill, killed node's clients",
             sum(out.audit.disconnects[m.pid] for m in members if m.home == args.kill)],
            ["`disconnected` written after the kill, survivor's clients (false)",
             sum(out.audit.disconnects[m.pid] for m in members if m.home != args.kill)],
            ["target: all back, p95 < 15 s", "met" if met else "NOT met"],
        ]),
    ]
    if out.lost:
        text += ["", "Lost:", *[f"- {x}" for x in out.lost[:20]]]
    again = [f"session {s.index} ({s.id}, created on node {s.owner}): fence "
             f"{out.audit.fences.get(s.id)}" for s in out.sessions
             if out.audit.fences.get(s.id, 0) > (2 if s.owner == args.kill else 1)]
    if again:
        text += ["", "Claimed more often than its takeovers need:", *[f"- {x}" for x in again]]
    text += ["", out.redis_note]
    text += ["", f"Survivor's log ({survivor.node_id}) after the kill:",
             *[f"- {x}" for x in out.logs]]
    return "\n".join(text) + "\n"


async def main_async(args: argparse.Namespace) -> str:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    with tempfile.TemporaryDirectory(prefix="circle-bench-failover-") as tmp:
        root = Path(tmp)
        redis = RedisProcess(root / "redis")
        try:
            async with asyncio.timeout(args.timeout):
                redis.start()
                async with postgres_database(args.postgres) as db_url:
                    outcome = await run(args, root, db_url, redis)
        finally:
            if args.keep_logs:  # the run is over: blocking holds up nothing on the loop
                for log in root.glob("node*.log"):  # noqa: ASYNC240
                    shutil.copy(log, args.keep_logs / log.name)
            _kill_children()
    return report(outcome, args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--clients", type=int, default=14,
                        help="participants per session, the therapist included (>= 7)")
    parser.add_argument("--lease-ttl", type=float, default=6.0, help="CIRCLE_LEASE_TTL_S")
    parser.add_argument("--kill", type=int, choices=(0, 1), default=0, help="node to kill")
    parser.add_argument("--recover-timeout", type=float, default=90.0,
                        help="seconds after the kill to wait for every client")
    parser.add_argument("--timeout", type=float, default=280.0, help="bound on the whole run")
    parser.add_argument("--postgres", default=PG_DEFAULT, metavar="URL",
                        help="PostgreSQL server (a fresh database is created and dropped)")
    parser.add_argument("--keep-logs", type=Path, metavar="DIR",
                        help="copy the nodes' logs here at the end")
    parser.add_argument("--out", type=Path, metavar="FILE", help="also write the report here")
    args = parser.parse_args()
    if args.clients < 7 or args.sessions < 2:
        parser.error("need --clients >= 7 (the state given uses 6 clients) and --sessions >= 2")
    try:
        text = asyncio.run(main_async(args))
    except (TimeoutError, asyncio.CancelledError, KeyboardInterrupt) as exc:
        # Bounded by --timeout or stopped by a signal: the clean-up above has run.
        sys.exit(f"bench.failover stopped ({type(exc).__name__}); its nodes, Redis and "
                 "database were removed")
    finally:
        _kill_children()
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
