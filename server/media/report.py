"""What each media worker reports for /metrics: one shape for the pool and in-process relay."""

from __future__ import annotations

import os
from dataclasses import dataclass

from server.media.relay import MediaRelay


@dataclass(frozen=True)
class WorkerReport:
    worker: str
    """"0", "1", ... for worker processes; "inproc" for the relay in the server's own loop."""
    pid: int | None
    up: bool
    sessions: int
    peers: int
    forwarded_packets: int
    dropped_packets: int
    loop_lag_ms: float
    restarts: int


def inprocess_report(relay: MediaRelay) -> list[WorkerReport]:
    counters = relay.counters()
    return [WorkerReport("inproc", os.getpid(), True, counters.sessions, counters.peers,
                         counters.forwarded_packets, counters.dropped_packets, 0.0, 0)]
