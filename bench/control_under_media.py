"""Control-plane acks of one session while a 12-person group's media flows through the server.

    .venv/bin/python -m bench.control_under_media                 # CIRCLE_MEDIA_WORKERS=2, then 0
    .venv/bin/python -m bench.control_under_media --workers 2,0 --size 12 --hands 300

One real `circle serve` per mode (`bench.control_common.CircleProcess`, SQLite, loopback,
port 0), started with CIRCLE_MEDIA_WORKERS=K: K=2 runs the relay in two worker processes,
K=0 in the server's own event loop (the "before"). In each:

- session A: a therapist and size-1 clients, all admitted, every one publishing audio +
  video. Their signaling is a plain python-socketio client each (this process), their media
  is `bench.client` (2 processes: the pre-encoded clip, counting receivers, latency
  trailer; exactly the load of `bench.relay`). A bridge in this process carries SDP
  between the two: `bench.client` speaks the bench's JSON lines to it, it speaks Circle's
  `signal` event to the server (offer -> ack + `signal` answer; the relay's offers ->
  `bench.client` -> `signal` answer). Media flows between `bench.client` and the server's
  relay directly; this process only handles signaling.
- session B: a therapist and one client, no media. Once A's streams all flow (+ warm-up),
  B's therapist sends `--hands` `hand` toggles, one at a time, `--gap` seconds apart; the
  ack round trip of each is the figure (the ack comes after the ledger append, as always).
  The same series is also taken before A's media starts ("idle"), as a floor.

CPU over the loaded series: the server process, its media workers (children), the client
processes and the rest of the machine; media: delivered pkt/s, loss and end-to-end latency
as `bench.relay` counts them. The machine is shared: compare the two modes of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import socketio

from bench import wire
from bench.clip import load_clip
from bench.control_common import (
    CircleProcess,
    Dist,
    call_ok,
    disconnect_quietly,
    machine_note,
    table,
)

now = time.perf_counter
Key = tuple[str, str]
REPO = Path(__file__).resolve().parent.parent
"""Where `python -m bench.client` runs (resolved at import, not on the event loop)."""


class Member:
    """One participant's signaling connection; relays its `signal` events to bench.client."""

    def __init__(self, url: str, token: str, key: Key) -> None:
        self.url, self.token, self.key = url, token, key
        self.sio = socketio.AsyncClient(reconnection=False)
        self.admitted = asyncio.Event()
        self.media: asyncio.StreamWriter | None = None
        self.resets = 0
        self.sio.on("state", self._on_state)
        self.sio.on("signal", self._on_signal)
        self.sio.on("media_reset", self._on_reset)

    async def _on_state(self, data: dict[str, Any]) -> None:
        if data["you"]["status"] == "admitted":
            self.admitted.set()

    async def _on_signal(self, data: dict[str, Any]) -> None:
        if self.media is not None:
            wire.send(self.media, {"t": data["type"], "s": self.key[0], "p": self.key[1],
                                   "sdp": data["sdp"]})

    async def _on_reset(self, data: Any = None) -> None:
        self.resets += 1

    async def connect(self) -> None:
        await self.sio.connect(self.url, auth={"token": self.token}, transports=["websocket"],
                               wait_timeout=30, retry=False)

    async def call(self, event: str, data: Any) -> dict[str, Any]:
        return await call_ok(self.sio, event, data)

    async def close(self) -> None:
        await disconnect_quietly(self.sio)


class Bridge:
    """The bench server's side of `bench.client`'s protocol, over Circle's `signal` event."""

    def __init__(self, members: dict[Key, Member]) -> None:
        self.members = members
        self.errors: list[str] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (message := await wire.recv(reader)) is not None:
            member = self.members[(message["s"], message["p"])]
            member.media = writer
            asyncio.get_running_loop().create_task(
                self._signal(member, message["t"], message["sdp"]))

    async def _signal(self, member: Member, kind: str, sdp: str) -> None:
        try:
            await member.call("signal", {"type": kind, "sdp": sdp})
        except Exception as exc:  # reported, the run then shows missing streams
            self.errors.append(f"{member.key}: {exc}")


class Clients:
    """The `bench.client` processes, driven over stdin/stdout without blocking the loop."""

    def __init__(self) -> None:
        self.procs: list[asyncio.subprocess.Process] = []

    async def start(self, count: int, port: int, clip: Path) -> None:
        for _ in range(count):
            self.procs.append(await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.client", "--port", str(port), "--clip", str(clip),
                "--trailer", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                limit=wire.LIMIT, cwd=REPO))

    async def ask(self, proc: asyncio.subprocess.Process,
                  message: dict[str, Any]) -> dict[str, Any]:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(wire.json_line(message).encode())
        await proc.stdin.drain()
        reply = await wire.recv(proc.stdout)
        assert reply is not None
        return reply

    async def join(self, keys: list[Key]) -> None:
        n = len(self.procs)
        await asyncio.gather(*(self.ask(p, {"t": "join", "clients": keys[i::n]})
                               for i, p in enumerate(self.procs)))

    async def stats(self, reset: bool) -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(self.ask(p, {"t": "stats", "reset": reset})
                                           for p in self.procs)))

    async def stop(self) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 5)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()


