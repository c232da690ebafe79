"""Janus 1.1 (Debian's `janus` package) as the native SFU to compare against, on loopback.

`Janus.start()` builds the getifaddrs shim (`bench/janus/getifaddrs_shim.c`, compiled with
gcc into a temporary directory, never committed), writes a minimal configuration (HTTP
transport on 127.0.0.1 and a free port, videoroom plugin only, `interface` and
`ice_enforce_list` on loopback, no STUN, logging at level 3) and runs `/usr/bin/janus`
with `LD_PRELOAD` set. Janus skips interfaces flagged IFF_LOOPBACK when it gathers host
candidates (FACTS.md); the shim clears that flag, so its answers carry 127.0.0.1.

The rest drives Janus's HTTP API (one Janus session, a long-poll task for events,
requests matched to events by transaction): create a room, publish (`joinandconfigure`
with the client's offer), subscribe (`join` as a multistream subscriber to a list of
feeds: Janus offers) and `start` with the client's answer.
"""

from __future__ import annotations

import asyncio
import ctypes
import itertools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import aiohttp

JANUS = "/usr/bin/janus"
LIBDIR = Path("/usr/lib/x86_64-linux-gnu/janus")
SHIM_SOURCE = Path(__file__).resolve().parent / "janus" / "getifaddrs_shim.c"

JANUS_JCFG = """general: {{
    configs_folder = "{conf}"
    plugins_folder = "{plugins}"
    transports_folder = "{transports}"
    events_folder = "{empty}"
    loggers_folder = "{empty}"
    debug_level = {debug}
    session_timeout = 0
    server_name = "circle-bench"
}}
certificates: {{
}}
media: {{
    rtp_port_range = "20000-40000"
}}
nat: {{
    nice_debug = false
    ice_enforce_list = "lo"
    ignore_mdns = true
}}
plugins: {{
}}
transports: {{
}}
loggers: {{
}}
events: {{
    broadcast = false
}}
"""

HTTP_JCFG = """general: {{
    json = "compact"
    base_path = "/janus"
    http = true
    port = {port}
    ip = "127.0.0.1"
    https = false
}}
admin: {{
    admin_http = false
}}
"""

VIDEOROOM_JCFG = """general: {
}
"""


def _free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    """Janus gets SIGTERM when the bench server process dies (even on SIGKILL)."""
    ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class JanusError(RuntimeError):
    pass


