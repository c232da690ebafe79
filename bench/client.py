"""Bench client worker: many light aiortc peers in one process, no codec work at all.

Publishing replays a pre-encoded clip (`bench.clip`) straight into the DTLS transport
(`_send_rtp`, SRTP applied there), so no encoder runs. Receiving registers a counting sink
in the transport's RTP router in place of aiortc's decoding receiver, so no decoder runs:
per SSRC it counts packets and tracks the highest extended sequence number (loss = gaps).
Each payload can carry a 10-byte trailer (magic + `time.monotonic_ns()` at send); the
monotonic clock is shared by every process on the machine, so receive minus send time is
the one-way delay through the relay. The relay never looks past the VP8 descriptor, so the
trailer is harmless to it; the decode/re-encode baseline must run without it.

Driven by the harness over stdin/stdout (JSON lines); talks SDP with the bench relay
server over TCP. Run by `bench.relay`, not by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import socket
import struct
import sys
import time
from typing import Any

import aioice.ice
from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.rtcconfiguration import RTCBundlePolicy
from aiortc.rtcrtpparameters import RTCRtpReceiveParameters, RTCRtpSendParameters
from aiortc.rtp import RTCP_PSFB_FIR, RTCP_PSFB_PLI, HeaderExtensions, RtcpPsfbPacket, RtpPacket

from bench import wire
from bench.clip import AUDIO_PTIME, Clip, read_clip
from server.media.keyframe import starts_keyframe

MAGIC = b"\xcb\x42"
TRAILER = struct.Struct("!2sq")
RCVBUF = 4 << 20
LATENCY_SAMPLE_CAP = 60000


def enable_loopback_gathering() -> None:
    """aioice leaves 127.0.0.1 out of host candidates; offer only loopback in the bench."""
    if getattr(aioice.ice.get_host_addresses, "_bench_loopback", False):
        return

    def loopback_only(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return ["127.0.0.1"] if use_ipv4 else []

    loopback_only._bench_loopback = True  # type: ignore[attr-defined]
    aioice.ice.get_host_addresses = loopback_only


class FirstPackets:
    """Per received SSRC: when its first packet, first keyframe start and first complete
    keyframe arrived (`time.monotonic()`; CLOCK_MONOTONIC is shared by all processes).

    A keyframe counts as complete at the packet with the marker bit set that carries the
    keyframe's RTP timestamp: with no loss in between, that is when a decoder could show
    its first frame (no decoder runs in the bench). Streams are dropped from the watch
    list once their keyframe is complete, so this costs nothing in steady state.
    """

    def __init__(self) -> None:
        self.kinds: dict[int, str] = {}
        """payload type -> mime type, learnt from the receivers' negotiated parameters."""
        self.streams: dict[int, dict[str, Any]] = {}
        self._watch: dict[int, dict[str, Any]] = {}

    def first(self, packet: RtpPacket, now: float) -> None:
        mime = self.kinds.get(packet.payload_type, "")
        entry: dict[str, Any] = {"mime": mime, "first": now, "key_start": None,
                                 "key_done": None, "key_ts": None, "key_starts": 0,
                                 "seq0": packet.sequence_number}
        self.streams[packet.ssrc] = entry
        if mime.lower().startswith("video/"):
            self._watch[packet.ssrc] = entry
            self.watch(packet, now)
        else:
            entry["key_start"] = entry["key_done"] = now

    def watch(self, packet: RtpPacket, now: float) -> None:
        entry = self._watch.get(packet.ssrc)
        if entry is None:
            return
        if entry["key_ts"] is None:
            if not starts_keyframe(entry["mime"], packet.payload):
                return
            entry["key_ts"], entry["key_start"] = packet.timestamp, now
            entry["key_starts"] += 1
        elif packet.timestamp != entry["key_ts"] and starts_keyframe(entry["mime"],
                                                                    packet.payload):
            # The previous keyframe's last packet never came (lost): wait for this one.
            entry["key_ts"] = packet.timestamp
            entry["key_starts"] += 1
        if packet.marker and packet.timestamp == entry["key_ts"]:
            entry["key_done"] = now
            del self._watch[packet.ssrc]

    @property
    def watching(self) -> bool:
        return bool(self._watch)


