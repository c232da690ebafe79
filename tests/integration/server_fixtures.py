"""A real `circle serve` on loopback, started as a subprocess, for integration tests."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from client.participant import CircleClient, MediaOptions

CIRCLE = str(Path(sys.executable).with_name("circle"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class CircleServer:
    """One server process; `kill` is SIGKILL (no clean-up), `start` again reuses its data."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    api_key: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _env(self) -> dict[str, str]:
        return {**os.environ, "CIRCLE_LOG_LEVEL": "INFO", **self.env}

    def create_key(self, role: str = "staff", name: str = "tests") -> str:
        out = subprocess.run(
            [CIRCLE, "keys", "create", "--role", role, "--name", name,
             "--data-dir", str(self.data_dir)],
            check=True, capture_output=True, env=self._env(),
        )
        return out.stdout.decode().strip()

    def start(self) -> None:
        log = open(self.data_dir.parent / f"serve-{self.port}.log", "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            [CIRCLE, "serve", "--port", str(self.port), "--data-dir", str(self.data_dir)],
            stdout=log, stderr=subprocess.STDOUT, env=self._env(),
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"circle serve exited with {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("circle serve did not start listening in 30 s")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_text(self) -> str:
        return (self.data_dir.parent / f"serve-{self.port}.log").read_text(errors="replace")


class Api:
    """The staff side: HTTP calls with the API key."""

    def __init__(self, server: CircleServer, http: aiohttp.ClientSession) -> None:
        self.server = server
        self.http = http
        self.headers = {"Authorization": f"Bearer {server.api_key}"}

    async def request(self, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        async with self.http.request(method, self.server.url + path,
                                     headers=kw.pop("headers", self.headers), **kw) as r:
            if r.content_type == "application/json":
                return r.status, await r.json()
            return r.status, await r.text()

    async def create_session(self, **overrides: Any) -> str:
        body = {"title": "Tuesday DBT skills group", "kind": "group", "program": "IOP",
                "starts_at": "2026-11-25T15:00:00Z", "minutes": 90, **overrides}
        status, data = await self.request("POST", "/api/v1/sessions", json=body)
        assert status == 201, data
        return str(data["id"])

    async def invite(self, session_id: str, pid: str, name: str, role: str = "client",
                     **extra: Any) -> dict[str, Any]:
        body = {"participant_id": pid, "display_name": name, "role": role, **extra}
        status, data = await self.request("POST", f"/api/v1/sessions/{session_id}/invites",
                                          json=body)
        assert status == 201, data
        return dict(data)

    async def join(self, session_id: str, pid: str, name: str, role: str = "client",
                   media: MediaOptions | None = None) -> CircleClient:
        invite = await self.invite(session_id, pid, name, role)
        client = CircleClient(self.server.url, invite["token"], media=media)
        await client.connect()
        return client


GRACE_S = 3
"""Reconnect grace of test servers: short, so the long-drop case runs in seconds."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CircleServer]:
    """One server per test module; tests isolate themselves by creating their own session."""
    srv = CircleServer(tmp_path_factory.mktemp("circle") / "data",
                       env={"CIRCLE_RECONNECT_GRACE_S": str(GRACE_S)})
    srv.api_key = srv.create_key()
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
async def api(server: CircleServer) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as http:
        yield Api(server, http)


@pytest.fixture
async def own_server(tmp_path: Path) -> AsyncIterator[tuple[CircleServer, Api]]:
    """A server of the test's own (so it can be killed), with a long reconnect grace."""
    srv = CircleServer(tmp_path / "data", env={"CIRCLE_RECONNECT_GRACE_S": "30"})
    srv.api_key = srv.create_key()
    srv.start()
    async with aiohttp.ClientSession() as http:
        yield srv, Api(srv, http)
    srv.stop()


async def settle(*clients: CircleClient | None) -> None:
    """Close clients at the end of a test without letting one failure hide another.

    Also checks that every message the server sent them fit the documented protocol.
    """
    present = [c for c in clients if c is not None]
    await asyncio.gather(*(c.close() for c in present), return_exceptions=True)
    errors = [e for c in present for e in c.protocol_errors]
    assert not errors, f"server messages that do not fit signaling.protocol: {errors}"
