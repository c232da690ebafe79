"""Binary Socket.IO packets and malformed frames close the connection before anything is
buffered, with bounded logging, over a bare transport as through a joined socket."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from .server_fixtures import Api, CircleServer, module_server

MB = 1_000_000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CircleServer]:
    yield from module_server(tmp_path_factory, CIRCLE_MEDIA="false")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def open_transport(http: aiohttp.ClientSession, server: CircleServer
                         ) -> aiohttp.ClientWebSocketResponse:
    ws = await http.ws_connect(f"{server.url}/socket.io/?EIO=4&transport=websocket",
                               max_msg_size=0)
    opened = await ws.receive(timeout=5)
    assert opened.type == aiohttp.WSMsgType.TEXT and opened.data.startswith("0")
    return ws


async def closed_by_server(ws: aiohttp.ClientWebSocketResponse) -> bool:
    """True once the server closes the transport: Engine.IO's close packet ("1") or the
    websocket's own close (other frames, such as pings, are skipped)."""
    try:
        while True:
            msg = await ws.receive(timeout=5)
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                            aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.ERROR):
                return True
            if msg.type == aiohttp.WSMsgType.TEXT and msg.data == "1":
                return True
    except TimeoutError:
        return False


async def test_a_binary_header_from_a_joined_socket_closes_it(api: Api) -> None:
    sid = await api.create_session()
    token = (await api.invite(sid, "c1", "Ann Lee"))["token"]
    async with aiohttp.ClientSession() as http:
        ws = await open_transport(http, api.server)
        await ws.send_str("40" + json.dumps({"token": token}))
        connected = await ws.receive(timeout=5)
        assert connected.data.startswith("40")
        placeholders = ",".join(f'{{"_placeholder":true,"num":{i}}}' for i in range(3))
        await ws.send_str(f'4500-["chat",{placeholders}]')
        assert await closed_by_server(ws)


async def test_two_hundred_megabyte_frames_cost_no_memory_and_no_log_flood(api: Api) -> None:
    server = api.server
    assert server.process is not None
    before = rss_kib(server.process.pid)
    log_before = len(server.log_text().splitlines())
    payload = b"\0" * MB
    async with aiohttp.ClientSession() as http:
        async def one() -> bool:
            ws = await open_transport(http, server)
            await ws.send_str('451-["chat",{"_placeholder":true,"num":0}]')
            with contextlib.suppress(ConnectionError, aiohttp.ClientError):
                await ws.send_bytes(payload)  # may find it closed: nothing was buffered
            closed = await closed_by_server(ws)
            await ws.close()
            return closed

        for batch in range(20):
            assert all(await asyncio.gather(*(one() for _ in range(10)))), batch
        for garbage in ("4zz", '42["chat"', "40{not json"):  # bad Socket.IO packets
            ws = await open_transport(http, server)
            await ws.send_str(garbage)
            assert await closed_by_server(ws), garbage
            await ws.close()
        ws = await open_transport(http, server)  # bad Engine.IO packets, 100 of them
        for _ in range(100):
            await ws.send_str("9")
        await ws.send_str("41")  # the transport still works: a Socket.IO disconnect
        await ws.close()
    grown_mib = (rss_kib(server.process.pid) - before) / 1024
    assert grown_mib < 50, f"RSS grew {grown_mib:.0f} MiB"
    new_lines = server.log_text().splitlines()[log_before:]
    assert not [line for line in new_lines if "Traceback" in line]
    refusals = [line for line in new_lines if "Socket.IO packet" in line]
    assert 1 <= len(refusals) <= 2, refusals  # one line per kind a minute
    engine = [line for line in new_lines if "engineio" in line]
    assert len(engine) <= 1, engine
    status, health = await api.request("GET", "/healthz", headers={})
    assert status == 200 and health["ok"]