class Counter:
    """Sits in the router where aiortc's decoding receivers would; counts by SSRC."""

    def __init__(self, worker: Worker) -> None:
        self.streams: dict[int, list[int]] = {}
        """ssrc -> [packets, highest extended seq, bytes]."""
        self._worker = worker
        self.firsts = FirstPackets()

    def _handle_disconnect(self) -> None:
        pass

    async def _handle_rtcp_packet(self, packet: object) -> None:
        pass

    async def _handle_rtp_packet(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        now = time.monotonic_ns()
        stream = self.streams.get(packet.ssrc)
        seq = packet.sequence_number
        if stream is None:
            self.streams[packet.ssrc] = [1, seq, len(packet.payload)]
            self.firsts.first(packet, now / 1e9)
        else:
            if self.firsts.watching:
                self.firsts.watch(packet, now / 1e9)
            stream[0] += 1
            stream[2] += len(packet.payload)
            high = stream[1]
            delta = (seq - high) & 0xFFFF
            if delta < 0x8000:
                stream[1] = high + delta
        payload = packet.payload
        if payload[-10:-8] == MAGIC:
            self._worker.latency(now - TRAILER.unpack_from(payload, len(payload) - 10)[1])


class Publisher:
    """Replays the clip on one sender; restarts the video clip (a keyframe) on PLI/FIR."""

    def __init__(self, client: BenchClient, kind: str, ssrc: int) -> None:
        self._client = client
        self.kind = kind
        self._ssrc = ssrc
        self._restart = False
        self._last_restart = 0.0
        self.sent = 0
        self.task: asyncio.Task[None] | None = None

    async def _handle_rtcp_packet(self, packet: object) -> None:
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
            now = time.monotonic()
            accepted = now - self._last_restart >= self._client.worker.pli_interval
            plis = self._client.timeline["pli_in"]
            if len(plis) < 50:
                plis.append([round(now, 4), accepted])
            if accepted:
                self._last_restart = now
                self._restart = True

    async def start(self, parameters: RTCRtpSendParameters, transport: Any) -> None:
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._run(parameters, transport))

    async def _run(self, parameters: RTCRtpSendParameters, transport: Any) -> None:
        transport._register_rtp_sender(self, parameters)
        ext_map = transport._rtp_header_extensions_map
        pt = parameters.codecs[0].payloadType
        assert pt is not None, "a negotiated codec has a payload type"
        mid = parameters.muxId
        clip = self._client.clip
        trailer = self._client.trailer
        # Not secrets (the bench's own streams), just varied starting points and phases.
        seq = random.randrange(1 << 15)  # noqa: S311
        ts = random.randrange(1 << 31)  # noqa: S311
        loop = asyncio.get_running_loop()
        if self.kind == "audio":
            period, step, frames = AUDIO_PTIME, 960, [[p] for p in clip.audio]
        else:
            period, step, frames = 1 / clip.fps, 90000 // clip.fps, clip.video
        due = loop.time() + random.random() * period  # noqa: S311
        index = 0
        while True:
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            due += period
            if self._restart or index >= len(frames):
                if self._restart and len(self._client.timeline["restarts"]) < 50:
                    self._client.timeline["restarts"].append(round(time.monotonic(), 4))
                self._restart = False
                index = 0
            payloads = frames[index]
            index += 1
            ts = (ts + step) & 0xFFFFFFFF
            last = len(payloads) - 1
            for i, payload in enumerate(payloads):
                if trailer:
                    payload = payload + TRAILER.pack(MAGIC, time.monotonic_ns())
                packet = RtpPacket(
                    payload_type=pt, marker=int(i == last), sequence_number=seq,
                    timestamp=ts, ssrc=self._ssrc, payload=payload,
                )
                packet.extensions = HeaderExtensions(
                    mid=mid,
                    abs_send_time=(int(time.time() * (1 << 18)) & 0xFFFFFF),
                    audio_level=(True, 30) if self.kind == "audio" else None,
                    transport_sequence_number=seq,
                )
                seq = (seq + 1) & 0xFFFF
                try:
                    await transport._send_rtp(packet.serialize(ext_map))
                except ConnectionError:
                    return
                self.sent += 1


