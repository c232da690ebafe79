"""Bench relay server: the relay alone in its own process, so its CPU can be measured.

`--mode forward` drives `server.media.relay.MediaRelay` through its public API (the
harness plays the control plane: plans and SDP over one TCP port, JSON lines).
`--mode baseline` relays the same load the way stock aiortc does: one
`RTCPeerConnection` per participant, every received track decoded once and fanned out
with `aiortc.contrib.media.MediaRelay` to one sendonly transceiver per subscriber, each
re-encoding. Both answer the clients' offers and then send each client one offer that
adds the other participants' tracks. Prints the port on stdout, then serves until killed.
With BENCH_PROFILE=<file> the process runs under cProfile and dumps it on SIGTERM.
With BENCH_RELAY_LATENCY=1 (`--mode forward` only) the relay's own forwarding latency is
recorded per forwarded packet (`RelayLatencyProbe`, bench-only: it wraps
`Ingress._handle_rtp_packet` from here; server/media is not changed).
`--mode janus` runs Janus 1.1's videoroom (`bench.janus_sfu`) and translates this
protocol to its HTTP API; CPU is then measured on the Janus process (`stats` names its pid).
`--mode forward --relay workers:N` (or BENCH_RELAY_WORKERS=N in the environment, which
`bench.relay` passes through) drives a real `server.media.workers.pool.WorkerPool` of N
worker processes instead of an in-process `MediaRelay`; the workers run
`bench.relay_worker` (the real worker plus the bench's buffer, probe and dump hooks).
`stats` then names the workers' pids (`pids`; `pid` is worker 0's) and merges their
forwarded counters and latency samples.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import socket
import struct
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaRelay as DecodingRelay
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcconfiguration import RTCBundlePolicy

from bench import wire
from server.media.relay import MediaRelay
from server.media.settings import RelaySettings
from signaling.ports import MediaGrant, MediaKind, MediaPlan, SignalType

RCVBUF = 4 << 20
Key = tuple[str, str]
SAMPLE_CAP = 60000
MAGIC = b"\xcb\x42"
"""The clients' latency trailer (bench.client): magic + monotonic_ns() at the publisher."""
TRAILER = struct.Struct("!2sq")


class Reservoir:
    """A uniform sample of at most SAMPLE_CAP values over a window (reset by the harness)."""

    def __init__(self) -> None:
        self.values: list[int] = []
        self.seen = 0

    def add(self, value: int) -> None:
        self.seen += 1
        if len(self.values) < SAMPLE_CAP:
            self.values.append(value)
        else:
            j = random.randrange(self.seen)  # noqa: S311 (reservoir sampling, no secret)
            if j < SAMPLE_CAP:
                self.values[j] = value

    def take(self, reset: bool) -> list[int]:
        """The sample, or (reset) nothing: a reset starts a window, and serializing a
        full sample then would block the relay's loop inside the new window."""
        if reset:
            self.values, self.seen = [], 0
            return []
        return self.values


class RelayLatencyProbe:
    """Relay-side forwarding latency, measured inside the relay process (bench-only).

    Wraps `Ingress._handle_rtp_packet` (the forwarder's entry point: aiortc calls it with
    the SRTP-decrypted, parsed RTP packet). Per packet that was forwarded to at least one
    subscriber it records `forward` = time from entry to the return of the handler, that
    is of the last subscriber's `send_rtp` (after the fan-out loop the handler only
    checks a flag; a PLI to the publisher, sent while a subscriber still waits for a
    keyframe, is included then). `ingress` = entry time minus the publisher's trailer
    timestamp: the publishing client's send path, the kernel, the relay's socket queue,
    aioice and SRTP unprotect. Cost: ~3 µs per *received* packet (not per sent one;
    measured with a no-op fan-out of 3), about 1 % of the relay's CPU at N=4.
    """

    def __init__(self) -> None:
        self.forward = Reservoir()
        self.ingress = Reservoir()

    def install(self) -> None:
        from server.media.forwarder import Ingress

        original = Ingress._handle_rtp_packet
        forward, ingress = self.forward, self.ingress
        clock = time.monotonic_ns

        async def timed(self: Ingress, packet: Any, arrival_time_ms: int) -> None:
            t0 = clock()
            await original(self, packet, arrival_time_ms)
            t1 = clock()
            egresses = self._egresses
            if not self.allowed or not egresses:
                return
            if all(e.waiting_for_keyframe for e in egresses):
                return
            forward.add(t1 - t0)
            payload = packet.payload
            if payload[-10:-8] == MAGIC:
                ingress.add(t0 - TRAILER.unpack_from(payload, len(payload) - 10)[1])

        Ingress._handle_rtp_packet = timed  # type: ignore[method-assign]


