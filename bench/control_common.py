"""Shared pieces of the control-plane benchmarks (`bench.join`, `bench.export`).

Kept apart from the media benchmarks' helpers (bench/server.py, bench/client.py) so the two
sets can change independently. Everything here is about measuring honestly on a shared,
noisy machine: percentiles over many samples, process RSS read from /proc, and servers
started as real subprocesses on loopback so the measured process is the one a clinic runs.
"""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import socketio

from server.serve_lock import wait_for_listening

CIRCLE = str(Path(sys.executable).with_name("circle"))
PG_DEFAULT = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


def free_port() -> int:
    """A port that was free a moment ago (loopback only)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), nearest-rank, so p99 of 48 samples is a real sample."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Dist:
    """p50/p99/max of one latency series, in milliseconds."""

    n: int
    p50: float
    p99: float
    max: float

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Dist:
        ms = [s * 1000 for s in seconds]
        return cls(len(ms), pct(ms, 50), pct(ms, 99), max(ms) if ms else float("nan"))


def ratio(a: float, b: float) -> str:
    """`a / b` as text ("x.xx"), or "n/a" when the floor is zero or missing."""
    if not b or b != b or a != a:
        return "n/a"
    return f"{a / b:.2f}"


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def rss_kib(pid: int) -> int:
    """Resident set size of `pid` in KiB (VmRSS from /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def machine_note() -> str:
    """One line that says what the figures were measured on (they only compare in-run)."""
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{platform.system()} {platform.release()}, {os.cpu_count()} CPU ({model}), "
            f"Python {platform.python_version()}, loadavg {load}")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table (the report is pasted into docs/benchmarks-control.md as is)."""
    def cell(v: object) -> str:
        return f"{v:.2f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def wait_listening(process: subprocess.Popen[bytes], port: int, timeout: float = 30) -> None:
    """Block until `port` accepts connections; fail fast if the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port} after {timeout} s")


async def call_ok(sio: socketio.AsyncClient, event: str, data: Any) -> dict[str, Any]:
    """Emit `event` and return its ack; a refusal stops the bench (it measured nothing)."""
    reply = await sio.call(event, data, timeout=30)
    if not isinstance(reply, dict) or not reply.get("ok"):
        raise RuntimeError(f"{event} refused: {reply}")
    return reply


async def disconnect_quietly(sio: socketio.AsyncClient) -> None:
    with contextlib.suppress(Exception):
        await sio.disconnect()


def stop(process: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM this one process (never a process group or name), SIGKILL if it lingers."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


@dataclass
class CircleProcess:
    """A real `circle serve` on loopback in `data_dir`, as tests/integration starts one."""

    data_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    """0 until started: the server binds a port the kernel picks and records it in serve.lock."""
    process: subprocess.Popen[bytes] | None = None
    api_key: str = ""
    profile: Path | None = None
    """Run the server under cProfile, written here at a clean stop (SIGTERM)."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _env(self) -> dict[str, str]:
        return {**os.environ, "CIRCLE_LOG_LEVEL": "WARNING", **self.env}

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        out = subprocess.run(
            [CIRCLE, "keys", "create", "--role", "staff", "--name", "bench",
             "--data-dir", str(self.data_dir)],
            check=True, capture_output=True, env=self._env(),
        )
        self.api_key = out.stdout.decode().strip()
        log = open(self.data_dir.parent / "serve.log", "ab")  # noqa: SIM115
        prefix = [] if self.profile is None else [
            sys.executable, "-m", "cProfile", "-o", str(self.profile)]
        self.process = subprocess.Popen(
            [*prefix, CIRCLE, "serve", "--port", str(self.port), "--data-dir", str(self.data_dir)],
            stdout=log, stderr=subprocess.STDOUT, env=self._env(),
        )
        process = self.process
        self.port = wait_for_listening(process.pid, self.data_dir,
                                       alive=lambda: process.poll() is None)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        stop(self.process)
