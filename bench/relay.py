"""Relay benchmark: G groups of N participants publishing audio+video through the relay.

    .venv/bin/python -m bench.relay                 # default: compare + ramp, < 3 min
    .venv/bin/python -m bench.relay --only compare --groups 1 --size 6 --seconds 20
    .venv/bin/python -m bench.relay --only ramp --ramp 4,8,12,15
    .venv/bin/python -m bench.relay --only compare --modes forward,janus --size 8
    .venv/bin/python -m bench.relay --relay-cpus 1 --client-cpus 0   # pin (taskset)

The relay runs alone in a subprocess (`bench.server`); its CPU is read from
/proc/<pid>/stat. Clients run in worker subprocesses (`bench.client`) and replay a
pre-encoded VP8 + Opus clip, counting received RTP without decoding. Everything is on
loopback with `iceServers=[]`. Mode `janus` runs Janus 1.1's videoroom in place of the
relay (`bench.janus_sfu`) and measures the Janus process. In mode `forward` the relay
process also records its own forwarding latency (BENCH_RELAY_LATENCY=1, see
`bench.server.RelayLatencyProbe`; `--no-relay-latency` turns it off). See
docs/benchmarks.md for the method and the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench import wire
from bench.clip import load_clip

PY = sys.executable


@dataclass
class Result:
    mode: str
    groups: int
    size: int
    seconds: float
    server_cores: float
    client_cores: float
    received_pps: float
    expected_streams: int
    live_streams: int
    loss_pct: float
    relay_loss_pct: float | None
    """Forward mode: 1 - packets the relay sent / (packets published x (N-1)): loss at the
    relay alone (its socket drops, packets it did not forward), not at the receivers."""
    us_per_packet: float
    pps_per_core: float
    cores_per_stream: float
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    relay_fwd_p50_us: float | None
    """Relay-side: decrypted RTP handed to the forwarder -> last subscriber's send returned."""
    relay_fwd_p99_us: float | None
    relay_ingress_p50_ms: float | None
    """Publisher's trailer timestamp -> forwarder entry (client send path, kernel, relay
    socket queue, aioice, SRTP unprotect)."""
    relay_ingress_p99_ms: float | None
    server_runqueue_wait: float
    """Fraction of wall time the relay was runnable but waiting for a CPU (starved)."""
    other_cores: float
    """Cores busy with anything but the SFU and the client workers (the rest of the machine)."""
    server_udp_drops: int
    client_udp_drops: int
    snmp_rcvbuf_errors: int


