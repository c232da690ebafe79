"""A real `circle serve` on loopback, started as a subprocess, for integration tests."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest

from client.participant import CircleClient, MediaOptions
from server.serve_lock import wait_for_listening

from .clock import OFFSET_ENV, iso, now

CIRCLE = str(Path(sys.executable).with_name("circle"))


def stop_process(process: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM (a clean stop: workers and sockets released), SIGKILL if it lingers."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def server_environ(**extra: str) -> dict[str, str]:
    """This process's environment without the developer's own `CIRCLE_*` settings.

    A shell that exported a clinic's CIRCLE_DATABASE_URL or CIRCLE_CLINIC_TIMEZONE must not
    point test servers at that database or move their service dates. Kept: the test clock
    (CIRCLE_CLOCK_OFFSET_S, tests/integration/clock.py) and CIRCLE_TEST_* from scripts/test.
    """
    kept = {
        k: v for k, v in os.environ.items()
        if not k.startswith("CIRCLE_") or k == OFFSET_ENV or k.startswith("CIRCLE_TEST_")
    }
    return {**kept, "CIRCLE_LOG_LEVEL": "INFO", **extra}


@dataclass
class CircleServer:
    """One server process; `kill` is SIGKILL (no clean-up), `start` again reuses its data.

    The first start binds port 0 and reads the port the kernel chose from the data dir's
    `serve.lock`; a restart binds that same port again, as a restarted server would.
    """

    data_dir: Path
    port: int = 0
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    api_key: str = ""

    @property
    def url(self) -> str:
        assert self.port, "the server has not started yet"
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / "serve.log"

    def _env(self) -> dict[str, str]:
        return server_environ(**self.env)

    def cli(self, *args: str, check: bool = False,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """`circle ARGS --data-dir <this server's>` with this server's settings."""
        return subprocess.run([CIRCLE, *args, "--data-dir", str(self.data_dir)],
                              capture_output=True, text=True, env=self._env(), check=check,
                              timeout=timeout)

    def create_key(self, role: str = "staff", name: str = "tests") -> str:
        return self.cli("keys", "create", "--role", role, "--name", name,
                        check=True).stdout.strip()

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [CIRCLE, "serve", "--port", str(self.port), "--data-dir", str(self.data_dir)],
                stdout=log, stderr=subprocess.STDOUT, env=self._env(),
            )
        process = self.process
        self.port = wait_for_listening(process.pid, self.data_dir,
                                       alive=lambda: process.poll() is None)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        stop_process(self.process)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


class Api:
    """The staff side: HTTP calls with the API key."""

    def __init__(self, server: CircleServer, http: aiohttp.ClientSession) -> None:
        self.server = server
        self.http = http
        self.headers = {"Authorization": f"Bearer {server.api_key}"}
        self.service_dates: dict[str, date] = {}

    async def request(self, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        async with self.http.request(method, self.server.url + path,
                                     headers=kw.pop("headers", self.headers), **kw) as r:
            if r.content_type == "application/json":
                return r.status, await r.json()
            return r.status, await r.text()

    async def metric(self, name: str) -> dict[str, float]:
        """One metric family from /metrics, keyed by its label set (`worker="0"`)."""
        status, text = await self.request("GET", "/metrics", headers={})
        assert status == 200
        return {labels: float(value) for labels, value in
                re.findall(rf"^{name}\{{(.*?)\}} (\S+)$", text, flags=re.M)}

    async def media_workers(self) -> dict[str, tuple[int, float]]:
        """Per media worker: (pid, sessions pinned to it), from /metrics."""
        sessions = await self.metric("circle_media_worker_sessions")
        found = {}
        for labels in await self.metric("circle_media_worker_info"):
            fields = dict(re.findall(r'(\w+)="([^"]*)"', labels))
            if fields.get("pid"):
                worker = fields["worker"]
                found[worker] = (int(fields["pid"]), sessions.get(f'worker="{worker}"', 0.0))
        return found

    async def create_session(self, **overrides: Any) -> str:
        """A session that started a minute ago by the servers' clock (see tests.clock)."""
        body = {"title": "Tuesday DBT skills group", "kind": "group", "program": "IOP",
                "starts_at": iso(now() - timedelta(minutes=1)), "minutes": 90, **overrides}
        status, data = await self.request("POST", "/api/v1/sessions", json=body)
        assert status == 201, data
        self.service_dates[data["id"]] = datetime.fromisoformat(data["starts_at"]).date()
        return str(data["id"])

    def service_date(self, session_id: str) -> str:
        """The date a session created here is billed on (test servers run in UTC)."""
        return self.service_dates[session_id].isoformat()

    def attendance_query(self, day_of: str, **params: str) -> str:
        """`/api/v1/attendance` for the service date of session `day_of`, plus `params`."""
        day = self.service_date(day_of)
        return f"/api/v1/attendance?{urlencode({'from': day, 'to': day, **params})}"

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


def module_server(tmp_path_factory: pytest.TempPathFactory, **env: str) -> Iterator[CircleServer]:
    """A started server for a module's `server` fixture, with extra settings `env`."""
    srv = CircleServer(tmp_path_factory.mktemp("circle") / "data",
                       env={"CIRCLE_RECONNECT_GRACE_S": str(GRACE_S), **env})
    srv.api_key = srv.create_key()
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CircleServer]:
    """One server per test module; tests isolate themselves by creating their own session.

    Its relay runs as media workers, one per core (the default, CIRCLE_MEDIA_WORKERS).
    """
    yield from module_server(tmp_path_factory)


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
