"""Media workers bench: G groups of N through a `WorkerPool` of 1, 2... processes vs in-process.

    .venv/bin/python -m bench.workers --relays workers:1,workers:2 --groups 2,3,4,5 --size 6
    .venv/bin/python -m bench.workers --relays inproc,workers:1 --groups 1 --size 12 --seconds 10
    .venv/bin/python -m bench.workers --relays workers:2 --groups 4 --worker-cpus 0,1

Same load, clients and accounting as `bench.relay` (pre-encoded clip, counting receivers,
latency trailer, `bench.client` worker processes), but the relay under test is
`bench.server --mode forward --relay R`: `inproc` (one `MediaRelay` in the bench server's
loop, as `bench.relay` measures it) or `workers:K` (a real `WorkerPool` of K processes, each
running the real worker plus the bench's hooks, `bench.relay_worker`). Sessions are pinned
by the pool itself (fewest sessions first), so G groups spread over K workers.

Relay CPU = utime+stime of every worker process (their pids come from `pool.reports()`
through the bench server's `stats`), summed; the pool's parent process (it only passes SDP
and plans, and reads each worker's stats once a second) is reported apart as
`parent_cores`. Client CPU = the `bench.client` processes. `other_cores` = the rest of the
machine. `--quota C` puts each relay process in a cgroup capped at C cores (see `Quota`):
on a 2-core box the clients need most of a core themselves, so "one core per worker" is
only reachable as "C cores per worker, the rest for the clients".

Per size in `--groups`, in order, for each relay in `--relays`; with `--stop-loss
P` a relay's ramp stops after the first size whose receiver or relay loss exceeds P %. The summary
gives, per relay, the most groups carried at <= P % loss and the ratio to the first relay.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import wire
from bench.clip import load_clip
from bench.relay import (
    Proc,
    control,
    join_clients,
    percentiles,
    sent,
    streams,
    wait_for_streams,
)


@dataclass
class Point:
    relay: str
    groups: int
    size: int
    seconds: float
    relay_cores: float
    """All worker processes (or the in-process relay's process), summed."""
    worker_cores: list[float]
    parent_cores: float
    """The pool's parent (bench.server) when the relay runs in workers; 0 in-process."""
    client_cores: float
    other_cores: float
    received_pps: float
    expected_streams: int
    live_streams: int
    loss_pct: float
    """Receivers' sequence gaps (includes the client workers' own socket drops)."""
    relay_loss_pct: float | None
    """1 - packets the relay(s) sent / (packets published x (N-1)) over the window."""
    us_per_packet: float
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    relay_fwd_p50_us: float | None
    relay_fwd_p99_us: float | None
    relay_ingress_p50_ms: float | None
    relay_ingress_p99_ms: float | None
    relay_runqueue_wait: float
    relay_udp_drops: int
    client_udp_drops: int
    throttled: float = 0.0
    """With --quota: seconds per second the relay processes spent throttled (summed)."""
    workers: list[dict[str, Any]] = field(default_factory=list)
    """Per worker at the end of the window: pid, sessions, peers, loop lag (worst, ms)."""


def drops(pids: list[int]) -> dict[int, int]:
    """Per UDP socket inode of these processes: the kernel's drop counter."""
    by_inode = wire.udp_drops_by_inode()
    return {i: by_inode[i] for pid in pids for i in wire.socket_inodes(pid) if i in by_inode}


def drops_between(before: dict[int, int], after: dict[int, int]) -> int:
    """Drops over the window on the sockets open at both ends (closed ones are not lost)."""
    return sum(after[i] - before[i] for i in after.keys() & before.keys())


CGROUP_CPU = Path("/sys/fs/cgroup/cpu")
QUOTA_PERIOD_US = 20_000
"""Short CFS period: a worker over its quota stalls at most this long, not 100 ms."""


class Quota:
    """Each relay process in a cgroup (v1 cpu) of its own capped at `cores` (`--quota`).

    Stands in for "one core per worker" on a machine whose other core the clients need:
    the relay processes get K x `cores` in all, the clients and the rest of the machine
    what is left. Only this bench's own pids are moved; the groups are removed at the end.
    """

    def __init__(self, cores: float, pids: list[int]) -> None:
        self.dirs: list[Path] = []
        for pid in pids:
            d = CGROUP_CPU / f"bench-relay-{pid}"
            d.mkdir()
            self.dirs.append(d)
            (d / "cpu.cfs_period_us").write_text(str(QUOTA_PERIOD_US))
            (d / "cpu.cfs_quota_us").write_text(str(int(cores * QUOTA_PERIOD_US)))
            (d / "cgroup.procs").write_text(str(pid))

    def throttled_s(self) -> float:
        total = 0
        for d in self.dirs:
            for line in (d / "cpu.stat").read_text().splitlines():
                if line.startswith("throttled_time "):
                    total += int(line.split()[1])
        return total / 1e9

    def remove(self) -> None:
        for d in self.dirs:
            for pid in (d / "cgroup.procs").read_text().split():
                with contextlib.suppress(OSError):
                    (CGROUP_CPU / "cgroup.procs").write_text(pid)
            with contextlib.suppress(OSError):
                d.rmdir()


def run(relay: str, groups: int, size: int, seconds: float, client_workers: int, clip: Path,
        warmup: float = 2.0, settle_timeout: float = 40.0, relay_cpus: str | None = None,
        client_cpus: str | None = None, worker_cpus: str | None = None,
        quota: float | None = None) -> Point:
    env = {**os.environ, "BENCH_RELAY_LATENCY": "1"}
    env.pop("BENCH_RELAY_WORKERS", None)
    if worker_cpus:
        env["BENCH_WORKER_CPUS"] = worker_cpus
    server = Proc(["bench.server", "--mode", "forward", "--relay", relay], relay_cpus, env)
    assert server.p.stdout is not None
    port = int(server.p.stdout.readline())
    first = control(port, {"t": "stats", "reset": True})
    pids: list[int] = [int(p) for p in first["pids"]]
    parent = int(first["parent_pid"])
    in_process = pids == [parent]
    capped = Quota(quota, pids) if quota else None
    procs = [Proc(["bench.client", "--port", str(port), "--clip", str(clip), "--trailer"],
                  client_cpus) for _ in range(client_workers)]
    try:
        members = [(f"g{g}", f"p{i}") for g in range(groups) for i in range(size)]
        for g in range(groups):
            control(port, {"t": "plan", "s": f"g{g}", "pids": [f"p{i}" for i in range(size)]})
        join_clients(procs, members)
        expected = groups * size * (size - 1) * 2
        live = wait_for_streams(procs, expected, settle_timeout)
        time.sleep(warmup)
        cpids = [p.p.pid for p in procs]

        def snapshot() -> tuple[float, list[float], float, float, float, float,
                                dict[int, int], dict[int, int]]:
            return (time.monotonic(), [wire.cpu_seconds(p) for p in pids],
                    wire.cpu_seconds(parent), sum(wire.cpu_seconds(p) for p in cpids),
                    wire.busy_seconds(), sum(wire.runqueue_wait_seconds(p) for p in pids),
                    drops(pids), drops(cpids))

        s0 = snapshot()
        throttled0 = capped.throttled_s() if capped else 0.0
        relay0 = control(port, {"t": "stats", "reset": True})
        before_stats = [p.ask({"t": "stats", "reset": True}) for p in procs]
        time.sleep(seconds)
        after_stats = [p.ask({"t": "stats", "reset": False}) for p in procs]
        relay1 = control(port, {"t": "stats", "reset": False})
        s1 = snapshot()
        throttled = (capped.throttled_s() - throttled0) if capped else 0.0
        before, after = streams(before_stats), streams(after_stats)
        received = lost_or_got = 0
        for key, (count, high, _) in after.items():
            c0, h0, _ = before.get(key, (0, high - count + 1, 0))
            received += count - c0
            lost_or_got += high - h0
        wall = s1[0] - s0[0]
        per_worker = [b - a for a, b in zip(s0[1], s1[1], strict=True)]
        cpu = sum(per_worker)
        parent_cpu = 0.0 if in_process else s1[2] - s0[2]
        ccpu = s1[3] - s0[3]
        published = sent(after_stats) - sent(before_stats)
        forwarded = int(relay1["forwarded"]) - int(relay0["forwarded"])
        owed = published * (size - 1)
        p50, p99 = percentiles([x for s in after_stats for x in s["latency_ns"]], 1e6)
        fwd50, fwd99 = percentiles(relay1.get("relay_forward_ns", []), 1e3)
        in50, in99 = percentiles(relay1.get("relay_ingress_ns", []), 1e6)
        return Point(
            relay=relay, groups=groups, size=size, seconds=round(wall, 2),
            relay_cores=round(cpu / wall, 3),
            worker_cores=[round(c / wall, 3) for c in per_worker],
            parent_cores=round(parent_cpu / wall, 3), client_cores=round(ccpu / wall, 3),
            other_cores=round(max(0.0, s1[4] - s0[4] - cpu - parent_cpu - ccpu) / wall, 3),
            received_pps=round(received / wall, 1), expected_streams=expected,
            live_streams=live,
            loss_pct=round(100 * max(0, lost_or_got - received) / max(1, lost_or_got), 3),
            relay_loss_pct=round(100 * max(0, owed - forwarded) / owed, 3) if owed else None,
            us_per_packet=round(cpu / max(1, received) * 1e6, 2),
            latency_p50_ms=p50, latency_p99_ms=p99,
            relay_fwd_p50_us=fwd50, relay_fwd_p99_us=fwd99,
            relay_ingress_p50_ms=in50, relay_ingress_p99_ms=in99,
            relay_runqueue_wait=round((s1[5] - s0[5]) / wall, 3),
            relay_udp_drops=drops_between(s0[6], s1[6]),
            client_udp_drops=drops_between(s0[7], s1[7]),
            workers=list(relay1.get("workers", [])),
            throttled=round(throttled / wall, 3),
        )
    finally:
        for proc in procs:
            proc.stop()
        server.stop()
        if capped:
            capped.remove()


COLUMNS = ("relay", "groups", "size", "relay_cores", "worker_cores", "parent_cores",
           "client_cores", "other_cores", "received_pps", "live_streams", "expected_streams",
           "loss_pct", "relay_loss_pct", "us_per_packet", "latency_p50_ms", "latency_p99_ms",
           "relay_fwd_p50_us", "relay_fwd_p99_us", "relay_ingress_p50_ms",
           "relay_ingress_p99_ms", "relay_runqueue_wait", "throttled", "relay_udp_drops",
           "client_udp_drops")


def show(points: list[Point], header: bool = True) -> None:
    if header:
        print(" | ".join(COLUMNS))
    for p in points:
        row = asdict(p)
        print(" | ".join(str(row[c]) for c in COLUMNS), flush=True)


def worst_loss(p: Point) -> float:
    """The larger of the receivers' loss and the relay's (a relay behind shows no gaps yet)."""
    return max(p.loss_pct, p.relay_loss_pct or 0.0)


def carried(points: list[Point], relay: str, max_loss: float, by: str = "worst") -> int:
    """Most groups this relay carried with every stream live and loss <= max_loss %."""
    ok = [p.groups for p in points if p.relay == relay and p.live_streams >= p.expected_streams
          and (worst_loss(p) if by == "worst" else (getattr(p, by) or 0.0)) <= max_loss]
    return max(ok, default=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--relays", default="workers:1,workers:2",
                        help="comma list of inproc / workers:K")
    parser.add_argument("--groups", default="2,3,4,5", help="group counts to ramp through")
    parser.add_argument("--size", type=int, default=6, help="participants per group")
    parser.add_argument("--seconds", type=float, default=8.0, help="measured window")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--clients", type=int, default=2, help="bench.client processes")
    parser.add_argument("--stop-loss", type=float, default=None,
                        help="stop a relay's ramp after the first size above this loss (%%)")
    parser.add_argument("--max-loss", type=float, default=1.0,
                        help="summary: most groups carried at <= this loss (%%)")
    parser.add_argument("--relay-cpus", help="taskset -c list for bench.server (and workers)")
    parser.add_argument("--client-cpus", help="taskset -c list for the client processes")
    parser.add_argument("--worker-cpus", help="pin worker i to the i-th CPU of this list")
    parser.add_argument("--quota", type=float, metavar="CORES",
                        help="cap each relay process at this many cores (cgroup v1 cpu quota)")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--fps", type=int, default=15)
    parser.add_argument("--bitrate", type=int, default=600_000)
    parser.add_argument("--json", help="also write the points here")
    args = parser.parse_args()
    clip = load_clip(args.width, args.height, args.fps, 3.0, args.bitrate)
    relays = args.relays.split(",")
    points: list[Point] = []
    stopped: set[str] = set()
    started = time.monotonic()
    if args.quota:
        print(f"each relay process capped at {args.quota} core (CFS quota, "
              f"{QUOTA_PERIOD_US} us period)")
    print(f"loadavg at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    show([])
    for groups in (int(g) for g in args.groups.split(",")):
        for relay in relays:
            if relay in stopped:
                continue
            point = run(relay, groups, args.size, args.seconds, args.clients, clip,
                        args.warmup, relay_cpus=args.relay_cpus, client_cpus=args.client_cpus,
                        worker_cpus=args.worker_cpus, quota=args.quota)
            points.append(point)
            show([point], header=False)
            if args.stop_loss is not None and worst_loss(point) > args.stop_loss:
                stopped.add(relay)
    print(f"\n{len(points)} points in {time.monotonic() - started:.0f} s; "
          f"loadavg at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    base = relays[0]
    for by in ("loss_pct", "relay_loss_pct", "worst"):
        most = {r: carried(points, r, args.max_loss, by) for r in relays}
        ratios = ", ".join(f"{r}: {most[r]} groups"
                           + (f" ({most[r] / most[base]:.2f}x {base})" if most[base] else "")
                           for r in relays)
        print(f"most groups of {args.size} at {by} <= {args.max_loss} %: {ratios}")
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(p) for p in points], indent=2))


if __name__ == "__main__":
    main()