class BenchClient:
    """One participant: publishes audio+video from the clip, counts what it receives."""

    def __init__(self, worker: Worker, session: str, pid: str) -> None:
        self.worker = worker
        self.session = session
        self.pid = pid
        self.clip = worker.clip
        self.trailer = worker.trailer
        self.counter = Counter(worker)
        self.publishers: list[Publisher] = []
        self.pc = RTCPeerConnection(
            RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )
        self.sub_pc: RTCPeerConnection | None = None
        """With --separate-subscriber (Janus): the server's offers go to this second
        connection (Janus subscribes on a connection of its own, it offers)."""
        self.lock = asyncio.Lock()
        self.stable = asyncio.Event()
        self.timeline: dict[str, Any] = {
            "offer": None, "offer_sent": None, "answer": None, "answer_applied": None,
            "ice": None, "dtls": None, "sub_ice": None, "sub_dtls": None,
            "server_offers": [], "pli_in": [], "restarts": [],
        }
        """`time.monotonic()` of each step of the join (bench.first_packet reads it)."""
        self._watch_states(self.pc, "")
        for kind, mime in (("audio", "audio/opus"), ("video", "video/VP8")):
            transceiver = self.pc.addTransceiver(kind, direction="sendonly")
            caps = [c for c in RTCRtpSender.getCapabilities(kind).codecs if c.mimeType == mime]
            transceiver.setCodecPreferences(caps)
        self._hook()

    def _watch_states(self, pc: RTCPeerConnection, prefix: str) -> None:
        timeline = self.timeline

        def on_ice() -> None:
            if pc.iceConnectionState == "completed" and timeline[prefix + "ice"] is None:
                timeline[prefix + "ice"] = time.monotonic()

        def on_connection() -> None:
            if pc.connectionState == "connected" and timeline[prefix + "dtls"] is None:
                timeline[prefix + "dtls"] = time.monotonic()

        pc.on("iceconnectionstatechange", on_ice)
        pc.on("connectionstatechange", on_connection)

    def _hook(self, pc: RTCPeerConnection | None = None) -> None:
        """Replace aiortc's encoder loop and decoder with the replayer and the counter."""
        publish = pc is None or pc is self.pc
        for transceiver in (pc or self.pc).getTransceivers():
            receiver, sender = transceiver.receiver, transceiver.sender
            if "receive" not in vars(receiver):

                async def receive(params: RTCRtpReceiveParameters, r: Any = receiver) -> None:
                    for codec in params.codecs:
                        if codec.payloadType is not None:
                            self.counter.firsts.kinds[codec.payloadType] = codec.mimeType
                    r.transport._register_rtp_receiver(self.counter, params)
                    self._raise_buffers(r.transport)

                receiver.receive = receive  # type: ignore[method-assign,assignment]
            if "send" not in vars(sender) and publish:
                publisher = Publisher(self, transceiver.kind, sender._ssrc)
                self.publishers.append(publisher)

                async def send(params: RTCRtpSendParameters, p: Publisher = publisher,
                               s: Any = sender) -> None:
                    self._raise_buffers(s.transport)
                    await p.start(params, s.transport)

                sender.send = send  # type: ignore[method-assign,assignment]

    def _raise_buffers(self, dtls: Any) -> None:
        connection = dtls.transport._connection
        for protocol in getattr(connection, "_protocols", []):
            sock = protocol.transport.get_extra_info("socket") if protocol.transport else None
            if isinstance(sock, socket.socket) and sock.type == socket.SOCK_DGRAM:
                wire.raise_rcvbuf(sock, RCVBUF)

    async def join(self) -> None:
        async with self.lock:
            self.timeline["offer"] = time.monotonic()
            await self.pc.setLocalDescription(await self.pc.createOffer())
            self._hook()
            offer = self.pc.localDescription.sdp
            self.timeline["offer_sent"] = time.monotonic()
            answer = await self.worker.request(
                {"t": "offer", "s": self.session, "p": self.pid, "sdp": offer}
            )
            self.timeline["answer"] = time.monotonic()
            remote = RTCSessionDescription(answer["sdp"], "answer")
            await self.pc.setRemoteDescription(remote)
            self._hook()
            self.timeline["answer_applied"] = time.monotonic()
            self.stable.set()

    async def handle_offer(self, sdp: str) -> str:
        received = time.monotonic()
        await self.stable.wait()
        async with self.lock:
            pc = self.pc
            if self.worker.separate_subscriber:
                if self.sub_pc is None:
                    self.sub_pc = RTCPeerConnection(
                        RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
                    )
                    self._watch_states(self.sub_pc, "sub_")
                pc = self.sub_pc
            await pc.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
            self._hook(pc)
            await pc.setLocalDescription(await pc.createAnswer())
            self.timeline["server_offers"].append(
                [received, time.monotonic(), sdp.count("\nm="), len(sdp)])
            return str(pc.localDescription.sdp)