class Proc:
    """A bench subprocess spoken to in JSON lines over its stdin/stdout."""

    def __init__(self, args: list[str], cpus: str | None = None,
                 env: dict[str, str] | None = None) -> None:
        pin = ["taskset", "-c", cpus] if cpus else []
        self.p = subprocess.Popen(
            [*pin, PY, "-m", *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            cwd=Path(__file__).resolve().parent.parent, env=env,
        )

    def ask(self, message: dict[str, Any]) -> dict[str, Any]:
        assert self.p.stdin is not None and self.p.stdout is not None
        self.p.stdin.write(wire.json_line(message))
        self.p.stdin.flush()
        reply = json.loads(self.p.stdout.readline())
        assert isinstance(reply, dict)
        return reply

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(5)
            except subprocess.TimeoutExpired:
                self.p.kill()


def _drops(pids: list[int]) -> int:
    by_inode = wire.udp_drops_by_inode()
    return sum(by_inode.get(i, 0) for pid in pids for i in wire.socket_inodes(pid))


def sent(stats: list[dict[str, Any]]) -> int:
    """RTP packets all publishers have sent so far."""
    return sum(sum(e["sent"].values()) for w in stats for e in w["clients"].values())


def streams(stats: list[dict[str, Any]]) -> dict[tuple[str, str], list[int]]:
    out: dict[tuple[str, str], list[int]] = {}
    for worker in stats:
        for client, entry in worker["clients"].items():
            for ssrc, values in entry["recv"].items():
                out[(client, ssrc)] = values
    return out


async def _control(port: int, message: dict[str, Any]) -> dict[str, Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=wire.LIMIT)
    wire.send(writer, message)
    reply = await wire.recv(reader)
    writer.close()
    assert reply is not None
    return reply


def control(port: int, message: dict[str, Any]) -> dict[str, Any]:
    """One request to bench.server's control port, from synchronous code."""
    return asyncio.run(_control(port, message))


def join_clients(procs: list[Proc], members: list[tuple[str, str]]) -> None:
    """Hand each client worker its share of (group, participant) `members`; return once
    every worker says its participants have offered."""
    for w, proc in enumerate(procs):
        assert proc.p.stdin is not None
        proc.p.stdin.write(wire.json_line({"t": "join", "clients": members[w::len(procs)]}))
        proc.p.stdin.flush()
    for proc in procs:
        assert proc.p.stdout is not None
        proc.p.stdout.readline()


def wait_for_streams(procs: list[Proc], expected: int, timeout: float) -> int:
    """Poll the client workers until `expected` received streams carry packets, or the
    timeout; returns how many did."""
    deadline = time.monotonic() + timeout
    live = 0
    while time.monotonic() < deadline:
        stats = [p.ask({"t": "stats", "reset": True}) for p in procs]
        live = sum(1 for v in streams(stats).values() if v[0] > 5)
        if live >= expected:
            break
        time.sleep(0.5)
    return live


def percentiles(values: list[int], scale: float) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    values = sorted(values)
    p50 = values[len(values) // 2] / scale
    p99 = values[min(len(values) - 1, int(len(values) * 0.99))] / scale
    return round(p50, 3), round(p99, 3)


def run(mode: str, groups: int, size: int, seconds: float, workers: int, clip: Path,
        warmup: float, settle_timeout: float, relay_latency: bool = True,
        relay_cpus: str | None = None, client_cpus: str | None = None) -> Result:
    env = dict(os.environ)
    if relay_latency and mode == "forward":
        env["BENCH_RELAY_LATENCY"] = "1"
    server = Proc(["bench.server", "--mode", mode], relay_cpus, env)
    assert server.p.stdout is not None
    port = int(server.p.stdout.readline())
    sfu_pid = int(asyncio.run(_control(port, {"t": "stats"})).get("pid", server.p.pid))
    trailer = mode != "baseline"
    procs = [
        Proc(["bench.client", "--port", str(port), "--clip", str(clip)]
             + (["--trailer"] if trailer else [])
             + (["--separate-subscriber"] if mode == "janus" else []), client_cpus)
        for _ in range(workers)
    ]
    try:
        members = [(f"g{g}", f"p{i}") for g in range(groups) for i in range(size)]
        for g in range(groups):
            asyncio.run(_control(port, {"t": "plan", "s": f"g{g}",
                                        "pids": [f"p{i}" for i in range(size)]}))
        join_clients(procs, members)
        expected = groups * size * (size - 1) * 2
        live = wait_for_streams(procs, expected, settle_timeout)
        time.sleep(warmup)
        pids = [p.p.pid for p in procs]
        t0, cpu0 = time.monotonic(), wire.cpu_seconds(sfu_pid)
        wait0 = wire.runqueue_wait_seconds(sfu_pid)
        ccpu0 = sum(wire.cpu_seconds(pid) for pid in pids)
        busy0 = wire.busy_seconds()
        drops0, cdrops0, snmp0 = _drops([sfu_pid]), _drops(pids), wire.snmp_udp()
        relay0 = asyncio.run(_control(port, {"t": "stats", "reset": True}))
        before_stats = [p.ask({"t": "stats", "reset": True}) for p in procs]
        before = streams(before_stats)
        time.sleep(seconds)
        after_stats = [p.ask({"t": "stats", "reset": False}) for p in procs]
        relay_stats = asyncio.run(_control(port, {"t": "stats", "reset": False}))
        t1, cpu1 = time.monotonic(), wire.cpu_seconds(sfu_pid)
        wait1 = wire.runqueue_wait_seconds(sfu_pid)
        ccpu1 = sum(wire.cpu_seconds(pid) for pid in pids)
        busy1 = wire.busy_seconds()
        drops1, cdrops1, snmp1 = _drops([sfu_pid]), _drops(pids), wire.snmp_udp()
        after = streams(after_stats)
        received = lost_or_got = 0
        for key, (count, high, _) in after.items():
            c0, h0, _ = before.get(key, (0, high - count + 1, 0))
            received += count - c0
            lost_or_got += high - h0
        wall, cpu = t1 - t0, cpu1 - cpu0
        published = sent(after_stats) - sent(before_stats)
        forwarded = int(relay_stats.get("forwarded", 0)) - int(relay0.get("forwarded", 0))
        relay_loss = None
        if mode == "forward" and published:
            owed = published * (size - 1)
            relay_loss = round(100 * max(0, owed - forwarded) / owed, 3)
        p50, p99 = percentiles([x for s in after_stats for x in s["latency_ns"]], 1e6)
        fwd50, fwd99 = percentiles(relay_stats.get("relay_forward_ns", []), 1e3)
        in50, in99 = percentiles(relay_stats.get("relay_ingress_ns", []), 1e6)
        return Result(
            mode=mode, groups=groups, size=size, seconds=round(wall, 2),
            server_cores=round(cpu / wall, 3),
            client_cores=round((ccpu1 - ccpu0) / wall, 3),
            received_pps=round(received / wall, 1),
            expected_streams=expected, live_streams=live,
            loss_pct=round(100 * max(0, lost_or_got - received) / max(1, lost_or_got), 3),
            relay_loss_pct=relay_loss,
            us_per_packet=round(cpu / max(1, received) * 1e6, 2),
            pps_per_core=round(received / max(cpu, 1e-9), 0),
            cores_per_stream=round(cpu / wall / max(1, expected), 5),
            latency_p50_ms=p50, latency_p99_ms=p99,
            relay_fwd_p50_us=fwd50, relay_fwd_p99_us=fwd99,
            relay_ingress_p50_ms=in50, relay_ingress_p99_ms=in99,
            server_runqueue_wait=round((wait1 - wait0) / wall, 3),
            other_cores=round(max(0.0, busy1 - busy0 - cpu - (ccpu1 - ccpu0)) / wall, 3),
            server_udp_drops=drops1 - drops0, client_udp_drops=cdrops1 - cdrops0,
            snmp_rcvbuf_errors=snmp1.get("RcvbufErrors", 0) - snmp0.get("RcvbufErrors", 0),
        )
    finally:
        for proc in procs:
            proc.stop()
        server.stop()


def _print(results: list[Result]) -> None:
    cols = ("mode", "groups", "size", "server_cores", "client_cores", "received_pps",
            "live_streams", "expected_streams", "loss_pct", "relay_loss_pct", "us_per_packet",
            "pps_per_core",
            "cores_per_stream", "latency_p50_ms", "latency_p99_ms", "relay_fwd_p50_us",
            "relay_fwd_p99_us", "relay_ingress_p50_ms", "relay_ingress_p99_ms",
            "server_runqueue_wait",
            "other_cores",
            "server_udp_drops",
            "client_udp_drops", "snmp_rcvbuf_errors")
    print(" | ".join(cols))
    for r in results:
        print(" | ".join(str(asdict(r)[c]) for c in cols))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=("compare", "ramp", "all"), default="all")
    parser.add_argument("--modes", default="forward,baseline,janus",
                        help="compare: any of forward, baseline, janus")
    parser.add_argument("--groups", type=int, default=1)
    parser.add_argument("--size", type=int, default=4, help="participants per group (compare)")
    parser.add_argument("--seconds", type=float, default=15.0, help="measured window (compare)")
    parser.add_argument("--ramp", default="4,8,12,15", help="group sizes for the ramp")
    parser.add_argument("--ramp-seconds", type=float, default=8.0)
    parser.add_argument("--workers", type=int, default=2, help="client processes")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--fps", type=int, default=15)
    parser.add_argument("--bitrate", type=int, default=600_000)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--ramp-modes", default="forward",
                        help="modes run at each ramp size (forward, janus)")
    parser.add_argument("--relay-cpus", help="taskset -c list for the relay (and Janus)")
    parser.add_argument("--client-cpus", help="taskset -c list for the client workers")
    parser.add_argument("--no-relay-latency", action="store_true",
                        help="do not record the relay-side forwarding latency")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    clip = load_clip(args.width, args.height, args.fps, 3.0, args.bitrate)
    results: list[Result] = []
    if args.only in ("compare", "all"):
        for mode in args.modes.split(","):
            results.append(run(mode, args.groups, args.size, args.seconds, args.workers, clip,
                               args.warmup, 30.0, not args.no_relay_latency,
                               args.relay_cpus, args.client_cpus))
            _print(results[-1:])
    n_compare = len(results)
    if args.only in ("ramp", "all"):
        for size in (int(s) for s in args.ramp.split(",")):
            for mode in args.ramp_modes.split(","):
                results.append(run(mode, 1, size, args.ramp_seconds, args.workers, clip,
                                   args.warmup, 30.0, not args.no_relay_latency,
                                   args.relay_cpus, args.client_cpus))
                _print(results[-1:])
    print()
    _print(results)
    compared = results[:n_compare]  # ratios within the compare phase, not vs ramp runs
    by_mode = {r.mode: r for r in compared if r.size == args.size and r.groups == args.groups}
    if "forward" in by_mode and "baseline" in by_mode:
        f, b = by_mode["forward"], by_mode["baseline"]
        print(f"\nbaseline/forward cores per delivered stream: "
              f"{b.cores_per_stream / max(f.cores_per_stream, 1e-9):.1f}x; "
              f"CPU per delivered packet: {b.us_per_packet / max(f.us_per_packet, 1e-9):.1f}x")
    if "forward" in by_mode and "janus" in by_mode:
        f, j = by_mode["forward"], by_mode["janus"]
        print(f"janus/forward cores per delivered stream: "
              f"{j.cores_per_stream / max(f.cores_per_stream, 1e-9):.2f}x; "
              f"CPU per delivered packet: {j.us_per_packet / max(f.us_per_packet, 1e-9):.2f}x")
    sustained = [r.size for r in results if r.mode == "forward" and r.groups == 1
                 and r.live_streams >= r.expected_streams and r.loss_pct < 0.1
                 and r.server_cores <= 1.0]
    if sustained:
        print(f"largest single group sustained on <= 1 core without loss: {max(sustained)}")
    at_relay = [r.size for r in results if r.mode == "forward" and r.groups == 1
                and r.live_streams >= r.expected_streams and r.relay_loss_pct is not None
                and r.relay_loss_pct < 0.1 and r.server_udp_drops == 0 and r.server_cores <= 1.0]
    if at_relay:
        print(f"largest single group the relay forwarded without loss on <= 1 core "
              f"(receivers' drops aside): {max(at_relay)}")
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in results], indent=2))


if __name__ == "__main__":
    main()
