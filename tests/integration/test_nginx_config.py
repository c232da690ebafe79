"""deploy/nginx/circle.conf: `nginx -t` accepts it, and a live nginx with it routes by
`?session=`, keeps a client's Engine.IO requests together, upgrades WebSockets, skips a
dead node, and logs no query strings (join tokens).

Debian's nginx (scripts/services.sh `ensure_nginx` installs it). The config is copied with
only what a test machine must change: certificate and log paths (a self-signed certificate
in the test's directory), and for the live run the node addresses and loopback ports. The
live run puts it in front of two independent `circle serve` nodes: each has its own keys,
so a join token only works on the node that issued it, which shows where a request went.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import socketio

from tests.ci import unavailable
from tests.tls import self_signed

from .server_fixtures import GRACE_S, Api, CircleServer, stop_process

pytestmark = pytest.mark.integration

CONF = Path(__file__).resolve().parents[2] / "deploy" / "nginx" / "circle.conf"
EXAMPLE_NODES = ("10.0.1.11:8080", "10.0.1.12:8080")
CERT = "/etc/letsencrypt/live/circle.example.org/fullchain.pem"
KEY = "/etc/letsencrypt/live/circle.example.org/privkey.pem"
ACCESS_LOG = "/var/log/nginx/circle.access.log"


def nginx_binary() -> str:
    found = os.environ.get("CIRCLE_TEST_NGINX") or shutil.which("nginx", path="/usr/sbin:"
                                                                 + os.environ.get("PATH", ""))
    if not found:
        unavailable("nginx not found (scripts/services.sh ensure_nginx installs it)")
    return found


def replace(text: str, old: str, new: str, times: int) -> str:
    """`text` with `old` replaced, failing if the config no longer has it `times` times."""
    assert text.count(old) == times, f"{CONF.name}: expected {old!r} {times} times"
    return text.replace(old, new)


def render(prefix: Path, nodes: tuple[str, str] | None = None,
           ports: tuple[int, int] | None = None) -> Path:
    """The config in `prefix`, inside a minimal nginx.conf; returns the nginx.conf.

    With `nodes` (host:port) and `ports` (http, https) it is made runnable on loopback.
    """
    prefix.mkdir(parents=True, exist_ok=True)
    cert, key = self_signed(prefix)
    text = replace(CONF.read_text(), CERT, str(cert), 1)
    text = replace(text, KEY, str(key), 1)
    text = replace(text, ACCESS_LOG, str(prefix / "circle.access.log"), 2)
    if nodes is not None:
        for example, node in zip(EXAMPLE_NODES, nodes, strict=True):
            text = replace(text, f"server {example} ", f"server {node} ", 2)
    if ports is not None:
        text = "\n".join(line for line in text.splitlines() if "listen [::]:" not in line)
        text = replace(text, "listen 80;", f"listen 127.0.0.1:{ports[0]};", 1)
        text = replace(text, "listen 443 ssl", f"listen 127.0.0.1:{ports[1]} ssl", 1)
    (prefix / "circle.conf").write_text(text)
    # As root, workers would run as "nobody", which cannot enter pytest's private temp dirs.
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name};" if os.geteuid() == 0 else ""
    temp = "\n".join(f"    {kind}_temp_path {prefix / kind};"
                     for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    main = prefix / "nginx.conf"
    main.write_text(f"""{user}
worker_processes 1;
events {{ worker_connections 256; }}
http {{
{temp}
    access_log {prefix / "access.log"};
    include {prefix / "circle.conf"};
}}
""")
    return main


def test_the_config_passes_nginx_t(tmp_path: Path) -> None:
    nginx = nginx_binary()
    main = render(tmp_path)
    done = subprocess.run([nginx, "-t", "-c", str(main), "-p", str(tmp_path), "-e", "stderr",
                           "-g", f"pid {tmp_path / 'nginx.pid'};"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "test is successful" in done.stderr


# -- live: nginx in front of two nodes ---------------------------------------------------


def free_port() -> int:
    """A port the kernel chose and released (nginx cannot report a port 0 binding)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Front:
    nodes: tuple[CircleServer, CircleServer]
    https: str
    http: str
    prefix: Path

    def access_log(self) -> str:
        return (self.prefix / "circle.access.log").read_text()


def start_nginx(nginx: str, prefix: Path, nodes: tuple[str, str]
                ) -> tuple[subprocess.Popen[bytes], tuple[int, int]]:
    """nginx in the foreground on two free loopback ports; another try if one was taken."""
    for _ in range(3):
        ports = (free_port(), free_port())
        main = render(prefix, nodes, ports)
        with (prefix / "nginx.log").open("wb") as log:
            process = subprocess.Popen(
                [nginx, "-c", str(main), "-p", str(prefix), "-e", "stderr",
                 "-g", f"daemon off; pid {prefix / 'nginx.pid'}; error_log stderr;"],
                stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while process.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", ports[1]), timeout=1):
                return process, ports
            time.sleep(0.05)
        stop_process(process)
        log_text = (prefix / "nginx.log").read_text()
        if "Address already in use" not in log_text:
            raise AssertionError(f"nginx did not start:\n{log_text}")
    raise AssertionError("nginx found no free port in 3 tries")


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Front]:
    nginx = nginx_binary()
    first, second = (CircleServer(tmp_path_factory.mktemp(f"node{i}") / "data",
                                  env={"CIRCLE_RECONNECT_GRACE_S": str(GRACE_S)})
                     for i in range(2))
    servers = (first, second)
    process: subprocess.Popen[bytes] | None = None
    try:
        for srv in servers:
            srv.api_key = srv.create_key()
            srv.start()
        prefix = tmp_path_factory.mktemp("nginx")
        process, (http, https) = start_nginx(
            nginx, prefix, (f"127.0.0.1:{first.port}", f"127.0.0.1:{second.port}"))
        yield Front((first, second), f"https://127.0.0.1:{https}", f"http://127.0.0.1:{http}",
                    prefix)
    finally:
        if process is not None:
            stop_process(process)
        for srv in servers:
            srv.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=False)) as session:
        yield session