def raise_buffers(pc: RTCPeerConnection | None) -> None:
    """Same receive buffers as the clients (both relays get them, so it is fair)."""
    if pc is None:
        return
    for transceiver in pc.getTransceivers():
        connection = transceiver.receiver.transport.transport._connection
        for protocol in getattr(connection, "_protocols", []):
            transport = protocol.transport
            sock = transport.get_extra_info("socket") if transport else None
            if isinstance(sock, socket.socket):
                wire.raise_rcvbuf(sock, RCVBUF)


class Server:
    def __init__(self) -> None:
        self.owners: dict[Key, asyncio.StreamWriter] = {}

    def to_client(self, key: Key, message: dict[str, Any]) -> None:
        wire.send(self.owners[key], {"s": key[0], "p": key[1], **message})

    async def plan(self, session: str, pids: list[str]) -> None:
        raise NotImplementedError

    async def offer(self, key: Key, sdp: str) -> str:
        raise NotImplementedError

    async def answer(self, key: Key, sdp: str) -> None:
        raise NotImplementedError

    def forwarded(self) -> int:
        return 0

    probe: RelayLatencyProbe | None = None

    def measured_pid(self) -> int:
        """The process whose CPU is the SFU's (this one, or Janus)."""
        return os.getpid()

    async def stats(self, reset: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"t": "stats", "forwarded": self.forwarded(),
                               "pid": self.measured_pid(), "pids": [self.measured_pid()],
                               "parent_pid": os.getpid()}
        if self.probe is not None:
            out["relay_forward_ns"] = self.probe.forward.take(reset)
            out["relay_ingress_ns"] = self.probe.ingress.take(reset)
        return out

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (message := await wire.recv(reader)) is not None:
            kind = message["t"]
            if kind == "plan":
                await self.plan(message["s"], message["pids"])
                wire.send(writer, {"t": "ok"})
            elif kind == "stats":
                wire.send(writer, await self.stats(bool(message.get("reset"))))
            elif kind in ("offer", "answer"):
                key = (message["s"], message["p"])
                self.owners[key] = writer
                asyncio.get_running_loop().create_task(self._sdp(key, kind, message["sdp"]))

    async def _sdp(self, key: Key, kind: str, sdp: str) -> None:
        if kind == "offer":
            self.to_client(key, {"t": "answer", "sdp": await self.offer(key, sdp)})
        else:
            await self.answer(key, sdp)


class ForwardServer(Server):
    """Our relay, through `MediaRelay`'s public API only."""

    def __init__(self) -> None:
        super().__init__()
        self.relay = MediaRelay(self, RelaySettings.for_loopback())
        self.sessions: dict[str, list[str]] = {}

    async def send_signal(self, session_id: str, participant_id: str, kind: SignalType,
                          sdp: str) -> None:
        raise_buffers(self._pc((session_id, participant_id)))
        self.to_client((session_id, participant_id), {"t": kind, "sdp": sdp})

    async def media_published(self, session_id: str, participant_id: str,
                              kinds: frozenset[MediaKind]) -> None:
        pass

    async def media_flow(self, session_id: str, participant_id: str, kind: MediaKind,
                         flowing: bool, ago_s: float) -> None:
        pass

    async def talk_time(self, session_id: str, seconds: Mapping[str, float]) -> None:
        pass

    def _pc(self, key: Key) -> RTCPeerConnection | None:
        peer = self.relay.peer(*key)
        return None if peer is None else peer.peer_connection

    async def plan(self, session: str, pids: list[str]) -> None:
        self.sessions[session] = pids
        grants = {p: MediaGrant(p, "main", True, True) for p in pids}
        await self.relay.apply_plan(MediaPlan(session_id=session, grants=grants))

    async def offer(self, key: Key, sdp: str) -> str:
        answer = await self.relay.signal(key[0], key[1], "offer", sdp)
        assert answer is not None
        return answer

    async def answer(self, key: Key, sdp: str) -> None:
        await self.relay.signal(key[0], key[1], "answer", sdp)

    def forwarded(self) -> int:
        total = 0
        for session, pids in self.sessions.items():
            for pid in pids:
                peer = self.relay.peer(session, pid)
                if peer is not None:
                    total += sum(e.packets_sent for e in peer.egresses.values())
        return total


