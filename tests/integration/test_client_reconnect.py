"""The Python client finds its way back: past a dead node, across a server restart on
another address (same seat, no re-admit, media again), and when a node asks it to move.

The `reconnect` request of a draining node and a bare server-side disconnect are played by
small in-process Socket.IO nodes (FakeNode): they speak just enough of the contract
(`config`, `state`) to show what the client does, and which query and token it brings.
"""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any
from urllib.parse import parse_qs

import pytest
import socketio
from aiohttp import web

from client.participant import CircleClient, MediaOptions
from client.reconnect import Backoff

from .server_fixtures import Api, CircleServer, settle

pytestmark = pytest.mark.integration

FAST = Backoff(base_s=0.05, cap_s=0.5)
"""Quick retries, so an outage of a second or two is bridged in about that time."""


def dead_url() -> str:
    """The address of a port nobody listens on (the kernel's choice, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


async def test_connects_through_the_next_node_when_the_first_is_down(api: Api) -> None:
    sid = await api.create_session()
    invite = await api.invite(sid, "c1", "Ann Lee")
    ann = CircleClient([dead_url(), api.server.url], invite["token"])
    try:
        await ann.connect()
        view = await ann.wait_for(lambda s: s["you"]["status"] == "waiting")
        assert ann.url == api.server.url and ann.session_id == sid
        assert view["session"]["id"] == sid
    finally:
        await settle(ann)


async def test_command_line_client_takes_a_node_list(api: Api) -> None:
    sid = await api.create_session()
    invite = await api.invite(sid, "c1", "Ann Lee")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "client", "--token", invite["token"], "--no-media",
        "--server", f"{dead_url()},{api.server.url}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    lines: list[str] = []
    try:
        while not any("waiting" in line for line in lines):
            line = (await asyncio.wait_for(process.stdout.readline(), timeout=20)).decode()
            assert line, f"the client stopped early: {lines}"
            lines.append(line)
        process.send_signal(signal.SIGINT)
        await asyncio.wait_for(process.wait(), timeout=20)
    finally:
        if process.returncode is None:
            process.kill()
    assert process.returncode == 0
    assert f"connected to {api.server.url}\n" in lines


async def test_a_restart_on_another_address_keeps_the_seat_and_media(
    own_server: tuple[CircleServer, Api],
) -> None:
    srv, api = own_server
    sid = await api.create_session()
    old_url, new_url = srv.url, dead_url()
    nodes = [old_url, new_url]
    tokens = {pid: (await api.invite(sid, pid, name, role=role))["token"]
              for pid, name, role in (("t1", "Dr Kim Park", "therapist"), ("c1", "Ann Lee",
                                                                                "client"))}
    therapist = CircleClient(nodes, tokens["t1"], MediaOptions(audio=True, video=False),
                             backoff=FAST)
    ann = CircleClient(nodes, tokens["c1"], MediaOptions(audio=True, video=False),
                       backoff=FAST)
    try:
        await therapist.connect()
        await ann.connect()
        await therapist.wait_for(lambda s: [w["id"] for w in s["waiting"]] == ["c1"])
        assert (await therapist.call("admit", {"participant_id": "c1"}))["ok"]
        await ann.wait_for(lambda s: s["you"]["status"] == "admitted")
        await eventually(hears(ann, therapist.handle_of("t1")))
        fresh = {client: FreshViews(client) for client in (ann, therapist)}

        srv.stop()  # SIGTERM: the node drains (`reconnect`), then closes every socket
        srv.port = int(new_url.rsplit(":", 1)[1])
        srv.start()

        for client in (ann, therapist):
            await client.wait_until(partial(back_once, client), timeout=20)
            assert client.url == new_url and client.gave_up is None
        await ann.wait_until(fresh[ann].arrived)
        back = fresh[ann].latest()
        assert back["you"]["status"] == "admitted" and back["you"]["room"] == "main"
        await therapist.wait_until(lambda: fresh[therapist].arrived() and any(
            p["id"] == "c1" and p["connected"] for p in fresh[therapist].latest()["participants"]
        ), timeout=20)
        assert fresh[therapist].latest()["waiting"] == [], "no new admit"
        # Media started over on the new connection, as after a media_reset.
        await eventually(hears(ann, therapist.handle_of("t1")))
        await eventually(hears(therapist, "c1"))
    finally:
        await settle(therapist, ann)


class FreshViews:
    """The state views a client receives on its current connection (none from an earlier
    one, such as what a draining node sent before the client moved)."""

    def __init__(self, client: CircleClient) -> None:
        self.client = client
        self.views: list[tuple[socketio.AsyncClient, dict[str, Any]]] = []
        client.on_state.append(lambda view: self.views.append((client.sio, view)))

    def arrived(self) -> bool:
        return any(sio is self.client.sio for sio, _ in self.views)

    def latest(self) -> dict[str, Any]:
        return next(view for sio, view in reversed(self.views) if sio is self.client.sio)


def back_once(client: CircleClient) -> bool:
    return client.reconnects == 1 and client.connected


def hears(viewer: CircleClient, publisher: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        stats = (await viewer.received()).get(publisher)
        return stats is not None and stats.audio_frames > 0

    return check


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> None:
    """Poll a media condition (stats have no event to wait on) until it holds."""
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


# -- nodes that ask the client to move ---------------------------------------------------

SESSION = "s_fake"


def fake_token(session_id: str = SESSION) -> str:
    """A JWT-shaped token (FakeNode checks no signature): enough for `?session=`."""
    claims = json.dumps({"sid": session_id, "sub": "c1"}).encode()
    body = base64.urlsafe_b64encode(claims).rstrip(b"=").decode()
    return f"eyJhbGciOiJFZERTQSJ9.{body}.c2ln"


Behaviour = Callable[[socketio.AsyncServer, str], Awaitable[None]]


class FakeNode:
    """A Socket.IO node on loopback: sends `config` and an admitted `state` to every
    connection, then plays `behaviour` (e.g. asks the client to move)."""

    def __init__(self, behaviour: Behaviour | None = None) -> None:
        self.sio = socketio.AsyncServer(async_mode="aiohttp")
        self.behaviour = behaviour
        self.arrivals: list[tuple[float, dict[str, list[str]], Any]] = []
        """(time.monotonic(), query, auth) of each connection."""
        self.url = ""
        self._runner: web.AppRunner | None = None
        self.sio.on("connect", self._connect)

    async def start(self) -> None:
        app = web.Application()
        self.sio.attach(app)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _connect(self, sid: str, environ: dict[str, Any], auth: Any) -> None:
        self.arrivals.append((time.monotonic(), parse_qs(environ.get("QUERY_STRING", "")), auth))
        self.sio.start_background_task(self._greet, sid)

    async def _greet(self, sid: str) -> None:
        await self.sio.emit("config", {"ice_servers": []}, to=sid)
        await self.sio.emit("state", {
            "rev": 3, "session": {"id": SESSION, "ended": False},
            "you": {"id": "c1", "status": "admitted", "room": "main"},
            "participants": [], "breakouts": {"open": False},
            "server_time": datetime.now(UTC).isoformat()}, to=sid)
        if self.behaviour is not None:
            await self.behaviour(self.sio, sid)


async def ask_to_move(sio: socketio.AsyncServer, sid: str) -> None:
    await sio.emit("reconnect", {"reason": "draining", "after_ms": 300}, to=sid)
    await sio.disconnect(sid)


async def close_bare(sio: socketio.AsyncServer, sid: str) -> None:
    await sio.disconnect(sid)


@pytest.fixture
async def nodes(request: pytest.FixtureRequest) -> AsyncIterator[tuple[FakeNode, FakeNode]]:
    first, second = (FakeNode(b) for b in request.param)
    await first.start()
    await second.start()
    yield first, second
    await first.stop()
    await second.stop()


@pytest.mark.parametrize("nodes", [(ask_to_move, None)], indirect=True)
async def test_a_draining_nodes_request_moves_the_client_to_the_next_node(
    nodes: tuple[FakeNode, FakeNode],
) -> None:
    draining, next_node = nodes
    token = fake_token()
    client = CircleClient([draining.url, next_node.url], token, backoff=FAST)
    try:
        await client.connect()
        await client.wait_until(lambda: client.reconnects == 1 and client.sio.connected)
        assert client.url == next_node.url and client.gave_up is None
        (left_at, first_query, _), = draining.arrivals
        (arrived_at, query, auth), = next_node.arrivals
        assert arrived_at - left_at >= 0.3, "the node's after_ms is honoured"
        assert first_query["session"] == query["session"] == [SESSION]
        assert auth == {"token": token}, "the same join token"
    finally:
        await settle(client)


@pytest.mark.parametrize("nodes", [(close_bare, close_bare)], indirect=True)
async def test_a_bare_server_disconnect_is_followed_once_but_no_tug_of_war(
    nodes: tuple[FakeNode, FakeNode],
) -> None:
    first, second = nodes
    client = CircleClient([first.url, second.url], fake_token(), backoff=FAST)
    try:
        await client.connect()
        await client.wait_until(lambda: client.gave_up is not None)
        assert client.gave_up is not None and client.gave_up.code == "replaced"
        assert client.reconnects == 1 and len(second.arrivals) == 1
        assert len(first.arrivals) == 1, "no third connection after giving up"
    finally:
        await settle(client)