def streams(stats: list[dict[str, Any]]) -> dict[tuple[str, str], list[int]]:
    return {(client, ssrc): values for w in stats for client, entry in w["clients"].items()
            for ssrc, values in entry["recv"].items()}


def children(pid: int) -> list[int]:
    """Processes whose parent is `pid` (the server's media workers)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(entry))
            except OSError:
                continue
    return out


def cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += wire.cpu_seconds(pid)
    return total


@dataclass
class Outcome:
    workers: int
    idle: list[float] = field(default_factory=list)
    loaded: list[float] = field(default_factory=list)
    window_s: float = 0.0
    server_cores: float = 0.0
    worker_cores: float = 0.0
    client_cores: float = 0.0
    other_cores: float = 0.0
    harness_cores: float = 0.0
    """This process: the signaling clients, the bridge and the `hand` probe."""
    server_rq: float = 0.0
    """Share of the window the server process was runnable but had no CPU."""
    live: int = 0
    expected: int = 0
    received_pps: float = 0.0
    loss_pct: float = 0.0
    e2e_p50_ms: float = float("nan")
    e2e_p99_ms: float = float("nan")
    resets: int = 0
    errors: list[str] = field(default_factory=list)


async def hands(member: Member, count: int, gap: float) -> list[float]:
    rtts = []
    for i in range(count):
        start = now()
        await member.call("hand", {"raised": i % 2 == 0})
        rtts.append(now() - start)
        await asyncio.sleep(gap)
    if count % 2:
        await member.call("hand", {"raised": False})
    return rtts


async def run_mode(workers: int, args: argparse.Namespace, clip: Path, work: Path) -> Outcome:
    out = Outcome(workers)
    env = {"CIRCLE_EVENTS_BURST": "1000000", "CIRCLE_EVENTS_PER_SECOND": "1000000",
           "CIRCLE_MEDIA": "true", "CIRCLE_MEDIA_WORKERS": str(workers),
           "CIRCLE_ICE_SERVERS": "[]"}
    server = CircleProcess(work / f"w{workers}" / "data", env=env)
    server.start()
    members: dict[Key, Member] = {}
    clients = Clients()
    listener: asyncio.Server | None = None
    try:
        async with aiohttp.ClientSession() as http:
            headers = {"Authorization": f"Bearer {server.api_key}"}

            async def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
                async with http.post(server.url + path, json=body, headers=headers) as r:
                    data = await r.json()
                    if r.status != 201:
                        raise RuntimeError(f"{path}: {r.status} {data}")
                    return dict(data)

            starts = time.strftime("%Y-%m-%dT%H:00:00Z", time.gmtime())
            sessions = {}
            for name in ("A", "B"):
                created = await post("/api/v1/sessions", {
                    "title": f"bench {name}", "kind": "group", "program": "IOP",
                    "starts_at": starts, "minutes": 90})
                sessions[name] = str(created["id"])

            async def member(name: str, role: str, i: int) -> Member:
                pid = f"{role[0]}-{name}-{i}"
                data = await post(f"/api/v1/sessions/{sessions[name]}/invites", {
                    "participant_id": pid, "display_name": f"Pat Doe{i}", "role": role})
                m = Member(server.url, str(data["token"]), (sessions[name], pid))
                members[m.key] = m
                return m

            group = [await member("A", "therapist", 0)]
            group += [await member("A", "client", i) for i in range(args.size - 1)]
            other = [await member("B", "therapist", 0), await member("B", "client", 0)]
            for lead, rest in ((group[0], group[1:]), (other[0], other[1:])):
                await lead.connect()
                await asyncio.gather(*(m.connect() for m in rest))
                await lead.call("admit_all", {})
                await asyncio.wait_for(asyncio.gather(*(m.admitted.wait() for m in rest)), 30)
            probe = other[0]
            out.idle = await hands(probe, args.idle_hands, args.gap)

            bridge = Bridge(members)
            listener = await asyncio.start_server(bridge.handle, "127.0.0.1", 0,
                                                  limit=wire.LIMIT)
            port = listener.sockets[0].getsockname()[1]
            await clients.start(args.clients, port, clip)
            await clients.join([m.key for m in group])
            out.expected = args.size * (args.size - 1) * 2
            deadline = time.monotonic() + args.settle
            while time.monotonic() < deadline:
                out.live = sum(1 for v in streams(await clients.stats(True)).values()
                               if v[0] > 5)
                if out.live >= out.expected:
                    break
                await asyncio.sleep(0.5)
            await asyncio.sleep(args.warmup)

            wpids = children(server.pid)
            cpids = [p.pid for p in clients.procs]
            t0, busy0 = time.monotonic(), wire.busy_seconds()
            s0, w0, c0 = cpu([server.pid]), cpu(wpids), cpu(cpids)
            h0, rq0 = cpu([os.getpid()]), wire.runqueue_wait_seconds(server.pid)
            before = streams(await clients.stats(True))
            out.loaded = await hands(probe, args.hands, args.gap)
            after_stats = await clients.stats(False)
            t1, busy1 = time.monotonic(), wire.busy_seconds()
            s1, w1, c1 = cpu([server.pid]), cpu(wpids), cpu(cpids)
            h1, rq1 = cpu([os.getpid()]), wire.runqueue_wait_seconds(server.pid)
            wall = t1 - t0
            out.harness_cores = round((h1 - h0) / wall, 3)
            out.server_rq = round((rq1 - rq0) / wall, 3)
            out.window_s = round(wall, 1)
            out.server_cores = round((s1 - s0) / wall, 3)
            out.worker_cores = round((w1 - w0) / wall, 3)
            out.client_cores = round((c1 - c0) / wall, 3)
            used = (s1 - s0) + (w1 - w0) + (c1 - c0) + (h1 - h0)
            out.other_cores = round(max(0.0, busy1 - busy0 - used) / wall, 3)
            received = lost_or_got = 0
            for key, (count, high, _) in streams(after_stats).items():
                n0, h0, _ = before.get(key, [0, high - count + 1, 0])
                received += count - n0
                lost_or_got += high - h0
            out.received_pps = round(received / wall, 1)
            out.loss_pct = round(100 * max(0, lost_or_got - received) / max(1, lost_or_got), 3)
            lat = Dist.of([x / 1e9 for s in after_stats for x in s["latency_ns"]])
            out.e2e_p50_ms, out.e2e_p99_ms = lat.p50, lat.p99
            out.resets = sum(m.resets for m in members.values())
            out.errors = bridge.errors
    finally:
        await clients.stop()
        if listener is not None:
            listener.close()
        await asyncio.gather(*(m.close() for m in members.values()))
        server.stop()
    return out


def report(outcomes: list[Outcome], args: argparse.Namespace) -> str:
    rows = []
    for o in outcomes:
        idle, loaded = Dist.of(o.idle), Dist.of(o.loaded)
        rows.append([f"CIRCLE_MEDIA_WORKERS={o.workers}", f"{idle.p50:.2f}", f"{idle.p99:.2f}",
                     loaded.n, f"{loaded.p50:.2f}", f"{loaded.p99:.2f}", f"{loaded.max:.1f}",
                     "met" if loaded.p99 < args.target_ms else "MISSED"])
    acks = table(["server", "idle p50", "idle p99", "n", "under media p50", "under media p99",
                  "max", f"p99 < {args.target_ms:g} ms"], rows)
    media = table(["server", "window s", "streams", "delivered pkt/s", "loss %",
                   "e2e p50 / p99 ms", "server cores", "server rq", "worker cores",
                   "client cores", "harness cores", "other cores", "media_reset",
                   "bridge errors"],
                  [[f"CIRCLE_MEDIA_WORKERS={o.workers}", o.window_s,
                    f"{o.live}/{o.expected}", o.received_pps, o.loss_pct,
                    f"{o.e2e_p50_ms:.1f} / {o.e2e_p99_ms:.1f}", o.server_cores, o.server_rq,
                    o.worker_cores, o.client_cores, o.harness_cores, o.other_cores, o.resets,
                    len(o.errors)]
                   for o in outcomes])
    return (f"bench.control_under_media: session A = {args.size} participants publishing "
            f"audio+video; session B's therapist: {args.hands} `hand` acks, {args.gap * 1000:g} "
            f"ms apart (idle: {args.idle_hands} before A's media)\n{machine_note()}\n\n"
            f"`hand` ack round trip, ms\n\n{acks}\n\nsession A's media during the series\n\n"
            f"{media}\n")


async def main_async(args: argparse.Namespace) -> None:
    clip = load_clip(640, 480, 15, 3.0, 600_000)
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="circle-bench-cum-") as tmp:
        for workers in (int(w) for w in args.workers.split(",")):
            outcome = await run_mode(workers, args, clip, Path(tmp))
            outcomes.append(outcome)
            for error in outcome.errors[:3]:
                print(f"workers={workers}: bridge error {error}")
            print(report(outcomes[-1:], args), flush=True)
    print(report(outcomes, args))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", default="2,0", help="CIRCLE_MEDIA_WORKERS per mode, in order")
    parser.add_argument("--size", type=int, default=12, help="participants in session A")
    parser.add_argument("--clients", type=int, default=2, help="bench.client processes")
    parser.add_argument("--hands", type=int, default=300, help="hand acks under media")
    parser.add_argument("--idle-hands", type=int, default=60, help="hand acks before media")
    parser.add_argument("--gap", type=float, default=0.03, help="seconds between hand acks")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--settle", type=float, default=40.0)
    parser.add_argument("--target-ms", type=float, default=50.0)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