class Worker:
    """The process: its clients, one TCP link to the relay server, stdin from the harness."""

    def __init__(self, clip: Clip, trailer: bool, separate_subscriber: bool = False,
                 pli_interval: float = 0.5) -> None:
        self.pli_interval = pli_interval
        """A publisher restarts its clip (a keyframe) on PLI/FIR at most this often."""
        self.clip = clip
        self.trailer = trailer
        self.separate_subscriber = separate_subscriber
        self.clients: dict[tuple[str, str], BenchClient] = {}
        self._latencies: list[int] = []
        self._seen = 0
        self._pending: dict[tuple[str, str], asyncio.Future[dict[str, Any]]] = {}
        self._writer: asyncio.StreamWriter | None = None

    def latency(self, ns: int) -> None:
        self._seen += 1
        if len(self._latencies) < LATENCY_SAMPLE_CAP:
            self._latencies.append(ns)
        else:  # reservoir sampling keeps the sample uniform over the window
            j = random.randrange(self._seen)  # noqa: S311 (reservoir sampling, no secret)
            if j < LATENCY_SAMPLE_CAP:
                self._latencies[j] = ns

    async def request(self, message: dict[str, Any]) -> dict[str, Any]:
        assert self._writer is not None
        key = (message["s"], message["p"])
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        wire.send(self._writer, message)
        return await future

    async def _from_server(self, reader: asyncio.StreamReader) -> None:
        while (message := await wire.recv(reader)) is not None:
            key = (message["s"], message["p"])
            if message["t"] == "answer":
                self._pending.pop(key).set_result(message)
            elif message["t"] == "offer":
                asyncio.get_running_loop().create_task(self._answer(key, message["sdp"]))

    async def _answer(self, key: tuple[str, str], sdp: str) -> None:
        assert self._writer is not None
        answer = await self.clients[key].handle_offer(sdp)
        wire.send(self._writer, {"t": "answer", "s": key[0], "p": key[1], "sdp": answer})

    def stats(self, reset_latency: bool) -> dict[str, Any]:
        result: dict[str, Any] = {
            "clients": {
                f"{s}/{p}": {
                    "recv": {str(ssrc): v[:] for ssrc, v in c.counter.streams.items()},
                    "sent": {
                        kind: sum(pub.sent for pub in c.publishers if pub.kind == kind)
                        for kind in ("audio", "video")
                    },
                    "ssrcs": [pub._ssrc for pub in c.publishers],
                }
                for (s, p), c in self.clients.items()
            },
            "latency_ns": [] if reset_latency else self._latencies,
            "latency_seen": self._seen,
        }
        if reset_latency:
            # Discard without sending: serializing up to 60k samples would block this
            # worker's event loop at the start of the measured window and show up as
            # latency in it.
            self._latencies, self._seen = [], 0
        return result

    async def run(self, port: int) -> None:
        reader, self._writer = await asyncio.open_connection("127.0.0.1", port, limit=wire.LIMIT)
        asyncio.get_running_loop().create_task(self._from_server(reader))
        stdin = asyncio.StreamReader(limit=wire.LIMIT)
        loop = asyncio.get_running_loop()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
        while (command := await wire.recv(stdin)) is not None:
            if command["t"] == "join":
                for session, pid in command["clients"]:
                    self.clients[(session, pid)] = BenchClient(self, session, pid)
                await asyncio.gather(*(c.join() for c in self.clients.values()))
                reply: dict[str, Any] = {"t": "joined"}
            elif command["t"] == "stats":
                reply = self.stats(bool(command.get("reset")))
            elif command["t"] == "timeline":
                reply = {
                    f"{s}/{p}": {**c.timeline, "streams": {
                        str(ssrc): {**entry, "count": c.counter.streams[ssrc][0],
                                    "high": c.counter.streams[ssrc][1]}
                        for ssrc, entry in c.counter.firsts.streams.items()
                    }}
                    for (s, p), c in self.clients.items()
                }
            else:
                break
            sys.stdout.write(wire.json_line(reply))
            sys.stdout.flush()
        for client in self.clients.values():
            await client.pc.close()
            if client.sub_pc is not None:
                await client.sub_pc.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--clip", required=True)
    parser.add_argument("--trailer", action="store_true")
    parser.add_argument("--separate-subscriber", action="store_true",
                        help="receive on a second connection the server offers (Janus)")
    parser.add_argument("--pli-interval", type=float, default=0.5,
                        help="restart the clip on PLI/FIR at most this often (seconds)")
    args = parser.parse_args()
    enable_loopback_gathering()
    worker = Worker(read_clip(args.clip), args.trailer, args.separate_subscriber,
                    args.pli_interval)
    asyncio.run(worker.run(args.port))


if __name__ == "__main__":
    main()
