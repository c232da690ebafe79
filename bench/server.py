"""Bench relay server: the relay alone in its own process, so its CPU can be measured.

`--mode forward` drives `server.media.relay.MediaRelay` through its public API (the
harness plays the control plane: plans and SDP over one TCP port, JSON lines).
`--mode baseline` relays the same load the way stock aiortc does: one
`RTCPeerConnection` per participant, every received track decoded once and fanned out
with `aiortc.contrib.media.MediaRelay` to one sendonly transceiver per subscriber, each
re-encoding. Both answer the clients' offers and then send each client one offer that
adds the other participants' tracks. Prints the port on stdout, then serves until killed.
With BENCH_PROFILE=<file> the process runs under cProfile and dumps it on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys
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

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (message := await wire.recv(reader)) is not None:
            kind = message["t"]
            if kind == "plan":
                await self.plan(message["s"], message["pids"])
                wire.send(writer, {"t": "ok"})
            elif kind == "stats":
                wire.send(writer, {"t": "stats", "forwarded": self.forwarded()})
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


async def serve(mode: str) -> None:
    server: Server = ForwardServer() if mode == "forward" else BaselineServer()
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0, limit=wire.LIMIT)
    print(listener.sockets[0].getsockname()[1], flush=True)
    async with listener:
        await listener.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=("forward", "baseline"), default="forward")
    args = parser.parse_args()
    from bench.client import enable_loopback_gathering

    enable_loopback_gathering()
    profile_to = os.environ.get("BENCH_PROFILE")
    if not profile_to:
        asyncio.run(serve(args.mode))
        return
    import cProfile

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    profiler = cProfile.Profile()
    try:
        profiler.runcall(asyncio.run, serve(args.mode))
    finally:
        profiler.dump_stats(profile_to)


if __name__ == "__main__":
    main()