class Janus:
    def __init__(self, debug_level: int = 3) -> None:
        self.debug_level = debug_level
        self.dir = Path(tempfile.mkdtemp(prefix="circle-janus-"))
        self.port = _free_tcp_port()
        self.url = f"http://127.0.0.1:{self.port}/janus"
        self.proc: subprocess.Popen[bytes] | None = None
        self.http: aiohttp.ClientSession | None = None
        self.session_id: int | None = None
        self._tx = itertools.count(1)
        self._events: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._poller: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def _build_shim(self) -> Path:
        out = self.dir / "getifaddrs_shim.so"
        gcc = shutil.which("gcc")
        if gcc is None:
            raise JanusError("gcc is needed to build the getifaddrs shim")
        subprocess.run(
            [gcc, "-shared", "-fPIC", "-O2", "-o", str(out), str(SHIM_SOURCE), "-ldl"],
            check=True,
        )
        return out

    def _write_config(self) -> Path:
        conf, plugins, transports, empty = (
            self.dir / n for n in ("conf", "plugins", "transports", "empty")
        )
        for d in (conf, plugins, transports, empty):
            d.mkdir()
        (plugins / "libjanus_videoroom.so").symlink_to(LIBDIR / "plugins/libjanus_videoroom.so")
        (transports / "libjanus_http.so").symlink_to(LIBDIR / "transports/libjanus_http.so")
        (conf / "janus.jcfg").write_text(JANUS_JCFG.format(
            conf=conf, plugins=plugins, transports=transports, empty=empty,
            debug=self.debug_level,
        ))
        (conf / "janus.transport.http.jcfg").write_text(HTTP_JCFG.format(port=self.port))
        (conf / "janus.plugin.videoroom.jcfg").write_text(VIDEOROOM_JCFG)
        return conf

    async def start(self) -> None:
        shim = self._build_shim()
        conf = self._write_config()
        env = {**os.environ, "LD_PRELOAD": str(shim)}
        # Janus is polled below, never awaited: opening its log and forking it return at once.
        log = open(self.dir / "janus.log", "wb")  # noqa: SIM115, ASYNC230 (lives as long as Janus)
        self.proc = subprocess.Popen(  # noqa: ASYNC220
            [JANUS, "-F", str(conf), "-C", str(conf / "janus.jcfg"), "--interface",
             "127.0.0.1", "--ice-enforce-list", "lo", "--disable-colors"],
            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        for _ in range(100):
            if self.proc.poll() is not None:
                raise JanusError(f"janus exited; log in {self.dir / 'janus.log'}")
            try:
                async with self.http.get(self.url + "/info") as r:
                    if r.status == 200:
                        break
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
        else:
            raise JanusError("janus did not answer on its HTTP port")
        reply = await self._post(self.url, {"janus": "create"})
        self.session_id = int(reply["data"]["id"])
        self._poller = asyncio.get_running_loop().create_task(self._poll())

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    async def _post(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        assert self.http is not None
        body = {"transaction": f"t{next(self._tx)}", **body}
        async with self.http.post(url, json=body) as r:
            reply: dict[str, Any] = await r.json(content_type=None)
        if reply.get("janus") == "error":
            raise JanusError(str(reply.get("error")))
        return reply

    async def _poll(self) -> None:
        assert self.http is not None
        url = f"{self.url}/{self.session_id}?maxev=20"
        while True:
            async with self.http.get(url) as r:
                events = await r.json(content_type=None)
            for event in events if isinstance(events, list) else [events]:
                tx = event.get("transaction")
                future = self._events.pop(tx, None) if tx else None
                if future is not None and not future.done():
                    future.set_result(event)

    async def _attach(self) -> int:
        reply = await self._post(f"{self.url}/{self.session_id}",
                                 {"janus": "attach", "plugin": "janus.plugin.videoroom"})
        return int(reply["data"]["id"])

    async def _message(self, handle: int, body: dict[str, Any],
                       jsep: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send a plugin message; return its synchronous reply or its asynchronous event."""
        tx = f"m{next(self._tx)}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._events[tx] = future
        message: dict[str, Any] = {"janus": "message", "transaction": tx, "body": body}
        if jsep is not None:
            message["jsep"] = jsep
        reply = await self._post(f"{self.url}/{self.session_id}/{handle}", message)
        if reply.get("janus") != "ack":
            self._events.pop(tx, None)
            return reply
        event = await asyncio.wait_for(future, 30)
        data = event.get("plugindata", {}).get("data", {})
        if "error" in data:
            raise JanusError(f"{body.get('request')}: {data['error']}")
        return event

    async def create_room(self, room: int, publishers: int) -> None:
        handle = await self._attach()
        reply = await self._message(handle, {
            "request": "create", "room": room, "publishers": publishers, "bitrate": 0,
            "fir_freq": 0, "audiocodec": "opus", "videocodec": "vp8",
            "notify_joining": False, "permanent": False,
        })
        data = reply.get("plugindata", {}).get("data", {})
        if data.get("videoroom") != "created":
            raise JanusError(f"create room: {reply}")

    async def publish(self, room: int, feed: int, display: str, offer: str) -> str:
        handle = await self._attach()
        event = await self._message(
            handle,
            {"request": "joinandconfigure", "ptype": "publisher", "room": room, "id": feed,
             "display": display},
            {"type": "offer", "sdp": offer, "trickle": False},
        )
        jsep = event.get("jsep")
        if not jsep:
            raise JanusError(f"publish: no answer in {event}")
        return str(jsep["sdp"])

    async def subscribe(self, room: int, feeds: list[int],
                        retry_s: float = 30.0) -> tuple[int, str]:
        """Subscribe to `feeds` on one connection (Janus offers).

        Janus answers "No such feed" until a publisher's connection is up (ICE + DTLS),
        which is after its `joinandconfigure` returned: retry until then, for up to
        `retry_s` (then Janus's own error is raised, not a bare timeout).
        """
        handle = await self._attach()
        deadline = asyncio.get_running_loop().time() + retry_s
        while True:
            try:
                event = await self._message(handle, {
                    "request": "join", "ptype": "subscriber", "room": room,
                    "streams": [{"feed": f} for f in feeds],
                })
                break
            except JanusError as e:
                if "No such feed" not in str(e) or asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.2)
        jsep = event.get("jsep")
        if not jsep:
            raise JanusError(f"subscribe: no offer in {event}")
        return handle, str(jsep["sdp"])

    async def start_subscriber(self, handle: int, answer: str) -> None:
        await self._message(handle, {"request": "start"},
                            {"type": "answer", "sdp": answer, "trickle": False})
