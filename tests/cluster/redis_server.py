"""A throwaway redis-server of a test's own, on a free port: it can be stopped and restarted.

The machine's shared Redis (CIRCLE_TEST_REDIS_URL) is fine for tests that only need a Redis,
with a key prefix of their own; a test that restarts Redis must own the server it restarts.
Like the real thing here, it keeps nothing on disk, so a restart loses every key.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

from tests.ci import unavailable

STARTUP_TIMEOUT_S = 10.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One redis-server process bound to 127.0.0.1 on a port chosen at first start."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            unavailable("redis-server is not installed (scripts/test installs it)")
        self._binary = binary
        self._workdir = workdir
        self.port = _free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self._workdir.mkdir(parents=True, exist_ok=True)
        for _ in range(5):
            # Popen returns once redis-server is forked; readiness is awaited just below.
            self._process = subprocess.Popen(  # noqa: ASYNC220
                [self._binary, "--bind", "127.0.0.1", "--port", str(self.port),
                 "--save", "", "--appendonly", "no", "--dir", str(self._workdir)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            if await self._wait_ready():
                return
            self._process.kill()
            self._process.wait()
            self.port = _free_port()  # someone took the port between probe and bind
        raise RuntimeError("redis-server did not start")

    async def _wait_ready(self) -> bool:
        assert self._process is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            if await asyncio.to_thread(_answers, self.port):
                return True
            await asyncio.sleep(0.05)
        return False

    def stop(self) -> None:
        """kill -9: what a crash looks like to the nodes."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._process = None

    async def restart(self) -> None:
        """Same port, empty dataset."""
        self.stop()
        await self.start()


@contextlib.asynccontextmanager
async def redis_server(workdir: Path) -> AsyncIterator[RedisServer]:
    server = RedisServer(workdir)
    await server.start()
    try:
        yield server
    finally:
        server.stop()


def shared_redis_url() -> str:
    """The machine's Redis for tests that do not restart it (use a key prefix of your own)."""
    return os.environ.get("CIRCLE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