class WorkersServer(Server):
    """Our relay as N worker processes: a real `WorkerPool`, through the `Relay` seam only.

    The pool launches `bench.relay_worker` in place of `server.media.workers.process` (same
    arguments), which adds the bench's hooks to the real worker: 4 MiB UDP receive buffers,
    the latency probe (BENCH_RELAY_LATENCY), optional pinning (BENCH_WORKER_CPUS) and a
    dump of its counters and samples on SIGUSR1/SIGUSR2 (see that module). CPU is the
    workers' (`pids`); this process only relays SDP and plans, idle in steady state.
    """

    def __init__(self, count: int) -> None:
        super().__init__()
        from server.media.workers.pool import WorkerPool
        from server.media.workers.settings import WorkerSettings

        settings = WorkerSettings.of(RelaySettings.for_loopback(), "WARNING")
        self.pool = WorkerPool(self, settings, count)
        self.dump_dir = Path(tempfile.mkdtemp(prefix="bench-workers-"))
        self.sessions: dict[str, list[str]] = {}
        self.resets = 0

    async def start(self) -> None:
        real_exec = asyncio.create_subprocess_exec

        async def exec_bench_worker(program: Any, *args: Any,
                                    **kwargs: Any) -> asyncio.subprocess.Process:
            args = tuple("bench.relay_worker" if a == "server.media.workers.process" else a
                         for a in args)
            return await real_exec(program, *args, **kwargs)

        asyncio.create_subprocess_exec = exec_bench_worker
        os.environ["BENCH_WORKER_DUMP_DIR"] = str(self.dump_dir)
        await self.pool.start()

    async def send_signal(self, session_id: str, participant_id: str, kind: SignalType,
                          sdp: str) -> None:
        self.to_client((session_id, participant_id), {"t": kind, "sdp": sdp})

    async def media_published(self, session_id: str, participant_id: str,
                              kinds: frozenset[MediaKind]) -> None:
        pass

    async def media_flow(self, session_id: str, participant_id: str, kind: MediaKind,
                         flowing: bool, ago_s: float) -> None:
        pass

    async def talk_time(self, session_id: str, seconds: Mapping[str, float]) -> None:
        pass

    async def media_reset(self, session_id: str, participant_id: str) -> None:
        self.resets += 1  # a worker died: the bench does not re-offer, the run is void

    async def plan(self, session: str, pids: list[str]) -> None:
        self.sessions[session] = pids
        grants = {p: MediaGrant(p, "main", True, True) for p in pids}
        await self.pool.apply_plan(MediaPlan(session_id=session, grants=grants))

    async def offer(self, key: Key, sdp: str) -> str:
        answer = await self.pool.signal(key[0], key[1], "offer", sdp)
        assert answer is not None
        return answer

    async def answer(self, key: Key, sdp: str) -> None:
        await self.pool.signal(key[0], key[1], "answer", sdp)

    def worker_pids(self) -> list[int]:
        return [r.pid for r in self.pool.reports() if r.pid is not None]

    def measured_pid(self) -> int:
        pids = self.worker_pids()
        return pids[0] if pids else os.getpid()

    async def stats(self, reset: bool) -> dict[str, Any]:
        """Signal every worker to dump, wait for the files, merge (samples by weight)."""
        pids = self.worker_pids()
        for pid in pids:
            (self.dump_dir / f"{pid}.json").unlink(missing_ok=True)
            os.kill(pid, signal.SIGUSR1 if reset else signal.SIGUSR2)
        dumps: list[dict[str, Any]] = []
        deadline = time.monotonic() + 10
        for pid in pids:
            path = self.dump_dir / f"{pid}.json"
            # Another process writes the dump: nothing in this loop can signal it.
            while not path.exists() and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            dumps.append(json.loads(path.read_text()) if path.exists() else {})
        out: dict[str, Any] = {
            "t": "stats", "forwarded": sum(int(d.get("forwarded", 0)) for d in dumps),
            "pid": self.measured_pid(), "pids": pids, "parent_pid": os.getpid(),
            "resets": self.resets,
            "workers": [{"pid": r.pid, "sessions": r.sessions, "peers": r.peers,
                         "loop_lag_ms": d.get("loop_lag_ms")}
                        for r, d in zip(self.pool.reports(), dumps, strict=False)],
        }
        if any("relay_forward_ns" in d for d in dumps):
            out["relay_forward_ns"] = _merge(dumps, "relay_forward_ns", "forward_seen")
            out["relay_ingress_ns"] = _merge(dumps, "relay_ingress_ns", "ingress_seen")
        return out