async def handshake(http: aiohttp.ClientSession, front: Front, session: str) -> str:
    """An Engine.IO polling handshake through nginx; returns the connection's sid."""
    async with http.get(f"{front.https}/socket.io/",
                        params={"EIO": "4", "transport": "polling", "session": session}) as r:
        assert r.status == 200, await r.text()
        body = await r.text()
    assert body.startswith("0"), body
    return str(json.loads(body[1:])["sid"])


async def holder(http: aiohttp.ClientSession, front: Front, sid: str) -> int:
    """Which node holds Engine.IO connection `sid`, asked directly: only that node accepts
    a packet for it (a close, which also ends the connection)."""
    found = []
    for index, node in enumerate(front.nodes):
        with contextlib.suppress(aiohttp.ClientConnectionError):  # a node that is down
            async with http.post(f"{node.url}/socket.io/", data="1",
                                 params={"EIO": "4", "transport": "polling", "sid": sid}) as r:
                if r.status == 200:
                    found.append(index)
    assert len(found) == 1, f"sid {sid} held by nodes {found}"
    return found[0]


async def test_one_session_sticks_to_one_node_and_sessions_spread(
    front: Front, http: aiohttp.ClientSession,
) -> None:
    homes = {}
    for n in range(24):
        key = f"s_sticky{n}"
        seen = {await holder(http, front, await handshake(http, front, key)) for _ in range(3)}
        assert len(seen) == 1, f"session {key} went to nodes {seen}"
        homes[key] = seen.pop()
    assert set(homes.values()) == {0, 1}, "sessions are spread over both nodes"

    # A client's later requests (carrying its sid and the same session) reach its node: a
    # pong is accepted only by the node that holds the connection.
    key = "s_sticky0"
    sid = await handshake(http, front, key)
    for _ in range(3):
        async with http.post(f"{front.https}/socket.io/", data="3", params={
                "EIO": "4", "transport": "polling", "sid": sid, "session": key}) as r:
            assert r.status == 200, await r.text()
    assert await holder(http, front, sid) == homes[key]


async def session_at_home(front: Front, http: aiohttp.ClientSession) -> tuple[Api, str]:
    """A session created on the node that nginx routes its id to (ids are the server's)."""
    for attempt in range(20):
        api = Api(front.nodes[attempt % 2], http)
        sid = await api.create_session()
        if await holder(http, front, await handshake(http, front, sid)) == attempt % 2:
            return api, sid
    raise AssertionError("no session id hashed to the node that created it in 20 tries")


async def test_a_socketio_client_joins_over_websocket_through_nginx(
    front: Front, http: aiohttp.ClientSession,
) -> None:
    api, sid = await session_at_home(front, http)
    invite = await api.invite(sid, "t1", "Dr Kim Park", role="therapist")
    received: dict[str, Any] = {}
    arrived = asyncio.Event()
    sio = socketio.AsyncClient(reconnection=False, ssl_verify=False)

    def keep(event: str) -> None:
        async def handle(data: Any) -> None:
            received[event] = data
            if {"config", "state"} <= received.keys():
                arrived.set()

        sio.on(event, handle)

    keep("config")
    keep("state")
    try:
        await sio.connect(f"{front.https}/?session={sid}", auth={"token": invite["token"]},
                          transports=["websocket"], wait_timeout=10)
        assert sio.transport() == "websocket"
        await asyncio.wait_for(arrived.wait(), 10)
    finally:
        await sio.disconnect()
    assert received["config"]["ice_servers"] == []
    assert received["state"]["session"]["id"] == sid
    assert received["state"]["you"]["status"] == "admitted"


async def test_http_passes_through_and_the_log_keeps_no_tokens(
    front: Front, http: aiohttp.ClientSession,
) -> None:
    async with http.get(f"{front.https}/join", params={"token": "secret-join-token"}) as r:
        assert r.status == 200 and r.content_type == "text/html"
        assert r.headers["Referrer-Policy"] == "no-referrer"
    async with http.get(f"{front.https}/healthz") as r:
        assert r.status == 200
    async with http.get(f"{front.https}/api/v1/sessions/s_none") as r:
        assert r.status == 401, "the API answers (and wants a key)"
    async with http.get(f"{front.https}/metrics") as r:
        assert r.status == 404, "metrics are never public"
    async with http.get(f"{front.http}/join", params={"token": "secret-join-token"},
                        allow_redirects=False) as r:
        assert r.status == 301 and r.headers["Location"].startswith("https://")
    log = front.access_log()
    assert '"GET /join" 200' in log and '"GET /join" 301' in log
    assert "secret-join-token" not in log and "session=" not in log


async def test_a_dead_node_is_skipped(front: Front, http: aiohttp.ClientSession) -> None:
    """It kills a node, and starts it again after, so no other test depends on the order."""
    keys = [f"s_dead{n}" for n in range(16)]
    homes = {key: await holder(http, front, await handshake(http, front, key)) for key in keys}
    victim = front.nodes[1]
    victim.kill()
    try:
        for key in keys:
            assert await holder(http, front, await handshake(http, front, key)) == 0, (
                f"session {key} (home: node {homes[key]}) did not reach the live node")
    finally:
        victim.start()
    assert 1 in homes.values(), "some of these sessions did live on the dead node"
