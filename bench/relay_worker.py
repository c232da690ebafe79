"""A media worker for the bench: `server.media.workers.process` plus three bench-only hooks.

`bench.server --relay workers:N` starts a real `server.media.workers.pool.WorkerPool`, and
makes it launch `python -m bench.relay_worker` instead of `python -m
server.media.workers.process` (same arguments, same socket pair). This module then:

- raises every UDP socket's receive buffer to 4 MiB, as `bench.server` does for the
  in-process relay's sockets (fair comparison; the clients get the same);
- with BENCH_RELAY_LATENCY=1 installs `bench.server.RelayLatencyProbe` in this process;
- with BENCH_WORKER_CPUS="0,1" pins worker i to CPU i mod 2 (`sched_setaffinity`);
- on SIGUSR1 (reset) / SIGUSR2 (read) writes `<BENCH_WORKER_DUMP_DIR>/<pid>.json`:
  the relay's forwarded-packet counter and, on SIGUSR2, the probe's samples. The handler
  runs on the worker's event loop (`add_signal_handler`), between packets, never inside one.

and then runs the worker's own `main` unchanged. server/media is not modified.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from typing import Any

from bench import wire

RCVBUF = 4 << 20


def _raise_udp_buffers() -> None:
    original = asyncio.base_events.BaseEventLoop.create_datagram_endpoint

    async def endpoint(self: asyncio.AbstractEventLoop, *args: Any, **kwargs: Any) -> Any:
        transport, protocol = await original(self, *args, **kwargs)  # type: ignore[arg-type]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.type == socket.SOCK_DGRAM:
            wire.raise_rcvbuf(sock, RCVBUF)
        return transport, protocol

    asyncio.base_events.BaseEventLoop.create_datagram_endpoint = endpoint  # type: ignore[method-assign]


def _pin(index: int) -> None:
    cpus = [int(c) for c in os.environ.get("BENCH_WORKER_CPUS", "").split(",") if c.strip()]
    if cpus:
        os.sched_setaffinity(0, {cpus[index % len(cpus)]})


def _install_dump() -> None:
    from bench.server import RelayLatencyProbe
    from server.media.workers.process import Worker

    probe: RelayLatencyProbe | None = None
    if os.environ.get("BENCH_RELAY_LATENCY", "") not in ("", "0"):
        probe = RelayLatencyProbe()
        probe.install()
    out_dir = os.environ.get("BENCH_WORKER_DUMP_DIR")
    original_run = Worker.run

    def dump(worker: Worker, reset: bool) -> None:
        assert out_dir is not None
        out: dict[str, Any] = {"forwarded": worker.relay.counters().forwarded_packets,
                               "loop_lag_ms": worker.loop_lag_ms}
        if probe is not None:
            out["forward_seen"] = probe.forward.seen
            out["ingress_seen"] = probe.ingress.seen
            out["relay_forward_ns"] = probe.forward.take(reset)
            out["relay_ingress_ns"] = probe.ingress.take(reset)
        path = os.path.join(out_dir, f"{os.getpid()}.json")
        with open(path + ".tmp", "w") as f:
            json.dump(out, f)
        os.replace(path + ".tmp", path)

    async def run(self: Worker) -> None:
        if out_dir:
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGUSR1, dump, self, True)
            loop.add_signal_handler(signal.SIGUSR2, dump, self, False)
        await original_run(self)

    Worker.run = run  # type: ignore[method-assign]


def main() -> int:
    from bench.client import enable_loopback_gathering
    from server.media.workers import process

    argv = sys.argv[1:]
    index = int(argv[argv.index("--index") + 1]) if "--index" in argv else 0
    enable_loopback_gathering()
    _raise_udp_buffers()
    _pin(index)
    _install_dump()
    return process.main(argv)


if __name__ == "__main__":
    sys.exit(main())