def _merge(dumps: list[dict[str, Any]], key: str, seen: str) -> list[int]:
    """Pool per-worker reservoirs into one sample weighted by each worker's packet count."""
    total = sum(int(d.get(seen, 0)) for d in dumps)
    out: list[int] = []
    for d in dumps:
        values = d.get(key, [])
        if not values or not total:
            continue
        share = min(len(values), max(1, round(SAMPLE_CAP * int(d.get(seen, 0)) / total)))
        out += values if share >= len(values) else random.sample(values, share)
    return out


class BaselineServer(Server):
    """Decode once per published track, re-encode once per subscriber (stock aiortc)."""

    def __init__(self) -> None:
        super().__init__()
        self.relay = DecodingRelay()
        self.groups: dict[str, list[str]] = {}
        self.pcs: dict[Key, RTCPeerConnection] = {}
        self.tracks: dict[Key, dict[str, MediaStreamTrack]] = {}
        self.wired: set[str] = set()

    async def plan(self, session: str, pids: list[str]) -> None:
        self.groups[session] = pids

    async def offer(self, key: Key, sdp: str) -> str:
        pc = RTCPeerConnection(
            RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )
        self.pcs[key] = pc
        tracks = self.tracks.setdefault(key, {})
        pc.on("track", lambda track: tracks.__setitem__(track.kind, track))
        await pc.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        asyncio.get_running_loop().call_later(0.5, self._maybe_wire, key[0])
        return str(pc.localDescription.sdp)

    def _maybe_wire(self, session: str) -> None:
        pids = self.groups[session]
        if session in self.wired:
            return
        if not all(len(self.tracks.get((session, p), {})) == 2 for p in pids):
            return
        self.wired.add(session)
        for pid in pids:
            asyncio.get_running_loop().create_task(self._subscribe(session, pid, pids))

    async def _subscribe(self, session: str, pid: str, pids: list[str]) -> None:
        key = (session, pid)
        pc = self.pcs[key]
        raise_buffers(pc)
        for other in pids:
            if other != pid:
                for kind in ("audio", "video"):
                    source = self.tracks[(session, other)][kind]
                    track = self.relay.subscribe(source, buffered=False)
                    pc.addTransceiver(track, direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        self.to_client(key, {"t": "offer", "sdp": pc.localDescription.sdp})

    async def answer(self, key: Key, sdp: str) -> None:
        await self.pcs[key].setRemoteDescription(RTCSessionDescription(sdp, "answer"))


class JanusServer(Server):
    """Janus 1.1 videoroom as the SFU: this process only translates signaling.

    Per participant: one publisher handle (`joinandconfigure` with the client's offer) and,
    once every member of the group publishes, one multistream subscriber handle for all the
    others' streams (Janus offers; the client answers on a second peer connection, see
    `bench.client --separate-subscriber`; `start` carries the answer).
    """

    def __init__(self) -> None:
        super().__init__()
        from bench.janus_sfu import Janus

        self.janus = Janus()
        self.rooms: dict[str, int] = {}
        self.groups: dict[str, list[str]] = {}
        self.feeds: dict[Key, int] = {}
        self.publishing: dict[str, set[str]] = {}
        self.subscribers: dict[Key, int] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self.janus.start()

    def measured_pid(self) -> int:
        return self.janus.pid

    async def plan(self, session: str, pids: list[str]) -> None:
        room = 1000 + len(self.rooms)
        self.rooms[session] = room
        self.groups[session] = pids
        self.publishing[session] = set()
        await self.janus.create_room(room, publishers=len(pids) + 1)

    async def offer(self, key: Key, sdp: str) -> str:
        session, pid = key
        feed = 1 + self.groups[session].index(pid)
        self.feeds[key] = feed
        answer = await self.janus.publish(self.rooms[session], feed, pid, sdp)
        self.publishing[session].add(pid)
        if self.publishing[session] == set(self.groups[session]):
            loop = asyncio.get_running_loop()
            for other in self.groups[session]:
                task = loop.create_task(self._subscribe((session, other)))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
        return answer

    async def _subscribe(self, key: Key) -> None:
        session, pid = key
        feeds = [self.feeds[(session, p)] for p in self.groups[session] if p != pid]
        handle, offer = await self.janus.subscribe(self.rooms[session], feeds)
        self.subscribers[key] = handle
        self.to_client(key, {"t": "offer", "sdp": offer})

    async def answer(self, key: Key, sdp: str) -> None:
        await self.janus.start_subscriber(self.subscribers[key], sdp)


def worker_count(relay: str) -> int:
    """`--relay inproc` -> 0, `--relay workers:N` -> N; BENCH_RELAY_WORKERS=N overrides."""
    env = os.environ.get("BENCH_RELAY_WORKERS", "")
    if env:
        return int(env)
    if relay == "inproc":
        return 0
    kind, _, count = relay.partition(":")
    if kind != "workers" or not count.isdigit() or int(count) < 1:
        raise SystemExit(f"--relay {relay!r}: use inproc or workers:N (N >= 1)")
    return int(count)


async def serve(mode: str, workers: int = 0) -> None:
    server: Server
    if mode == "forward" and workers:
        pool = WorkersServer(workers)

        def stop_pool() -> None:
            shutil.rmtree(pool.dump_dir, ignore_errors=True)
            sys.exit(0)  # the workers exit when their channels close with this process

        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop_pool)
        await pool.start()
        server = pool
    elif mode == "forward":
        server = ForwardServer()
        if os.environ.get("BENCH_RELAY_LATENCY", "") not in ("", "0"):
            server.probe = RelayLatencyProbe()
            server.probe.install()
    elif mode == "janus":
        janus = JanusServer()

        def stop_janus() -> None:
            janus.janus.stop()
            sys.exit(0)

        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop_janus)
        await janus.start()
        server = janus
    else:
        server = BaselineServer()
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0, limit=wire.LIMIT)
    print(listener.sockets[0].getsockname()[1], flush=True)
    async with listener:
        await listener.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=("forward", "baseline", "janus"), default="forward")
    parser.add_argument("--relay", default="inproc",
                        help="forward mode: inproc (MediaRelay in this process) or workers:N "
                             "(a WorkerPool of N processes); env BENCH_RELAY_WORKERS=N wins")
    args = parser.parse_args()
    workers = worker_count(args.relay) if args.mode == "forward" else 0
    from bench.client import enable_loopback_gathering

    enable_loopback_gathering()
    profile_to = os.environ.get("BENCH_PROFILE")
    if not profile_to:
        asyncio.run(serve(args.mode, workers))
        return
    import cProfile

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    profiler = cProfile.Profile()
    try:
        profiler.runcall(asyncio.run, serve(args.mode, workers))
    finally:
        profiler.dump_stats(profile_to)


if __name__ == "__main__":
    main()
